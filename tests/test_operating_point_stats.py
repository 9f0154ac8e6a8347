"""The operating point's honest numbers (issue 20): the pair's selection-corrected estimate,
the constraint-holds share, the fragile-operating-point finding and pick's threshold."""

from __future__ import annotations

import dataclasses
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


def _resampled_curves(rng, rows, resamples, block_window=None, dense=None):
    """A column of tied scores and its curves under Poisson weights (many zero), both as
    choose's rows and as the bootstrap's columns."""
    from ckptaudit.stats import operating_curves as oc

    y = rng.random(rows) < 0.3
    s = np.round(rng.normal(size=rows) + 1.2 * y, 1)
    cand, seg = oc.place(s, y)
    # the large-sample path's one-byte weights, or the full bootstrap's float64 counts
    w = rng.poisson(1.0, (rows, resamples)).astype(np.uint8 if rows % 2 else np.float64)
    w[y, 0] = 0  # a resample without positives (recall undefined) and one without negatives
    w[~y, 1] = 0
    col = oc.make_column(cand, seg, y, block_window, dense=dense)
    p, n = oc.totals(w, y)
    return col, w, p, n


@pytest.mark.parametrize("dense", [False, True, "running"])
@pytest.mark.parametrize("seed", range(6))
def test_the_bootstraps_column_choices_equal_the_reference_choice(seed, dense, monkeypatch):
    # choose_columns and the block sums (every operating point, bounds from 0 to 1, windows and
    # slices of them) against choose's one-row-per-resample reference: the same values and
    # indices, from either layout of the column (summed row by row, or threshold by threshold,
    # or, "running", each class as one running sum down its rows)
    from ckptaudit.stats import operating_blocks as ob
    from ckptaudit.stats import operating_curves as oc
    from ckptaudit.stats import operating_sums

    if dense:
        monkeypatch.setattr(oc, "SEGMENT_CELLS", 0)
        monkeypatch.setattr(operating_sums, "RUNNING_CELLS", 10**9 if dense == "running" else 0)
        dense = True

    rng = np.random.default_rng(seed)
    window = None if seed % 2 == 0 else (5, 60)
    col, w, p, n = _resampled_curves(rng, 400 + seed % 2, 64, window, dense)
    assert col.dense == dense
    (tp_pad, fp_pad), (tp_out, fp_out) = oc.cumulative(w, col)
    # the block curves from the curves, and read off the running sums (uint16 where the weights
    # are one byte: the false positives' offsets wrap below 0 and back)
    top = int(w.sum(axis=0).max()) if w.dtype == np.uint8 else None
    laid = oc.laid_out(col)
    both_blocks = (ob.BlockCurves(tp_pad, fp_pad, col), ob.BlockCurves.from_sums(*oc.running_sums(w, laid, top=top), laid))
    tp, fp = oc.FullCurves(tp_pad, fp_pad, col).tp, oc.FullCurves(tp_pad, fp_pad, col).fp
    # the out-of-bag curves: those of the weights that are 0, counted once
    (zeros, _), _ = oc.cumulative((w == 0).astype(np.uint8), col)
    assert np.array_equal(tp_out, zeros) and np.array_equal(fp_out, oc.cumulative((w == 0).astype(np.uint8), col)[0][1])
    size = col.thresholds.shape[0]
    bounds = [0.0, 0.3, 0.55, 0.8, 0.95, 1.0]
    points = [
        op.OperatingPoint(t, c, b)
        for t, c in [
            ("recall", "precision"),
            ("precision", "recall"),
            ("recall", "specificity"),
            ("specificity", "recall"),
            ("precision", "specificity"),
            ("specificity", "precision"),
        ]
        for b in bounds
    ]
    points.append(op.OperatingPoint("cost", None, None, 10.0, 1.0))
    for point in points:
        for lo, hi in [(0, size), (size // 4, size // 2 + 1), (3, size)]:
            rows = (tp[lo:hi].T.astype(np.float64), fp[lo:hi].T.astype(np.float64), p[:, None], n[:, None])
            v_ref, i_ref = oc.choose(*rows, point)
            v, i = oc.choose_columns(tp[lo:hi], fp[lo:hi], p, n, point)
            assert np.array_equal(v, v_ref, equal_nan=True) and np.array_equal(i, i_ref), (point, lo, hi)
            for blocks in both_blocks if ob.serves(point) else ():
                v_b, i_b, con = blocks.choose(point, p, n, lo, hi)
                assert np.array_equal(v_b, v_ref, equal_nan=True), (point, lo, hi)
                assert np.array_equal(i_b, np.where(i_ref >= 0, i_ref + lo, -1)), (point, lo, hi)
                at = np.maximum(i_b, 0)
                con_ref = oc.rate(point.constraint, tp[at, np.arange(64)], fp[at, np.arange(64)], p, n)
                assert np.array_equal(con, con_ref, equal_nan=True)
    q = np.arange(64)
    for blocks in both_blocks:
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
        c = op.curve(y, s)
        kernel, read_again = oc.curve_counts(c, s.dtype), oc.curve_counts(dataclasses.replace(c, grows=None), s.dtype)
        for got_cand, got in (oc.sorted_counts(s, y), kernel, read_again):
            assert got_cand.dtype == cand.dtype and np.array_equal(got_cand, cand)
            assert all(np.array_equal(a, b) for a, b in zip(got, ref, strict=True))


def test_the_safer_threshold_is_interpolated_where_the_stricter_bounds_shares_cross_0_9():
    from ckptaudit.stats.operating_curves import sorted_counts
    from ckptaudit.stats.operating_shares import safer as _safer

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
    # drawn by blocks of rows, the same counts as one lookup of one call's uniforms (odd shapes too)
    from ckptaudit.stats.weights import _POISSON_LUT

    for shape in [(70_001, 7), (300_001,), (3, 0)]:
        ref = _POISSON_LUT[np.random.default_rng(1).integers(0, 1 << 16, size=shape, dtype=np.uint16)]
        assert np.array_equal(poisson_one(np.random.default_rng(1), shape), ref)


@pytest.mark.parametrize("dense", [None, False, True, "running"])
@pytest.mark.parametrize("seed", range(4))
def test_the_weighted_curves_equal_a_product_of_weights_and_flags(seed, dense, monkeypatch):
    # every threshold's weighted true and false positives, whatever the layout of the running
    # sums: against the weights times each threshold's flagged rows, for windows and subsets of
    # rows (ids), subsets of resamples (q), one-byte weights summed in uint16 or float32; a
    # column summed threshold by threshold (dense: at any size; "running": each class as one
    # running sum down its rows) or row by row, or as each call's size pays (None)
    from ckptaudit.stats import operating_curves as oc
    from ckptaudit.stats import operating_sums

    if dense:
        monkeypatch.setattr(oc, "SEGMENT_CELLS", 0)
        monkeypatch.setattr(operating_sums, "RUNNING_CELLS", 10**9 if dense == "running" else 0)
        dense = True

    rng = np.random.default_rng(seed)
    rows, resamples = 300 + 37 * seed, 50
    y = rng.random(rows) < 0.3
    s = np.round(rng.normal(size=rows) + 1.2 * y, 1 + seed % 2)
    cand = np.unique(s[y])
    m = cand.shape[0]
    thresholds = np.r_[np.inf, cand[::-1]]
    w = rng.poisson(1.0, (rows, resamples)).astype(np.uint8)
    flags = s[None, :] >= thresholds[:, None]  # (thresholds, rows)
    tp_ref, fp_ref = (flags & y) @ w.astype(np.int64), (flags & ~y) @ w.astype(np.int64)
    top = int(w.sum(axis=0).max())
    for window in (None, (0, m), (3, m // 2), (m // 3, m - 2), (5, 5)):
        lo, hi = (0, m) if window is None else window
        ids = np.flatnonzero(s >= cand[m - hi]) if seed % 2 and hi > 0 else None
        seg = oc.places(cand, s if ids is None else s[ids])
        col = oc.make_column(cand, seg, y if ids is None else y[ids], window, ids, dense)
        q = np.sort(rng.choice(resamples, 17, replace=False))
        run = np.arange(5, 22)  # a run of resamples is read as a view
        cases = (({}, slice(None)), ({"top": top}, slice(None)), ({"q": q, "top": top}, q), ({"q": run, "top": top}, run))
        for kwargs, cols in cases:
            tp, fp = oc.weighted(w, col, padded=False, **kwargs)
            assert tp.dtype == (np.uint16 if "top" in kwargs else np.float32)
            assert np.array_equal(tp, tp_ref[lo : hi + 1][:, cols]), (window, kwargs)
            assert np.array_equal(fp, fp_ref[lo : hi + 1][:, cols]), (window, kwargs)
        (_, _), (tp_out, fp_out) = oc.cumulative(w, col, padded=False)
        zeros = (w == 0).astype(np.int64)
        assert np.array_equal(tp_out, ((flags & y) @ zeros)[lo : hi + 1])
        assert np.array_equal(fp_out, ((flags & ~y) @ zeros)[lo : hi + 1])


@pytest.mark.parametrize(
    "point", [POINT, op.OperatingPoint("recall", "precision", 0.8), op.OperatingPoint("specificity", "recall", 0.5)]
)
def test_the_large_sample_windows_hold_every_resamples_choice(point):
    # the large-sample path keeps, per checkpoint, the thresholds a resample could choose: the
    # choices of 600 Poisson resamples on the whole curve all lie inside, for checkpoints from
    # weak (whose constraint hovers at the bound over a long stretch near the top: a window cut
    # by the target's standard errors missed their choices) to strong
    from ckptaudit.stats import operating_curves as oc
    from ckptaudit.stats import operating_draws as od

    rng = np.random.default_rng(11)
    y, cols = _columns(rng, 40_000, [1.2, 1.5, 2.0, 2.5])
    resamples = 600
    w = od.poisson_one(rng, (y.shape[0], resamples))
    p, n = oc.totals(w, y)
    counted = [oc.sorted_counts(c, y) for c in cols]
    windows = od.plan_windows([f for _, f in counted], [point])[0]
    for (cand, _), c, (lo, hi) in zip(counted, cols, windows, strict=True):
        col = oc.make_column(cand, oc.places(cand, c), y)
        tp, fp = oc.weighted(w, col, padded=False)
        _, i = oc.choose_columns(tp, fp, p, n, point)
        chosen = i[i >= 0]
        assert chosen.size > 0.2 * resamples  # the weakest meets the bound in fewer resamples
        assert chosen.min() >= lo and chosen.max() <= hi, (lo, hi, chosen.min(), chosen.max())


@pytest.mark.parametrize("seed", range(6))
def test_a_perfect_ranking_is_found_from_the_scores_or_from_an_operating_points_curve(seed):
    # suspicious-perfect's test (every positive above every negative) against scikit-learn's
    # AUC of 1, read from the scores and from the curve an operating-point metric left cached
    from sklearn.metrics import roc_auc_score

    from ckptaudit.auditing.engine import _perfect_auc
    from ckptaudit.metrics import operating, prepared
    from ckptaudit.metrics.spec import parse_metric

    rng = np.random.default_rng(seed)
    y = (rng.random(400) < 0.3).astype(np.int8)
    gap = [0.0, 1e-3, -0.3, 2.0, 0.5, 0.0][seed]  # 0: a positive ties the top negative; < 0: they overlap
    s = np.where(y == 1, rng.random(400) + 1.0 + gap, rng.random(400))
    if gap == 0.0:
        s[np.flatnonzero(y == 1)[0]] = s[y == 0].max()
    s = np.round(s / 4, 3).astype(np.float32) if seed == 5 else (s / 4).astype(np.float32)
    truth = 1.0 if roc_auc_score(y, s) == 1.0 else None
    plain = prepared.prepare("binary", "probability", y, s)
    assert _perfect_auc(plain) == truth
    with_curve = prepared.prepare("binary", "probability", y, s)
    operating.evaluate(with_curve, parse_metric("recall@precision>=0.9"))
    assert operating.cached_curve(with_curve) is not None and _perfect_auc(with_curve) == truth


@pytest.mark.parametrize(
    "point",
    [
        POINT,
        op.OperatingPoint("precision", "recall", 0.5),
        op.OperatingPoint("specificity", "recall", 0.6),
        op.OperatingPoint("cost", None, None, 10.0, 1.0),
    ],
    ids=["recall@precision", "precision@recall", "specificity@recall", "cost"],
)
def test_the_pass_keeps_only_the_rows_the_large_sample_path_reads(point):
    # where the bootstrap takes the large-sample path the builder keeps each column's rows that a
    # kept threshold could flag (at any stricter bound), a few percent of them: the estimate from
    # those equals the one from every row's score, every figure and every in-bag value
    from ckptaudit.stats import operating as ops
    from ckptaudit.stats.operating_curves import sorted_counts

    rng = np.random.default_rng(5)
    y, cols = _columns(rng, 20_000, [1.8, 2.2, 2.4, 2.3])
    cols = [c.astype(np.float32) for c in cols]
    counted = [sorted_counts(c, y) for c in cols]
    kept = [ops.kept_rows(full, cand, c, point) for (cand, full), c in zip(counted, cols, strict=True)]
    share = max(k.index.shape[0] for k in kept) / y.shape[0]
    assert share < (0.1 if point.target == "recall" else 0.9), share  # (a recall bound or a cost flags more rows)
    whole = estimate(cols, y, point, resamples=300, seed=1, fast=True, counted=counted)
    part = estimate(kept, y, point, resamples=300, seed=1, fast=True, counted=counted)
    assert whole is not None and part is not None
    assert whole.as_dict() == part.as_dict() and whole.holds_variants == part.holds_variants
    assert (whole.threshold, whole.safe_threshold, whole.safe_holds) == (part.threshold, part.safe_threshold, part.safe_holds)
    assert np.array_equal(whole.in_bag, part.in_bag, equal_nan=True)


def test_the_builder_keeps_the_rows_only_where_the_large_sample_path_serves(tmp_path):
    # rows x resamples >= 2e7: kept rows; fewer: every row's score (the full bootstrap reads them)
    from ckptaudit.metrics.evaluation import prepare_predictions
    from ckptaudit.metrics.spec import parse_metric
    from ckptaudit.stats.operating import OperatingBuilder
    from ckptaudit.stats.operating_draws import KeptRows
    from ckptaudit.store.reader import discover, read_predictions

    rng = np.random.default_rng(3)
    y, cols = _columns(rng, 20_000, [2.0, 2.4])
    run = write_run(tmp_path / "r", "binary", "probability", y.astype(np.int8), [expit(c).astype(np.float32) for c in cols])
    r = discover([run])[0]
    spec = parse_metric("recall@precision>=0.6")
    for resamples, kind in ((1000, KeptRows), (999, np.ndarray), (None, np.ndarray)):
        builder = OperatingBuilder(r, spec, resamples)
        for ckpt in r.checkpoints:
            prep = prepare_predictions(r, read_predictions(r, ckpt, "val"))
            builder.add(ckpt, prep, op.kernel(prep, spec))
        assert all(isinstance(c, kind) for c in builder.columns.values()) and len(builder.columns) == 2


@pytest.mark.parametrize("seed", range(5))
def test_the_kernels_choice_reads_the_positive_scores_only_and_chooses_as_on_every_threshold(seed):
    # the kernel's choice from +inf and the thresholds where tp grows equals the choice over every
    # distinct score: the same value, index on the curve, threshold and best constraint reached
    # (ties, rounded scores, constraints nothing meets, all-equal scores)
    rng = np.random.default_rng(seed)
    n = [3000, 500, 40, 3000, 200][seed]
    y = rng.random(n) < [0.05, 0.3, 0.5, 0.02, 0.4][seed]
    s = rng.normal(size=n) + 1.5 * y
    s = np.round(s, [None, 1, 0, 2, None][seed]) if seed in (1, 2, 3) else s
    if seed == 4:
        s = np.zeros(n)
    c = op.curve(y, s)
    every = dataclasses.replace(c, grows=None)
    points = [
        op.OperatingPoint(t, k, b)
        for t, k in [("recall", "precision"), ("precision", "recall"), ("recall", "specificity"), ("specificity", "recall")]
        for b in (0.0, 0.3, 0.8, 0.99, 1.0)
    ]
    points += [op.OperatingPoint("cost", None, None, a, 1.0) for a in (0.5, 10.0, 100.0)]
    for point in points:
        got, ref = dataclasses.astuple(op.choose(c, point)), dataclasses.astuple(op.choose(every, point))
        assert all(a == b or (a != a and b != b) for a, b in zip(got, ref, strict=True)), (point, got, ref)  # NaN: none meets


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize(
    "point",
    [
        op.OperatingPoint("recall", "precision", 0.7),
        op.OperatingPoint("specificity", "recall", 0.6),
        op.OperatingPoint("recall", "specificity", 0.95),
    ],
)
def test_the_stricter_bounds_branch_and_bound_prunes_nothing_that_could_win(point, fast, monkeypatch):
    # the stricter bounds' choices skip the draws where a checkpoint's bound says it cannot win:
    # every figure equals the one from offering every checkpoint in every draw (weak checkpoints
    # whose constraint hovers at the bound included)
    from ckptaudit.stats import operating_pairs

    rng = np.random.default_rng(4)
    y, cols = _columns(rng, 6000, [1.0, 1.6, 2.2, 2.3, 2.1, 1.3])
    pruned = estimate(cols, y, point, resamples=250, seed=2, fast=fast)
    step = operating_pairs.stricter_step

    def every(s_best, k, limits, *rest):
        step(s_best, k, [np.full(lim.shape, np.inf) for lim in limits], *rest)

    monkeypatch.setattr(operating_pairs, "stricter_step", every)
    whole = estimate(cols, y, point, resamples=250, seed=2, fast=fast)
    assert pruned is not None and whole is not None
    assert pruned.as_dict() == whole.as_dict() and (pruned.safe_threshold, pruned.safe_holds) == (
        whole.safe_threshold,
        whole.safe_holds,
    )


@pytest.mark.parametrize("seed", range(3))
def test_the_above_rows_summed_as_one_product_equal_their_gathered_sums(seed, monkeypatch):
    # every column's rows above its window, summed for all columns at once (an indicator times the
    # weights, float32, in blocks of rows): the sums of the gathered rows, in the accumulator's
    # type (uint16, or float32 where a column sum reaches 2^16); none where a sum could reach 2^24
    from ckptaudit.stats import operating_above
    from ckptaudit.stats import operating_curves as oc
    from ckptaudit.stats.operating_above import AboveProduct

    monkeypatch.setattr(operating_above, "ROW_BLOCK", 256)

    rng = np.random.default_rng(seed)
    rows, resamples = 3000 + 17 * seed, 40
    y = rng.random(rows) < 0.2
    w = rng.poisson(1.0, (rows, resamples)).astype(np.uint8)
    cols = []
    for mu in (1.0, 1.5, 2.5):
        s = np.round(rng.normal(size=rows) + mu * y, 2)
        cand = np.unique(s[y])
        m = cand.shape[0]
        lo = int(rng.integers(m // 3, 2 * m // 3))
        cols.append(oc.make_column(cand, oc.places(cand, s), y, (lo, lo + 20)))
    product = AboveProduct(cols, rows)
    top = int(w.sum(axis=0).max())
    for top_said, kind in ((top, np.uint16), (2**16 + top, np.float32)):
        sums = product.sums(w, top_said)
        assert sums is not None and len(sums) == len(cols)
        for col, (pos_sum, neg_sum) in zip(cols, sums, strict=True):
            assert col.above[0].size and col.above[1].size  # (rows above on both sides)
            assert pos_sum.dtype == kind and neg_sum.dtype == kind
            assert np.array_equal(pos_sum, w[col.above[0]].sum(axis=0))
            assert np.array_equal(neg_sum, w[col.above[1]].sum(axis=0))
    assert product.sums(w, 2**24) is None
    assert product.sums(w.astype(np.float64), top) is None  # (the multinomial path's weights)


@pytest.mark.parametrize(
    "point",
    [
        op.OperatingPoint("specificity", "recall", 0.95),
        op.OperatingPoint("precision", "recall", 0.9),
        op.OperatingPoint("recall", "precision", 0.3),
    ],
    ids=["specificity@recall", "precision@recall", "recall@precision"],
)
def test_the_estimate_is_the_same_with_the_above_rows_summed_as_one_product_or_gathered(point, monkeypatch):
    # the large-sample path sums the rows above each column's window as one product where that
    # pays: every figure and every in-bag value equal those from gathering the rows column by column
    from ckptaudit.stats import operating_above

    rng = np.random.default_rng(8)
    y, cols = _columns(rng, 20_000, [1.0, 1.4, 1.8, 1.6])
    made = []
    real = operating_above.AboveProduct.sums

    def counted_sums(self, wt, top):
        made.append(wt.shape[1])
        return real(self, wt, top)

    monkeypatch.setattr(operating_above.AboveProduct, "sums", counted_sums)
    monkeypatch.setattr(operating_above, "PRODUCT_SHARE", 0.0)
    summed = estimate(cols, y, point, resamples=300, seed=3, fast=True)
    assert sum(made) == 300  # (every batch of resamples summed by the product)
    monkeypatch.setattr(operating_above, "PRODUCT_SHARE", np.inf)
    gathered = estimate(cols, y, point, resamples=300, seed=3, fast=True)
    assert sum(made) == 300
    assert summed is not None and gathered is not None
    assert summed.as_dict() == gathered.as_dict() and summed.holds_variants == gathered.holds_variants
    assert (summed.safe_threshold, summed.safe_holds) == (gathered.safe_threshold, gathered.safe_holds)
    assert np.array_equal(summed.in_bag, gathered.in_bag, equal_nan=True)
