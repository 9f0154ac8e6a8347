"""The one bootstrap engine (ckptaudit.stats.selection's weighted values, which
ckptaudit.stats.bootstrap wraps): confusion metrics from weighted per-class counts equal
the old K x K confusion-matrix path exactly, every per-row form reproduces scikit-learn at
unit weights and the metric on explicitly resampled rows at integer weights, and
compare / interval are the plain row bootstrap of those values."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from sklearn import metrics as skm

from ckptaudit.metrics import kernels as metrics
from ckptaudit.metrics.spec import parse_metric
from ckptaudit.stats import bootstrap, selection, weights

LABEL_METRICS = [
    "accuracy",
    "balanced_accuracy",
    "precision",
    "recall",
    "f1",
    "f2",
    "specificity",
    "npv",
    "mcc",
    "cohen_kappa",
    "precision:average=micro",
    "recall:average=weighted",
    "f1:average=macro",
    "f1:average=weighted",
    "npv:average=micro",
    "specificity:average=weighted",
    "recall:class=1",
    "f1:class=0",
    "mcc:class=1",
]


def _spec(text: str, task: str):
    return parse_metric(text).for_run(None, task, 1)


#: (classes, metric) cases: binary runs take the metrics without an average
CASES = [(k, t) for k in (2, 3, 5) for t in LABEL_METRICS if k > 2 or "average=" not in t]


# --------------------------------------------------------------------------- the old path, for reference


def _old_from_confusions(cms: np.ndarray, spec, task: str, n_classes: int) -> np.ndarray:
    """The K x K path as it was before the per-class counts (issue 10), verbatim."""
    name = spec.name
    if name == "accuracy":
        return np.trace(cms, axis1=1, axis2=2) / cms.sum(axis=(1, 2))
    c = metrics.counts_from_confusion(cms)
    if name in metrics.PER_CLASS:
        return np.asarray(metrics._reduce(name, c, spec, task, n_classes), dtype=np.float64)
    if name == "balanced_accuracy":
        support = c.support
        present = support > 0
        recall = metrics._ratio(c.tp, support)
        return (recall * present).sum(axis=1) / present.sum(axis=1)

    def mcc(cm):
        t_sum = cm.sum(axis=1, dtype=np.float64)
        p_sum = cm.sum(axis=0, dtype=np.float64)
        n = p_sum.sum()
        cov_ytyp = float(np.trace(cm)) * n - np.dot(t_sum, p_sum)
        cov_ypyp = n * n - np.dot(p_sum, p_sum)
        cov_ytyt = n * n - np.dot(t_sum, t_sum)
        return 0.0 if cov_ypyp * cov_ytyt == 0 else float(cov_ytyp / np.sqrt(cov_ytyt * cov_ypyp))

    def kappa(cm):
        cm = cm.astype(np.float64)
        expected = np.outer(cm.sum(axis=0), cm.sum(axis=1)) / cm.sum()
        off = ~np.eye(cm.shape[0], dtype=bool)
        den = expected[off].sum()
        return float("nan") if den == 0 else float(1.0 - cm[off].sum() / den)

    if name == "mcc":
        if spec.class_index is not None:
            out = []
            for m in cms:
                k = metrics.counts_from_confusion(m)
                i = spec.class_index
                out.append(mcc(np.array([[k.tn[i], k.fp[i]], [k.fn[i], k.tp[i]]])))
            return np.array(out)
        return np.array([mcc(m) for m in cms])
    if name == "cohen_kappa":
        return np.array([kappa(m) for m in cms])
    raise AssertionError(name)


@pytest.mark.parametrize("k,text", CASES)
def test_counts_path_equals_the_old_confusion_matrix_path(k, text):
    task = "binary" if k == 2 else "multiclass"
    spec = _spec(text, task)
    rng = np.random.default_rng(k)
    cms = rng.integers(0, 30, size=(200, k, k)).astype(np.float64)
    cms[0] = np.diag(rng.integers(1, 5, k))  # perfect: degenerate mcc / kappa
    cms[1, :, :] = 0
    cms[1, 0, :] = 4  # one true class only
    cms[2, :, :] = 0
    cms[2, :, 1] = 3  # one predicted class only
    with np.errstate(invalid="ignore", divide="ignore"):
        want = _old_from_confusions(cms, spec, task, k)
    got = metrics.from_confusions(cms, spec, task, k)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)


# --------------------------------------------------------------------------- per-row forms


def _resampled(rows_fn, counts):
    idx = np.repeat(np.arange(counts.shape[0]), counts)
    return rows_fn(idx)


# 12 classes take the sorted (reduceat) path, up to 8 the matrix products
@pytest.mark.parametrize("k,text", [(k, t) for k in (2, 4, 12) for t in LABEL_METRICS if k > 2 or "average=" not in t])
def test_confusion_weights_reproduce_sklearn_and_resampled_rows(k, text):
    task = "binary" if k == 2 else "multiclass"
    spec = _spec(text, task)
    rng = np.random.default_rng(10 + k)
    n = 240
    y = rng.integers(0, k, n)
    outs = [np.where(rng.random(n) < 0.4 + 0.1 * i, y, rng.integers(0, k, n)) for i in range(4)]
    output = "label"
    arrays = outs
    if task == "binary":
        output, arrays = "probability", [np.where(o == 1, 0.8, 0.2) for o in outs]
    run_n = k if task == "multiclass" else 2
    preps = [metrics.prepare(task, output, y, a, 1, run_n) for a in arrays]
    ev = selection.evaluate_arrays(task, output, spec, y, arrays) if task == "binary" else _multiclass_eval(spec, y, preps)
    rows = ev.rows
    assert rows is not None and rows.kind == "confusion"
    unit = selection.weighted_values(rows, np.ones((1, n), np.float32), spec, task)[0]
    kernel = metrics.KERNELS[spec.name]
    np.testing.assert_allclose(unit, [kernel(p, spec) for p in preps], rtol=1e-12, atol=1e-12)
    if text in SKLEARN and task == "multiclass":
        np.testing.assert_allclose(unit, [SKLEARN[text](y, o, k) for o in outs], rtol=1e-9, atol=1e-12)
    counts = rng.integers(0, 4, size=(3, n))
    got = selection.weighted_values(rows, counts.astype(np.float32), spec, task)
    for r in range(3):
        idx = np.repeat(np.arange(n), counts[r])
        want = [kernel(p.take(idx), spec) for p in preps]
        np.testing.assert_allclose(got[r], want, rtol=1e-9, atol=1e-12)


def test_accuracy_from_hits_is_the_per_class_counts_value():
    """Issue 21: many-class accuracy is the weighted mean of per-row hits. Under integer
    weights it is the per-class count path's value bit for bit; under fractional (Poisson
    rescaled) weights the float32 sums differ only in rounding. Predictions outside the
    run's classes are misses either way."""
    from ckptaudit.stats import weighted

    rng = np.random.default_rng(4)
    k, n = 40, 3000
    y = rng.integers(0, k, n)
    outs = [np.where(rng.random(n) < 0.3 + 0.1 * i, y, rng.integers(0, k + 3, n)) for i in range(5)]
    spec = _spec("accuracy", "multiclass")
    data = np.stack([o.astype(np.uint8) for o in outs])
    rows = selection.row_data("confusion", spec, "multiclass", y, data, k)
    integer = rng.integers(0, 4, size=(50, n)).astype(np.float32)
    fractional = (rng.poisson(1.0, size=(50, n)) * rng.uniform(0.9, 1.1, size=(50, 1))).astype(np.float32)
    hits = {name: weighted._confusion_values(rows, w, spec, "multiclass") for name, w in (("i", integer), ("f", fractional))}
    counts = {}  # the per-class sums of the path it replaces, and from_counts' accuracy
    for name, w in (("i", integer), ("f", fractional)):
        tp, predicted = weighted._sparse_counts(rows, np.ascontiguousarray(w.T), np.arange(5))
        counts[name] = tp.sum(axis=-1) / w.sum(axis=1, dtype=np.float64)[:, None]
    assert hits["i"].tobytes() == counts["i"].tobytes()
    # fractional weights: both float32 sums round (about 1e-6 here); both are as near the
    # float64 sums of the hits
    exact = (fractional.astype(np.float64) @ (data == y).T) / fractional.sum(axis=1, dtype=np.float64)[:, None]
    np.testing.assert_allclose(hits["f"], exact, rtol=1e-5, atol=0)
    np.testing.assert_allclose(counts["f"], exact, rtol=1e-5, atol=0)
    assert not np.array_equal(hits["f"], hits["i"])


SKLEARN = {
    "accuracy": lambda y, p, k: skm.accuracy_score(y, p),
    "balanced_accuracy": lambda y, p, k: skm.balanced_accuracy_score(y, p),
    "f1:average=macro": lambda y, p, k: skm.f1_score(y, p, average="macro", labels=range(k), zero_division=0),
    "f1:average=weighted": lambda y, p, k: skm.f1_score(y, p, average="weighted", labels=range(k), zero_division=0),
    "precision:average=micro": lambda y, p, k: skm.precision_score(y, p, average="micro", labels=range(k)),
    "recall:average=weighted": lambda y, p, k: skm.recall_score(y, p, average="weighted", labels=range(k), zero_division=0),
    "mcc": lambda y, p, k: skm.matthews_corrcoef(y, p),
    "cohen_kappa": lambda y, p, k: skm.cohen_kappa_score(y, p),
}


def _multiclass_eval(spec, y, preps):
    data = np.stack([selection._per_row("confusion", spec, p) for p in preps])
    rows = selection.row_data("confusion", spec, "multiclass", y, data, preps[0].n_classes)

    class _Eval:
        pass

    ev = _Eval()
    ev.rows = rows  # type: ignore[attr-defined]
    return ev


ML_SKLEARN = {
    "accuracy": lambda y, p: skm.accuracy_score(y, p),
    "f1": lambda y, p: skm.f1_score(y, p, average="macro", zero_division=0),
    "f1:average=micro": lambda y, p: skm.f1_score(y, p, average="micro", zero_division=0),
    "precision:average=weighted": lambda y, p: skm.precision_score(y, p, average="weighted", zero_division=0),
    "recall:class=2": lambda y, p: skm.recall_score(y[:, 2], p[:, 2], zero_division=0),
    "mcc": lambda y, p: np.mean([skm.matthews_corrcoef(y[:, i], p[:, i]) for i in range(y.shape[1])]),
    "balanced_accuracy": lambda y, p: np.mean([skm.balanced_accuracy_score(y[:, i], p[:, i]) for i in range(y.shape[1])]),
    "specificity": lambda y, p: np.mean([skm.recall_score(1 - y[:, i], 1 - p[:, i], zero_division=0) for i in range(y.shape[1])]),
    "npv:average=micro": lambda y, p: skm.precision_score((1 - y).ravel(), (1 - p).ravel(), zero_division=0),
}


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("text", list(ML_SKLEARN))
def test_multilabel_label_metrics_have_a_per_row_form(text):
    rng = np.random.default_rng(5)
    n, labels = 300, 11  # 11 labels: the packed bits span two bytes
    y = (rng.random((n, labels)) < 0.3).astype(np.int64)
    y[:, 4] = 0  # a label without positives
    logits = [rng.normal(size=(n, labels)) + (1.0 + 0.5 * i) * (2 * y - 1) for i in range(3)]
    spec = parse_metric(text).for_run(None, "multilabel", 1, labels)
    ev = selection.evaluate_arrays("multilabel", "logit", spec, y, logits)
    rows = ev.rows
    assert rows is not None and rows.kind == ("mean" if text == "accuracy" else "multilabel")
    unit = selection.weighted_values(rows, np.ones((1, n), np.float32), spec, "multilabel")[0]
    preds = [(z > 0).astype(np.int64) for z in logits]
    np.testing.assert_allclose(unit, [ML_SKLEARN[text](y, p) for p in preds], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(unit, ev.values, rtol=1e-6, atol=1e-7)
    counts = rng.integers(0, 4, size=(2, n))
    got = selection.weighted_values(rows, counts.astype(np.float32), spec, "multilabel")
    for r in range(2):
        idx = np.repeat(np.arange(n), counts[r])
        np.testing.assert_allclose(got[r], [ML_SKLEARN[text](y[idx], p[idx]) for p in preds], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("outputs", [1, 3])
def test_r2_has_a_per_row_form(outputs):
    rng = np.random.default_rng(6)
    n = 400
    shape = (n,) if outputs == 1 else (n, outputs)
    y = 50.0 + rng.normal(size=shape)  # an offset: the target sums must not cancel
    outs = [y + rng.normal(scale=0.3 + 0.2 * i, size=shape) for i in range(3)]
    spec = parse_metric("r2")
    assert selection.row_kind(spec, "regression") == "r2"
    ev = selection.evaluate_arrays("regression", "value", spec, y, outs)
    assert ev.rows is not None
    unit = selection.weighted_values(ev.rows, np.ones((1, n), np.float32), spec, "regression")[0]
    np.testing.assert_allclose(unit, [skm.r2_score(y, p) for p in outs], rtol=1e-5)
    counts = rng.integers(0, 4, size=(2, n))
    got = selection.weighted_values(ev.rows, counts.astype(np.float32), spec, "regression")
    for r in range(2):
        idx = np.repeat(np.arange(n), counts[r])
        np.testing.assert_allclose(got[r], [skm.r2_score(y[idx], p[idx]) for p in outs], rtol=1e-5)
    # a constant target: 1 for a perfect fit, 0 otherwise (the kernel's rule)
    flat = np.full(n, 2.0)
    ev = selection.evaluate_arrays("regression", "value", spec, flat, [flat, flat + 1])
    assert ev.rows is not None
    np.testing.assert_array_equal(
        selection.weighted_values(ev.rows, np.ones((1, n), np.float32), spec, "regression")[0], [1.0, 0.0]
    )


# --------------------------------------------------------------------------- compare / interval


def _brute(spec, preps, resamples, seed):
    """The plain row bootstrap, resample by resample, from the engine's own weights."""
    rng = np.random.default_rng(seed)
    n = preps[0].y.shape[0]
    kernel = metrics.KERNELS[spec.name]
    out = []
    for w in selection._weight_chunks(np.zeros(n, dtype=np.int64), resamples, rng):
        for counts in w.astype(np.int64):
            idx = np.repeat(np.arange(n), counts)
            out.append([kernel(p.take(idx), spec) for p in preps])
    return np.array(out)


@pytest.mark.parametrize(
    "task,output,text",
    [
        ("binary", "probability", "f1"),
        ("binary", "probability", "log_loss"),
        ("binary", "probability", "roc_auc"),
        ("binary", "probability", "average_precision:class=0"),
        ("multiclass", "probability", "ece"),
        ("multiclass", "label", "mcc"),
        ("multiclass", "label", "cohen_kappa"),
        ("multilabel", "logit", "f1:average=micro"),
        ("multilabel", "logit", "accuracy"),
        ("regression", "value", "r2"),
        ("regression", "value", "mae"),
    ],
)
def test_compare_and_interval_are_the_plain_row_bootstrap(task, output, text):
    rng = np.random.default_rng(8)
    n = 150
    if task == "binary":
        y = rng.integers(0, 2, n)
        arrays = [np.clip(y * 0.3 + rng.random(n) * 0.7, 0.01, 0.99) for _ in range(2)]
    elif task == "multiclass" and output == "probability":
        y = rng.integers(0, 3, n)
        arrays = [rng.dirichlet(np.ones(3), n) * 0.5 + np.eye(3)[y] * 0.5 for _ in range(2)]
    elif task == "multiclass":
        y = rng.integers(0, 3, n)
        arrays = [np.where(rng.random(n) < 0.6, y, rng.integers(0, 3, n)) for _ in range(2)]
    elif task == "multilabel":
        y = (rng.random((n, 4)) < 0.4).astype(np.int64)
        arrays = [rng.normal(size=(n, 4)) + (2 * y - 1) for _ in range(2)]
    else:
        y = rng.normal(size=n)
        arrays = [y + rng.normal(scale=0.5, size=n) for _ in range(2)]
    classes = 3 if task == "multiclass" else None
    spec = parse_metric(text).for_run(None, task, 1, classes)
    a, b = (metrics.prepare(task, output, y, x, 1, classes) for x in arrays)
    values = _brute(spec, (a, b), 60, seed=4)
    kernel = metrics.KERNELS[spec.name]
    diff = values[:, 0] - values[:, 1] if spec.maximize else values[:, 1] - values[:, 0]
    cmp = bootstrap.compare(spec, a, b, resamples=60, seed=4)
    assert cmp.diff == pytest.approx((1 if spec.maximize else -1) * (kernel(a, spec) - kernel(b, spec)))
    np.testing.assert_allclose([cmp.low, cmp.high], np.percentile(diff, [2.5, 97.5]), rtol=1e-5, atol=1e-6)
    low, high = bootstrap.interval(spec, a, resamples=60, seed=4)
    np.testing.assert_allclose([low, high], np.percentile(values[:, 0], [2.5, 97.5]), rtol=1e-5, atol=1e-6)


def test_compare_on_a_thousand_classes_needs_no_cubic_cells():
    """1000 classes: the old cell path asked for 1000^3 cells; the counts path is linear."""
    rng = np.random.default_rng(9)
    n, k = 3000, 1000
    y = rng.integers(0, k, n)
    a = metrics.prepare("multiclass", "label", y, np.where(rng.random(n) < 0.7, y, rng.integers(0, k, n)), 1, k)
    b = metrics.prepare("multiclass", "label", y, np.where(rng.random(n) < 0.5, y, rng.integers(0, k, n)), 1, k)
    for text in ("accuracy", "f1", "mcc", "cohen_kappa"):
        spec = parse_metric(text)
        cmp = bootstrap.compare(spec, a, b, resamples=200, seed=0)
        assert cmp.low > 0  # 70% against 50% right on 3000 rows
        low, high = bootstrap.interval(spec, a, resamples=200, seed=0)
        assert 0 < low < high < 1
        if text == "accuracy":  # (macro averages over 3 rows a class are biased by resampling)
            assert low < metrics.KERNELS[spec.name](a, spec) < high


def test_gaussian_confusion_values_match_the_exact_row_bootstrap():
    """Issue 17: the Gaussian path sums each checkpoint's per-class predicted and true-positive
    indicators with the actual-class indicators over all rows (one stratum), so it carries
    the class-mix variance the exact row bootstrap has: same centre, sd within 10%."""
    rng = np.random.default_rng(3)
    for k in (2, 3):
        n = 6000
        y = rng.integers(0, k, n)
        data = np.stack([np.where(rng.random(n) < 0.7, y, rng.integers(0, k, n)) for _ in range(3)]).astype(np.uint8)
        for text in ("accuracy", "f1:average=macro", "mcc", "cohen_kappa", "balanced_accuracy", "recall"):
            task = "binary" if k == 2 else "multiclass"
            spec = _spec(text, task)
            rows = selection.row_data("confusion", spec, task, y, data, k)
            assert not rows.strata.any()
            g_in, g_out = selection.gaussian_values(rows, spec, task, 600, np.random.default_rng(1))
            chunks = list(selection._weight_chunks(rows.strata, 600, np.random.default_rng(2), out_of_bag=True))
            e_in = np.concatenate([selection.weighted_values(rows, c[: c.shape[0] // 2], spec, task) for c in chunks])
            e_out = np.concatenate([selection.weighted_values(rows, c[c.shape[0] // 2 :], spec, task) for c in chunks])
            for g, e in ((g_in, e_in), (g_out, e_out)):
                np.testing.assert_allclose(g.mean(axis=0), e.mean(axis=0), atol=2e-3)
                assert np.all(np.abs(g.std(axis=0) / e.std(axis=0) - 1) < 0.12), (text, g.std(axis=0), e.std(axis=0))


def test_remembered_draws_give_the_same_weights_and_leave_the_generator_where_draws_would(monkeypatch):
    rng = np.random.default_rng(4)
    strata = (rng.random(3000) < 0.2).astype(np.int64)
    strata[:7] = 2  # a stratum too small to remember
    selection._DRAW_CACHE.clear()
    monkeypatch.setattr(weights, "_DRAW_CACHE_MIN_CELLS", 10**12)
    plain = np.random.default_rng(9)
    want = np.concatenate(list(selection._weight_chunks(strata, 700, plain)))
    after = plain.random()
    monkeypatch.setattr(weights, "_DRAW_CACHE_MIN_CELLS", 1000)
    for _ in range(2):  # the first fills the cache, the second reads it
        weights._WHOLE_CACHE.clear()  # (the per-stratum cache under test, not the whole matrix's)
        cached = np.random.default_rng(9)
        got = np.concatenate(list(selection._weight_chunks(strata, 700, cached)))
        np.testing.assert_array_equal(got, want)
        assert cached.random() == after
    assert selection._DRAW_CACHE
    selection._DRAW_CACHE.clear()


def test_a_remembered_whole_matrix_is_the_drawn_one_read_only_and_leaves_the_generator_where_draws_would():
    """The runs of a sweep that share validation rows and seed draw the whole weight matrix
    once: a second draw hands back the same matrix (read-only), with the generator where
    the draws would have left it; other strata, another seed or resample count draw anew."""
    rng = np.random.default_rng(5)
    strata = (rng.random(1200) < 0.1).astype(np.int64)
    weights._WHOLE_CACHE.clear()
    fresh = np.random.default_rng(3)
    (first,) = list(selection._weight_chunks(strata, 500, fresh, out_of_bag=True))
    after = fresh.random()
    weights._WHOLE_CACHE.clear()
    plain = np.random.default_rng(3)
    (want,) = list(selection._weight_chunks(strata, 500, plain, out_of_bag=True))
    np.testing.assert_array_equal(first, want)
    again = np.random.default_rng(3)
    (got,) = list(selection._weight_chunks(strata, 500, again, out_of_bag=True))
    assert got is want and not got.flags.writeable
    assert again.random() == after
    with pytest.raises(ValueError):
        got[0, 0] = 7.0
    other = strata.copy()
    other[:2] = 1 - other[:2]
    for args in ((other, 500, 3), (strata, 400, 3), (strata, 500, 4)):
        (drawn,) = list(selection._weight_chunks(args[0], args[1], np.random.default_rng(args[2]), out_of_bag=True))
        assert drawn is not want
    weights._WHOLE_CACHE.clear()


def _placed_one_by_one(strata: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """The weights as _weight_chunks wrote them before issue 21's staging: each stratum's
    draws (in the strata's order, from one generator) scattered into its rows."""
    rng = np.random.default_rng(seed)
    w = np.empty((resamples, strata.shape[0]), dtype=np.float32)
    for s in np.unique(strata):
        rows = np.flatnonzero(strata == s)
        w[:, rows] = weights._stratum_weights(rows.shape[0], resamples, rng)
    return np.concatenate([w, (w == 0).astype(np.float32)])


@pytest.mark.parametrize("exact_cells", [weights._EXACT_CELLS, 50_000])  # every stratum exact; the large one Poisson
def test_strata_held_apart_get_the_weights_each_stratum_would_scatter_into_its_rows(monkeypatch, exact_cells):
    """Strata interleaved in row order (ROC AUC's classes) are laid out side by side in
    bytes and gathered into row order at once (issue 21): the same weights and out-of-bag
    indicators as scattering each stratum into its rows, exact or Poisson, drawn or
    remembered."""
    monkeypatch.setattr(weights, "_EXACT_CELLS", exact_cells)
    rng = np.random.default_rng(6)
    strata = rng.integers(0, 3, size=900)
    strata[rng.random(900) < 0.6] = 0  # one large stratum, two small ones, interleaved
    want = _placed_one_by_one(strata, 150, 8)
    for _ in range(2):  # drawn, then remembered
        weights._WHOLE_CACHE.clear()
        (got,) = list(selection._weight_chunks(strata, 150, np.random.default_rng(8), out_of_bag=True))
        np.testing.assert_array_equal(got, want)
    weights._WHOLE_CACHE.clear()
    selection._DRAW_CACHE.clear()


def test_a_count_too_large_for_a_byte_is_written_as_it_is(monkeypatch):
    """A stratum whose drawn count exceeds 255 (possible, if vanishingly rare, above 255
    rows) is not staged in a byte: its weights and out-of-bag indicators are exact."""
    strata = np.tile(np.array([0, 1, 1]), 200)
    drawn = weights._stratum_weights

    def with_a_large_count(m: int, k: int, rng: np.random.Generator) -> np.ndarray:
        counts = drawn(m, k, rng)
        if m == 400:
            counts[0, 0] += 300.0
        return counts

    monkeypatch.setattr(weights, "_stratum_weights", with_a_large_count)
    monkeypatch.setattr(weights, "_DRAW_CACHE_MIN_CELLS", 10**12)
    want = _placed_one_by_one(strata, 50, 2)
    weights._WHOLE_CACHE.clear()
    (got,) = list(selection._weight_chunks(strata, 50, np.random.default_rng(2), out_of_bag=True))
    np.testing.assert_array_equal(got, want)
    assert got[0, 1] > 255 and got[50, 1] == 0
    weights._WHOLE_CACHE.clear()


def test_class_mix_metrics_resample_rows_and_ranking_metrics_stratify():
    """Issue 17: accuracy, F1, recall, mean losses resample rows (the class mix varies, as
    on new data); ROC AUC / average precision resample within classes."""
    rng = np.random.default_rng(12)
    y = rng.integers(0, 2, 300)
    outs = [np.clip(0.3 * y + rng.random(300) * 0.7, 0, 1) for _ in range(2)]
    for text in ("accuracy", "f1", "recall", "balanced_accuracy", "log_loss", "brier"):
        ev = selection.evaluate_arrays("binary", "probability", parse_metric(text), y, outs)
        assert ev.rows is not None and not ev.rows.strata.any(), text
    for text in ("roc_auc", "average_precision"):
        ev = selection.evaluate_arrays("binary", "probability", parse_metric(text), y, outs)
        assert ev.rows is not None and np.array_equal(ev.rows.strata, y), text


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_ece_has_a_per_row_form(task):
    rng = np.random.default_rng(14)
    n = 500
    if task == "binary":
        y = rng.integers(0, 2, n)
        outs = [np.clip(0.5 * y + rng.random(n) * 0.5 + 0.05 * i, 0, 1) for i in range(3)]
    else:
        y = rng.integers(0, 4, n)
        outs = [rng.dirichlet(np.ones(4) * (1 + i), n) for i in range(3)]
    spec = parse_metric("ece:bins=10")
    ev = selection.evaluate_arrays(task, "probability", spec, y, outs)
    assert ev.rows is not None and ev.rows.kind == "ece"
    kernel = metrics.KERNELS["ece"]
    preps = [metrics.prepare(task, "probability", y, o) for o in outs]
    unit = selection.weighted_values(ev.rows, np.ones((1, n), np.float32), spec, task)[0]
    np.testing.assert_allclose(unit, [kernel(p, spec) for p in preps], rtol=1e-12, atol=1e-14)
    counts = rng.integers(0, 4, size=(2, n))
    got = selection.weighted_values(ev.rows, counts.astype(np.float32), spec, task)
    for r in range(2):
        idx = np.repeat(np.arange(n), counts[r])
        np.testing.assert_allclose(got[r], [kernel(p.take(idx), spec) for p in preps], rtol=1e-9, atol=1e-12)
    low, high = bootstrap.interval(spec, preps[0], resamples=200, seed=1)
    assert low < kernel(preps[0], spec) < high


def test_rmse_of_several_outputs_is_the_mean_of_each_outputs_root():
    rng = np.random.default_rng(15)
    n = 300
    y = rng.normal(size=(n, 3)) * [1.0, 10.0, 0.1]
    outs = [y + rng.normal(size=(n, 3)) * [0.5, 2.0, 0.05] * (1 + i) for i in range(2)]
    spec = parse_metric("rmse")
    ev = selection.evaluate_arrays("regression", "value", spec, y, outs)
    assert ev.rows is not None
    sk = [skm.root_mean_squared_error(y, p) for p in outs]
    unit = selection.weighted_values(ev.rows, np.ones((1, n), np.float32), spec, "regression")[0]
    np.testing.assert_allclose(unit, sk, rtol=1e-5)
    np.testing.assert_allclose(ev.values, sk, rtol=1e-12)
    counts = rng.integers(0, 4, n)
    idx = np.repeat(np.arange(n), counts)
    got = selection.weighted_values(ev.rows, counts[None].astype(np.float32), spec, "regression")[0]
    np.testing.assert_allclose(got, [skm.root_mean_squared_error(y[idx], p[idx]) for p in outs], rtol=1e-5)


def test_the_selection_trend_and_regret_of_a_run_share_one_resampling():
    """``_resampled`` remembers the latest run's values: a second call with the same row
    data, metric and seed returns them (and leaves the generator where computing them
    would); other row data or another seed computes anew, with equal values where the
    inputs are equal."""
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 1500)
    data = np.stack([np.where(rng.random(1500) < 0.8, y, 1 - y) for _ in range(4)]).astype(np.uint8)
    spec = _spec("recall", "binary")
    rows = selection.row_data("confusion", spec, "binary", y, data, 2)
    selection._LAST_RESAMPLED.clear()
    fresh = np.random.default_rng(11)
    v_in, v_out = selection._resampled(rows, spec, "binary", 300, fresh, 1)
    after = fresh.random()
    again = np.random.default_rng(11)
    hit = selection._resampled(rows, spec, "binary", 300, again, 1, exact=True)
    assert hit[0] is v_in and hit[1] is v_out
    assert again.random() == after
    copy = replace(rows, data=rows.data.copy())
    other = selection._resampled(copy, spec, "binary", 300, np.random.default_rng(11), 1)
    assert other[0] is not v_in
    np.testing.assert_array_equal(other[0], v_in)
    reseeded = selection._resampled(copy, spec, "binary", 300, np.random.default_rng(12), 1)
    assert not np.array_equal(reseeded[0], v_in)
    selection._LAST_RESAMPLED.clear()


@pytest.mark.parametrize("width", [1, 2, 7, 12, 25])
def test_packed_product_of_whole_counts_is_the_plain_product(width):
    """Issue 21: under whole-count weights two 0/1 features share a float32 column; the
    sums unpacked are the plain product's, bit for bit, up to the largest row count packed."""
    from ckptaudit.stats import weighted

    rng = np.random.default_rng(width)
    for n in (5, 1000, weighted._PACK_BASE - 1):
        strata = np.zeros(n, dtype=np.int64)
        both = next(weights._weight_chunks(strata, 40, np.random.default_rng(0), out_of_bag=True))
        assert weights.whole_counts(both)
        features = (rng.random((n, width)) < 0.5).astype(np.float32)
        features[: n // 2, 0] = 1.0  # a column of all ones somewhere: the largest sums
        got = weighted._exact_product(both, features)
        want = both.astype(np.float64) @ features.astype(np.float64)
        assert got.tobytes() == want.tobytes()


def test_only_whole_counts_drawn_here_are_packed():
    rng = np.random.default_rng(1)
    exact = next(weights._weight_chunks(np.zeros(300, np.int64), 50, rng, out_of_bag=True))
    assert weights.whole_counts(exact)
    assert not weights.whole_counts(exact.copy())  # not the matrix drawn (nothing says it is whole)
    big = next(weights._weight_chunks(np.zeros(300_000, np.int64), 50, rng, out_of_bag=True))  # Poisson, rescaled
    assert not weights.whole_counts(big)
    again = next(weights._weight_chunks(np.zeros(301, np.int64), 50, rng, out_of_bag=True))
    assert weights.whole_counts(again) and not weights.whole_counts(exact)  # the latest drawn only
    with pytest.raises(ValueError):
        again[0, 0] = 5.0  # marked whole: read-only, so that it stays whole


@pytest.mark.parametrize("text", ["precision", "recall:class=0", "f1", "accuracy"])
@pytest.mark.parametrize("k", [2, 12])
def test_weight_vectors_without_the_event_class_are_undefined(text, k):
    """Issue 21: the confusion path reads "no weight on the event's rows" from its own
    actual counts; it leaves NaN exactly where a product with the event's rows is zero."""
    from ckptaudit.stats import weighted
    from ckptaudit.stats.intervals import event_class

    task = "binary" if k == 2 else "multiclass"
    rng = np.random.default_rng(k)
    n = 200
    y = rng.integers(0, k, n)
    preds = [np.where(rng.random(n) < 0.6, y, rng.integers(0, k, n)) for _ in range(3)]
    spec = _spec(text, task)
    data = np.stack([p.astype(np.uint8) for p in preds])
    rows = selection.row_data("confusion", spec, task, y, data, k)
    w = rng.integers(0, 3, size=(300, n)).astype(np.float32)
    w[:40, y == (0 if "class=0" in text else 1)] = 0.0  # the first vectors miss the event
    event = event_class(spec, task, "confusion")
    got = weighted.weighted_values(rows, w, spec, task, event)
    want = weighted.weighted_values(rows, w, spec, task)
    if event is not None:
        want[(w @ (y == event).astype(np.float32)) == 0] = np.nan
        assert np.isnan(got[:40]).all()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("k", [2, 4])
def test_gaussian_confusion_sums_do_not_depend_on_the_block_of_rows(k, monkeypatch):
    """Issue 21: 0/1 features go through the Gaussian path in small blocks of rows (memory);
    their sums are exact, so every drawn value is the one a single block gives."""
    from ckptaudit.stats import gaussian

    task = "binary" if k == 2 else "multiclass"
    rng = np.random.default_rng(k)
    n = 50_000
    y = rng.integers(0, k, n)
    data = np.stack([np.where(rng.random(n) < 0.7, y, rng.integers(0, k, n)).astype(np.uint8) for _ in range(6)])
    spec = _spec("f1" if k == 2 else "f1:average=macro", task)
    rows = selection.row_data("confusion", spec, task, y, data, k)
    assert gaussian.gaussian_ok(rows, 1000)
    small = gaussian.gaussian_values(rows, spec, task, 1000, np.random.default_rng(0))
    monkeypatch.setattr(gaussian, "_EXACT_BLOCK_ROWS", 10**9)
    whole = gaussian.gaussian_values(rows, spec, task, 1000, np.random.default_rng(0))
    for a, b in zip(small, whole, strict=True):
        assert a.tobytes() == b.tobytes()
