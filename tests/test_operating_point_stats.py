"""The operating point's honest numbers (issue 20): the pair's selection-corrected estimate,
the constraint-holds share, the fragile-operating-point finding and pick's threshold."""

from __future__ import annotations

import json

import numpy as np
import pytest
from runfiles import write_run
from scipy.special import expit
from typer.testing import CliRunner

from ckptaudit.cli import app
from ckptaudit.metrics import operating as op
from ckptaudit.stats.operating import estimate

runner = CliRunner()
POINT = op.OperatingPoint("recall", "precision", 0.6)


def _columns(rng, n, mus, prior=0.05):
    y = rng.random(n) < prior
    z = rng.normal(size=n)
    return y, [mu * y + 0.9 * z + 0.44 * rng.normal(size=n) for mu in mus]


def test_estimate_raw_value_is_the_kernels_and_the_winner_is_the_best():
    rng = np.random.default_rng(1)
    y, cols = _columns(rng, 2000, [1.5, 2.5, 2.0])
    est = estimate(cols, y, POINT, resamples=100, seed=0)
    values = [op.choose(op.curve(y, c), POINT).value for c in cols]
    assert est is not None and est.checkpoint == int(np.argmax(values))
    assert est.raw == values[est.checkpoint]
    assert est.threshold == op.choose(op.curve(y, cols[est.checkpoint]), POINT).threshold
    assert est.interval[0] <= est.expected <= est.interval[1]
    assert 0.0 <= est.holds <= 1.0 and est.draws == 100


def test_tuning_among_many_equal_checkpoints_is_corrected_downward():
    # 20 copies of the same quality: the best tuned value is optimistic, the estimate is not
    rng = np.random.default_rng(2)
    y, cols = _columns(rng, 1000, [2.2] * 20)
    est = estimate(cols, y, POINT, resamples=200, seed=0)
    assert est is not None and est.optimism > 0
    assert est.expected < est.raw


def test_a_threshold_tuned_to_just_meet_the_constraint_is_fragile_and_a_safer_one_is_given():
    rng = np.random.default_rng(3)
    y, cols = _columns(rng, 3000, [2.3])
    est = estimate(cols, y, POINT, resamples=300, seed=0)
    assert est is not None and est.holds < 0.9
    assert est.safe_threshold is not None and est.safe_threshold > est.threshold  # stricter for precision
    assert est.safe_holds >= 0.9


def test_unmeetable_everywhere_has_no_estimate():
    y = np.array([0, 1] * 50, dtype=bool)
    cols = [np.where(y, 0.0, 1.0)]  # every negative above every positive
    assert estimate(cols, y, POINT, resamples=20) is None


def _fraud_like(tmp_path):
    rng = np.random.default_rng(4)
    n = 2000
    y = (rng.random(n) < 0.05).astype(int)
    z = rng.normal(size=n)
    outs = [expit(mu * y + 0.9 * z + 0.44 * rng.normal(size=n) - 3) for mu in (2.0, 2.4, 2.2)]
    return write_run(tmp_path / "run", "binary", "probability", y, outs, classes=["legit", "fraud"], positive_class=1)


def test_pick_names_the_pair_and_records_the_threshold_in_provenance(tmp_path):
    run = _fraud_like(tmp_path)
    metric = "recall@precision>=0.6"
    dest = tmp_path / "best"
    result = runner.invoke(app, ["pick", str(run), "--metric", metric, "--link", str(dest), "--resamples", "200"])
    assert result.exit_code == 0, result.output
    prov = json.loads((tmp_path / "best.ckptaudit.json").read_text())
    ranked = json.loads(runner.invoke(app, ["rank", str(run), "--metric", metric, "--format", "json"]).stdout)
    top = ranked[0]
    assert prov["checkpoint"] == top["checkpoint"]
    noted = float(next(n for n in top["notes"] if "at threshold" in n).rsplit(" ", 1)[1])
    assert prov["threshold"] == noted == prov["operating_point"]["threshold"]
    assert 0.0 <= prov["operating_point"]["constraint_holds"] <= 1.0
    assert "at threshold" in result.output and "constraint holds" in result.output


@pytest.mark.parametrize("metric", ["recall@precision>=0.8", "precision@recall>=0.8", "recall@precision>=0.6"])
def test_fragile_operating_point_finding_follows_the_share_and_gives_the_safer_threshold(tmp_path, metric):
    run = _fraud_like(tmp_path)
    picked = json.loads(runner.invoke(app, ["pick", str(run), "--metric", metric, "-f", "json", "--resamples", "200"]).stdout)[0]
    holds = picked["operating_point"]["constraint_holds"]
    fragile = [f for f in picked["findings"] if f["code"] == "fragile-operating-point"]
    assert bool(fragile) == (holds < 0.9)
    if not fragile:
        return
    ev = fragile[0]["evidence"]
    assert ev["constraint_holds"] == pytest.approx(holds, abs=1e-6) and ev["threshold"] == picked["threshold"]
    # a stricter threshold for a precision constraint, a looser one for a recall constraint
    stricter = ev["safe_threshold"] > ev["threshold"]
    assert stricter == metric.startswith("recall@precision")
    assert ev["safe_holds"] >= 0.9


@pytest.mark.parametrize("metric", ["accuracy", "roc_auc"])
def test_other_metrics_keep_no_threshold_in_provenance(tmp_path, metric):
    run = _fraud_like(tmp_path)
    result = runner.invoke(app, ["pick", str(run), "--metric", metric, "--format", "json", "--resamples", "100"])
    assert result.exit_code == 0, result.output
    assert "threshold" not in json.loads(result.stdout)[0]


def _paradox_run(tmp_path):
    """epoch 0: never alerts at 0.5 (accuracy = the majority share) and ranks fraud poorly;
    epoch 1: alerts on everything at 0.5 (accuracy 5%) but ranks fraud well."""
    rng = np.random.default_rng(6)
    n = 4000
    y = (rng.random(n) < 0.05).astype(int)
    quiet = expit(0.3 * y + rng.normal(size=n) - 4)
    loud = expit(3.0 * y + rng.normal(size=n) + 4)
    return write_run(tmp_path / "run", "binary", "probability", y, [quiet, loud], classes=["legit", "fraud"], positive_class=1)


def test_operating_point_paradox_states_the_alert_budget(tmp_path):
    run = _paradox_run(tmp_path)
    result = runner.invoke(
        app, ["audit", str(run), "--metric", "recall@precision>=0.8", "--format", "json", "--resamples", "200"]
    )
    assert result.exit_code in (0, 1), result.output
    doc = json.loads(result.stdout)
    found = [f for f in (doc["findings"] if isinstance(doc, dict) else doc) if f["code"] == "operating-point-paradox"]
    assert len(found) == 1, result.stdout
    f = found[0]
    assert f["checkpoint"] == "epoch-0000" and f["evidence"]["best"] == "epoch-0001"
    assert "at most 1 false alert in 5" in f["message"]
    ev = f["evidence"]
    if ev["value"] is not None:
        assert ev["missed_per_1000_rows"] > 0


def test_no_operating_point_paradox_when_accuracy_picks_the_best_pair(tmp_path):
    run = _fraud_like(tmp_path)
    result = runner.invoke(
        app, ["audit", str(run), "--metric", "recall@precision>=0.6", "--format", "json", "--resamples", "200"]
    )
    assert "operating-point-paradox" not in result.stdout


def test_report_marks_both_operating_points_and_the_constraint_line(tmp_path):
    run = _fraud_like(tmp_path)
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**meta, "chosen": "epoch-0000"}))  # not the best pair
    out = tmp_path / "report.html"
    metric = "recall@precision>=0.6"
    result = runner.invoke(app, ["report", str(run), "--metric", metric, "--resamples", "100", "-o", str(out)])
    assert result.exit_code in (0, 1), result.output
    html = out.read_text()
    ranked = {
        r["checkpoint"]: r for r in json.loads(runner.invoke(app, ["rank", str(run), "--metric", metric, "-f", "json"]).stdout)
    }
    import re

    marks = re.findall(r'<circle class="oppoint (\w+)"[^>]*><title>([^:]+): threshold ([0-9.e+-]+), recall ([0-9.]+)', html)
    assert {m[0] for m in marks} == {"chosen", "winner"}  # on the PR and the ROC chart each
    assert len(marks) == 4
    for _, who, _t, recall in marks:
        name = who.split(" ")[0]
        assert float(recall) == pytest.approx(ranked[name][metric], abs=1e-4)
    assert html.count('class="constraint"') == 1  # precision bound: a line on the PR chart


@pytest.mark.parametrize(
    "point",
    [
        POINT,
        op.OperatingPoint("precision", "recall", 0.8),
        op.OperatingPoint("recall", "specificity", 0.99),
        op.OperatingPoint("cost", None, None, 10.0, 1.0),
    ],
    ids=["recall@precision", "precision@recall", "recall@specificity", "cost"],
)
def test_the_large_sample_path_agrees_with_the_full_bootstrap(point):
    # the large-sample path (Poisson weights on the rows that can matter, each curve cut to the
    # thresholds a resample could choose) against every row's multinomial weights: the same pair,
    # the same values up to the Monte Carlo noise of 400 draws
    rng = np.random.default_rng(7)
    y, cols = _columns(rng, 20_000, [1.8, 2.2, 2.4, 2.3])
    full = estimate(cols, y, point, resamples=400, seed=0, fast=False)
    fast = estimate(cols, y, point, resamples=400, seed=0, fast=True)
    assert full is not None and fast is not None
    assert (fast.checkpoint, fast.raw, fast.threshold) == (full.checkpoint, full.raw, full.threshold)
    assert abs(fast.expected - full.expected) < 0.01
    assert max(abs(a - b) for a, b in zip(fast.interval, full.interval, strict=True)) < 0.02
    if not point.is_cost:
        assert abs(fast.holds - full.holds) < 0.1
        # the safer threshold is interpolated between stricter bounds from their shares: the
        # same up to the shares' Monte Carlo noise, read as the constraint it reaches on all rows
        reached = []
        for t in (fast.safe_threshold, full.safe_threshold):
            flagged = cols[full.checkpoint] >= t
            tp, fp = np.sum(flagged & y), np.sum(flagged & ~y)
            rates = {"precision": tp / (tp + fp), "recall": tp / y.sum(), "specificity": 1 - fp / (~y).sum()}
            reached.append(rates[point.constraint])
        assert abs(reached[0] - reached[1]) < 0.01, reached


def _resampled_curves(rng, rows, resamples, block_window=None):
    """A column of tied scores and its curves under Poisson weights (many zero), both as
    choose's rows and as the bootstrap's columns."""
    from ckptaudit.stats import operating_curves as oc

    y = rng.random(rows) < 0.3
    s = np.round(rng.normal(size=rows) + 1.2 * y, 1)
    cand, seg = oc.place(s, y)
    # the large-sample path's one-byte weights, or the full bootstrap's float64 counts
    w = rng.poisson(1.0, (rows, resamples)).astype(np.uint8 if rows % 2 else np.float64)
    col = oc.make_column(cand, seg, y, block_window)
    p, n = oc.totals(w, y)
    return col, w, p, n


@pytest.mark.parametrize("seed", range(6))
def test_the_bootstraps_column_choices_equal_the_reference_choice(seed):
    # choose_columns and the block sums (every operating point, bounds from 0 to 1, windows and
    # slices of them) against choose's one-row-per-resample reference: the same values and indices
    from ckptaudit.stats import operating_blocks as ob
    from ckptaudit.stats import operating_curves as oc

    rng = np.random.default_rng(seed)
    window = None if seed % 2 == 0 else (5, 60)
    col, w, p, n = _resampled_curves(rng, 400 + seed % 2, 64, window)
    (tp_pad, fp_pad), (tp_out, fp_out) = oc.cumulative(w, col)
    blocks = ob.BlockCurves(tp_pad, fp_pad, col)
    tp, fp = oc.FullCurves(tp_pad, fp_pad, col).tp, oc.FullCurves(tp_pad, fp_pad, col).fp
    # the out-of-bag curves: those of the weights that are 0, counted once
    (zeros, _), _ = oc.cumulative((w == 0).astype(np.uint8), col)
    assert np.array_equal(tp_out, zeros) and np.array_equal(fp_out, oc.cumulative((w == 0).astype(np.uint8), col)[0][1])
    size = col.thresholds.shape[0]
    bounds = [0.0, 0.3, 0.55, 0.8, 0.95, 1.0]
    points = [
        op.OperatingPoint(t, c, b)
        for t, c in [("recall", "precision"), ("precision", "recall"), ("recall", "specificity"), ("specificity", "recall")]
        for b in bounds
    ]
    points.append(op.OperatingPoint("cost", None, None, 10.0, 1.0))
    for point in points:
        for lo, hi in [(0, size), (size // 4, size // 2 + 1), (3, size)]:
            rows = (tp[lo:hi].T.astype(np.float64), fp[lo:hi].T.astype(np.float64), p[:, None], n[:, None])
            v_ref, i_ref = oc.choose(*rows, point)
            v, i = oc.choose_columns(tp[lo:hi], fp[lo:hi], p, n, point)
            assert np.array_equal(v, v_ref, equal_nan=True) and np.array_equal(i, i_ref), (point, lo, hi)
            if ob.serves(point):
                v_b, i_b, con = blocks.choose(point, p, n, lo, hi)
                assert np.array_equal(v_b, v_ref, equal_nan=True), (point, lo, hi)
                assert np.array_equal(i_b, np.where(i_ref >= 0, i_ref + lo, -1)), (point, lo, hi)
                at = np.maximum(i_b, 0)
                con_ref = oc.rate(point.constraint, tp[at, np.arange(64)], fp[at, np.arange(64)], p, n)
                assert np.array_equal(con, con_ref, equal_nan=True)
    q = np.arange(64)
    for i in (np.zeros(64, int), rng.integers(-1, size, 64)):
        got = blocks.at(i)
        assert np.array_equal(got[0], tp[np.maximum(i, 0), q]) and np.array_equal(got[1], fp[np.maximum(i, 0), q])


@pytest.mark.parametrize("rounding", [None, 1, 3])
def test_the_counts_on_all_rows_are_the_same_from_a_sort_or_the_kernels_curve(rounding):
    # the bootstrap's candidates and counts on all rows: from every row's place (the reference),
    # from one sort of the scores, from the kernel's curve the pass already sorted
    from ckptaudit.stats import operating_curves as oc

    rng = np.random.default_rng(9)
    y, cols = _columns(rng, 3000, [1.2, 2.0])
    for s in cols:
        s = (s if rounding is None else np.round(s, rounding)).astype(np.float32)
        cand, seg = oc.place(s, y)
        ref = oc.full_counts(cand, seg, y)
        for got_cand, got in (oc.sorted_counts(s, y), oc.curve_counts(op.curve(y, s), s.dtype)):
            assert got_cand.dtype == cand.dtype and np.array_equal(got_cand, cand)
            assert all(np.array_equal(a, b) for a, b in zip(got, ref, strict=True))


def test_the_safer_threshold_is_interpolated_where_the_stricter_bounds_shares_cross_0_9():
    from ckptaudit.stats.operating import _safer
    from ckptaudit.stats.operating_curves import sorted_counts

    rng = np.random.default_rng(3)
    y, (col,) = _columns(rng, 5000, [2.5])
    cand, full = sorted_counts(col, y)
    thresholds = np.r_[np.inf, cand[::-1]]

    def precision_at(t):
        flagged = col >= t
        return np.sum(flagged & y) / np.sum(flagged)

    # the bound's own share reaches 0.9: its own threshold, its own share
    assert _safer([(0.0, 0.93), (0.01, 0.99)], full, POINT, thresholds) == (op.choose(op.curve(y, col), POINT).threshold, 0.93)
    # shares 0.6 at +0.02 and 1.0 at +0.06 cross 0.9 at +0.05 (None: a bound not measured, skipped)
    t, share = _safer([(0.0, 0.2), (0.01, None), (0.02, 0.6), (0.06, 1.0)], full, POINT, thresholds)
    assert share == 0.9
    assert precision_at(t) >= 0.65 - 1e-12  # the bound 0.6 + 0.05 is met on all rows ...
    tighter, _ = _safer([(0.0, 0.2), (0.02, 0.6), (0.03, 1.0)], full, POINT, thresholds)
    looser, _ = _safer([(0.0, 0.2), (0.02, 0.6), (0.12, 1.0)], full, POINT, thresholds)
    assert looser >= t >= tighter  # ... and a later crossing asks for a higher threshold
    # no share reaches 0.9: none
    assert _safer([(0.0, 0.2), (0.05, 0.8)], full, POINT, thresholds) == (None, None)
    assert _safer([], full, POINT, thresholds) == (None, None)


def test_the_lookup_table_draws_poisson_one_counts():
    from scipy.stats import chisquare, poisson

    from ckptaudit.stats.weights import poisson_one

    w = poisson_one(np.random.default_rng(0), (2000, 500))
    assert w.dtype == np.uint8 and w.shape == (2000, 500)
    observed = np.bincount(w.ravel(), minlength=7)[:7].astype(float)
    observed[6] += np.sum(w >= 7)
    expected = np.r_[poisson.pmf(np.arange(6), 1.0), poisson.sf(5, 1.0)] * w.size
    assert chisquare(observed, expected).pvalue > 1e-3
    assert abs(w.mean() - 1.0) < 0.005 and abs(w.var() - 1.0) < 0.01
