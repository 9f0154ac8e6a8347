"""Selection statistics (ckptaudit.selection): the per-row data reproduces scikit-learn,
weights reproduce resampled data, the confidence set and the corrected estimate behave,
and rank / audit / pick / check carry them. The error rates are pinned by simulation in
test_selection_sim.py (slow) and bench/simulate_selection.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm
from typer.testing import CliRunner

from ckptaudit import auditing
from ckptaudit.auditing import engine
from ckptaudit.cli import app
from ckptaudit.metrics.spec import parse_metric
from ckptaudit.stats import gaussian, selection, weights

runner = CliRunner()


def _binary(seed: int = 0, n: int = 400, checkpoints: int = 5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    logits = [rng.normal(size=n) + y * (0.3 + 0.3 * i) for i in range(checkpoints)]
    return y, [1 / (1 + np.exp(-z)) for z in logits]


SK_BINARY = {
    "accuracy": lambda y, p: skm.accuracy_score(y, p > 0.5),
    "recall": lambda y, p: skm.recall_score(y, p > 0.5),
    "f1": lambda y, p: skm.f1_score(y, p > 0.5),
    "mcc": lambda y, p: skm.matthews_corrcoef(y, p > 0.5),
    "balanced_accuracy": lambda y, p: skm.balanced_accuracy_score(y, p > 0.5),
    "precision:class=0": lambda y, p: skm.precision_score(y, p > 0.5, pos_label=0),
    "recall:threshold=0.3": lambda y, p: skm.recall_score(y, p > 0.3),
    "roc_auc": lambda y, p: skm.roc_auc_score(y, p),
    "roc_auc:class=0": lambda y, p: skm.roc_auc_score(1 - y, 1 - p),
    "average_precision": lambda y, p: skm.average_precision_score(y, p),
    "log_loss": lambda y, p: skm.log_loss(y, p),
    "brier": lambda y, p: skm.brier_score_loss(y, p),
}


def _spec(text: str, task: str = "binary"):
    return parse_metric(text).for_run(None, task, 1)


@pytest.mark.parametrize("text", list(SK_BINARY))
def test_per_row_data_reproduces_sklearn_and_weights_reproduce_resampled_rows(text):
    y, outs = _binary()
    spec = _spec(text)
    ev = selection.evaluate_arrays("binary", "probability", spec, y, outs)
    assert ev.rows is not None
    n = y.shape[0]
    unit = selection.weighted_values(ev.rows, np.ones((1, n), np.float32), spec, "binary")[0]
    want = np.array([SK_BINARY[text](y, p) for p in outs])
    np.testing.assert_allclose(unit, want, rtol=1e-5, atol=1e-6)
    # integer weights = the metric on the rows repeated that many times; 0/1 = a subset
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 3, n)
    idx = np.repeat(np.arange(n), counts)
    both = np.stack([counts, counts == 0]).astype(np.float32)
    got = selection.weighted_values(ev.rows, both, spec, "binary")
    for c, p in enumerate(outs):
        assert got[0, c] == pytest.approx(SK_BINARY[text](y[idx], p[idx]), rel=1e-5, abs=1e-6)
        oob = counts == 0
        assert got[1, c] == pytest.approx(SK_BINARY[text](y[oob], p[oob]), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(
    "text,sk",
    [
        ("accuracy", lambda y, p: skm.accuracy_score(y, p.argmax(1))),
        ("f1", lambda y, p: skm.f1_score(y, p.argmax(1), average="macro", labels=range(4))),
        ("recall:class=2", lambda y, p: skm.recall_score(y, p.argmax(1), labels=[2], average=None)[0]),
        ("cohen_kappa", lambda y, p: skm.cohen_kappa_score(y, p.argmax(1))),
        ("log_loss", lambda y, p: skm.log_loss(y, p, labels=range(4))),
        ("top_k_accuracy", lambda y, p: skm.top_k_accuracy_score(y, p, k=2, labels=range(4))),
    ],
)
def test_multiclass_per_row_data_reproduces_sklearn(text, sk):
    rng = np.random.default_rng(2)
    n = 300
    y = rng.integers(0, 4, n)
    outs = [rng.dirichlet(np.ones(4), n) * 0.6 + np.eye(4)[y] * 0.1 * i for i in range(4)]
    outs = [o / o.sum(axis=1, keepdims=True) for o in outs]
    spec = _spec(text, "multiclass")
    ev = selection.evaluate_arrays("multiclass", "probability", spec, y, outs)
    assert ev.rows is not None
    unit = selection.weighted_values(ev.rows, np.ones((1, n), np.float32), spec, "multiclass")[0]
    np.testing.assert_allclose(unit, [sk(y, p) for p in outs], rtol=1e-5, atol=1e-6)


def test_regression_mean_metrics_reproduce_sklearn():
    rng = np.random.default_rng(3)
    y = rng.normal(size=200)
    outs = [y + rng.normal(scale=0.5 + 0.1 * i, size=200) for i in range(3)]
    for text, sk in (
        ("mse", skm.mean_squared_error),
        ("mae", skm.mean_absolute_error),
        ("rmse", lambda a, b: np.sqrt(skm.mean_squared_error(a, b))),
    ):
        spec = _spec(text, "regression")
        ev = selection.evaluate_arrays("regression", "value", spec, y, outs)
        unit = selection.weighted_values(ev.rows, np.ones((1, 200), np.float32), spec, "regression")[0]
        np.testing.assert_allclose(unit, [sk(y, p) for p in outs], rtol=1e-5)


def test_unsupported_metrics_say_so():
    assert selection.row_kind(parse_metric("val_loss", logged=["val_loss"]), "binary") is None
    assert selection.row_kind(parse_metric("roc_auc"), "multiclass") == "ranking"  # issue 10: one-vs-rest has a per-row form
    assert selection.row_kind(parse_metric("mypkg.metrics:profit:mode=max"), "binary") is None


def test_resampling_is_stratified_exactly_and_keeps_class_totals_on_the_poisson_path(monkeypatch):
    strata = np.r_[np.zeros(95, int), np.ones(5, int)]
    rng = np.random.default_rng(0)
    for w in selection._weight_chunks(strata, 300, rng):
        assert np.all(w[:, strata == 1].sum(axis=1) == 5) and np.all(w[:, strata == 0].sum(axis=1) == 95)
        assert np.all(w == np.round(w))
    monkeypatch.setattr(weights, "_EXACT_CELLS", 0)
    w = np.concatenate(list(selection._weight_chunks(strata, 300, np.random.default_rng(0))))
    np.testing.assert_allclose(w[:, strata == 1].sum(axis=1), 5, rtol=1e-5)
    assert 0.30 < np.mean(w == 0) < 0.44  # Poisson(1): about e^-1 of the rows out of bag


def test_confidence_set_keeps_copies_and_drops_a_clearly_worse_checkpoint():
    y, outs = _binary(n=2000, checkpoints=2)
    strong = outs[1]
    weak = 1 / (1 + np.exp(-(np.random.default_rng(9).normal(size=2000))))  # no signal
    spec = _spec("accuracy")
    ev = selection.evaluate_arrays("binary", "probability", spec, y, [strong, strong.copy(), weak, strong.copy()])
    sel = selection.select(ev, resamples=300, seed=0)
    assert sel.winner == "c0000" and set(sel.tied_best) == {"c0000", "c0001", "c0003"}
    assert sel.tied_best[0] == sel.winner
    worse = sel.entry("c0002")
    assert worse is not None and worse.tied_best is False and worse.mcs_pvalue < 0.05
    assert all(sel.entry(n).mcs_pvalue == 1.0 for n in sel.tied_best)  # type: ignore[union-attr]
    assert sel.as_dict()["tied_best"] == list(sel.tied_best)


def test_expected_on_new_data_is_below_a_selected_winner_and_reproducible():
    rng = np.random.default_rng(4)
    n = 500
    y = rng.integers(0, 2, n)
    preds = [np.where(rng.random(n) < 0.8, y, 1 - y) for _ in range(30)]
    spec = _spec("accuracy")
    ev = selection.evaluate_arrays("binary", "label", spec, y, preds)
    a = selection.select(ev, resamples=400, seed=5)
    assert a == selection.select(ev, resamples=400, seed=5)
    e = a.estimate
    assert e is not None and e.raw == max(ev.values)  # type: ignore[type-var]
    # the best of 30 equal checkpoints flatters by ~4 points; the correction removes most of it
    assert e.optimism == pytest.approx(e.raw - e.expected) and e.optimism > 0.02
    assert abs(e.expected - 0.8) < 0.02 and e.interval[0] <= 0.8 <= e.interval[1]


def test_optimism_is_oriented_for_losses():
    y, outs = _binary(checkpoints=8)
    ev = selection.evaluate_arrays("binary", "probability", _spec("log_loss"), y, outs)
    e = selection.select(ev, resamples=300, seed=0).estimate
    assert e is not None and e.optimism == pytest.approx(e.expected - e.raw)


def test_roc_auc_interval_is_widened_for_a_handful_of_positives():
    rng = np.random.default_rng(6)
    y = np.r_[np.ones(4, int), np.zeros(96, int)]
    scores = rng.normal(size=100) + y
    ev = selection.evaluate_arrays("binary", "logit", _spec("roc_auc"), y, [scores])
    sel = selection.select(ev, resamples=300, seed=0)
    low, high = sel.checkpoints[0].interval  # type: ignore[misc]
    hm_low, hm_high = selection.hanley_mcneil_interval(ev.values[0], 4, 96)  # type: ignore[arg-type]
    assert low <= hm_low and high >= hm_high and low <= ev.values[0] <= high


def test_memory_bound_drops_the_rows_and_says_why(runs_dir):
    from ckptaudit.store.reader import read_run

    run = read_run(runs_dir / "fraud")
    ev = selection.evaluate_run(run, _spec("recall"), max_bytes=1000)
    assert ev.rows is None and "MiB" in (ev.rows_note or "")
    sel = selection.select(ev)
    assert not sel.available and sel.tied_best == () and "MiB" in (sel.note or "")
    assert sel.winner == "epoch-0009"


def test_audit_reads_each_validation_file_once(runs_dir, monkeypatch):
    reads: dict[tuple[str, str], int] = {}
    real = engine.read_predictions

    def counting(run, ckpt, split="val"):
        reads[(ckpt.name, split)] = reads.get((ckpt.name, split), 0) + 1
        return real(run, ckpt, split)

    monkeypatch.setattr(engine, "read_predictions", counting)
    ra = auditing.audit_run(_read(runs_dir, "fraud"), auditing.AuditOptions(metric="recall", resamples=200))
    val_reads = [v for (name, split), v in reads.items() if split == "val"]
    assert ra.selection is not None and ra.selection.available
    # check_overlap reads one checkpoint's val.npz for its own pass; every other file once
    assert len(val_reads) == 20 and sum(val_reads) <= 21


def _read(runs_dir, name):
    from ckptaudit.store.reader import read_run

    return read_run(runs_dir / name)


def test_rank_ci_marks_the_tied_best_and_gives_the_winner_expected_on_new_data(runs_dir):
    result = runner.invoke(
        app, ["rank", str(runs_dir / "fraud"), "-m", "recall", "--ci", "--format", "json", "--resamples", "300"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    winner = rows[0]
    assert winner["checkpoint"] == "epoch-0009" and winner["tied_best"] is True
    expected = winner["expected_on_new_data"]
    assert expected["raw"] == winner["recall"] and expected["ci95"][0] <= expected["expected_on_new_data"] <= expected["ci95"][1]
    assert all("expected_on_new_data" not in r for r in rows[1:])
    by_name = {r["checkpoint"]: r for r in rows}
    assert by_name["epoch-0001"]["tied_best"] is False  # recall 0 is told apart from 0.71
    table = runner.invoke(app, ["rank", str(runs_dir / "fraud"), "-m", "recall", "--ci", "--resamples", "300"]).stdout
    assert "expected on new data" in table and "cannot be told apart from the best" in table


def test_audit_speaks_of_the_set(runs_dir):
    ra = auditing.audit_run(_read(runs_dir, "fraud"), auditing.AuditOptions(metric="recall", resamples=300))
    finding = next(f for f in ra.findings if f.code == "winner-within-noise")
    assert "cannot be told apart from the best" in finding.message and "expected on new data" in finding.message
    assert finding.evidence["tied_checkpoints"] == ra.tied_with_winner()
    assert finding.evidence["tied"] == len(ra.selection.tied_best) - 1  # type: ignore[union-attr]


def test_pick_provenance_records_the_selection(runs_dir, tmp_path):
    dest = tmp_path / "best"
    result = runner.invoke(
        app, ["pick", str(runs_dir / "fraud"), "-m", "recall", "--link", str(dest), "--no-pin", "--resamples", "300"]
    )
    assert result.exit_code == 0, result.output
    prov = json.loads((tmp_path / "best.ckptaudit.json").read_text())
    exp = prov["expected_on_new_data"]
    assert exp["optimism"] == pytest.approx(prov["value"] - exp["value"])
    assert exp["ci95"][0] <= exp["value"] <= exp["ci95"][1]
    assert prov["tied_best"]["count"] == len(prov["tied_best"]["checkpoints"]) >= 1
    assert prov["tied_best"]["checkpoints"][0] == prov["checkpoint"]


@pytest.mark.parametrize("text", ["recall", "mcc", "log_loss"])
def test_the_gaussian_path_for_large_sets_agrees_with_exact_resampling(text, monkeypatch):
    rng = np.random.default_rng(7)
    n = 6000
    y = (rng.random(n) < 0.3).astype(int)
    outs = [1 / (1 + np.exp(-(rng.normal(size=n) + y * (1 + 0.02 * i) - 0.8))) for i in range(12)]
    ev = selection.evaluate_arrays("binary", "probability", _spec(text), y, outs)
    assert ev.rows is not None and not selection.gaussian_ok(ev.rows, 400)
    exact = selection.select(ev, resamples=400, seed=1)
    monkeypatch.setattr(gaussian, "_GAUSSIAN_MIN_CELLS", 0)
    assert selection.gaussian_ok(ev.rows, 400)
    gauss = selection.select(ev, resamples=400, seed=1)
    assert gauss.estimate.expected == pytest.approx(exact.estimate.expected, abs=0.004)  # type: ignore[union-attr]
    for a, b in zip(exact.checkpoints, gauss.checkpoints, strict=True):
        assert a.interval == pytest.approx(b.interval, abs=0.006)
    assert abs(len(gauss.tied_best) - len(exact.tied_best)) <= 2


def test_python_api_returns_plain_selection_data(runs_dir):
    import ckptaudit

    (sel,) = ckptaudit.selections(runs_dir / "fraud", "recall", resamples=200)
    doc = sel.as_dict()
    assert doc["winner"] == "epoch-0009" and doc["tied_best"][0] == "epoch-0009"
    assert {"checkpoint", "raw", "expected_on_new_data", "ci95", "optimism"} <= set(doc["estimate"])
    assert {"skipped_draws", "positives", "too_few_positives", "positives_needed"} <= set(doc["estimate"])
    assert len(doc["checkpoints"]) == 20 and json.dumps(doc)


@pytest.mark.parametrize("width", [1, 2, 5, 16])
def test_narrow_picks_and_ranges_are_the_row_wise_ones(width, monkeypatch):
    """Issue 21: few checkpoints are picked column by column and their ranges taken over a
    transposed block; the picks (first index on ties, NaN never picked), the finite flags and
    the ranges are those of numpy's row-wise argmax, any, all, max and min."""
    from ckptaudit.stats import confidence

    rng = np.random.default_rng(width)
    v = np.round(rng.normal(size=(3000, width)), 1)  # ties
    v[rng.random(v.shape) < 0.1] = np.nan
    v[5] = np.nan
    for sign in (1.0, -1.0):
        ok = np.isfinite(v)
        want = (np.where(ok, sign * v, -np.inf).argmax(axis=1), ok.any(axis=1), ok.all(axis=1))
        for got, expected in zip(selection._picked(v, sign), want, strict=True):
            np.testing.assert_array_equal(got, expected)
    filled = np.where(np.isfinite(v), v, 0.0)
    point = rng.normal(size=width)
    for alive in (np.arange(width), np.arange(0, width, 2)):
        sub = filled[:, alive] - point[alive][None, :]
        np.testing.assert_array_equal(confidence._ranges(filled, point, alive), sub.max(axis=1) - sub.min(axis=1))
