"""Issue 17 point 5, the principle: resampling weights all equal to one reproduce the
displayed value, for every metric, option and task with selection statistics.

The displayed value is the kernel's; the resampled data come from the same prepared values
through the same functions (:func:`ckptaudit.stats.selection._per_row`). Exact forms
(confusion counts, the exact ranking form, multilabel counts, ece's float64 terms) agree
to 1e-12; forms kept as float32 per-row values (mean losses, R2's residuals, the linearised
ranking form) to float32 precision.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ckptaudit.metrics.spec import parse_metric
from ckptaudit.stats import selection

LABEL = ["accuracy", "balanced_accuracy", "mcc", "mcc:class=1", "cohen_kappa"]
for _name in ("precision", "recall", "f1", "fbeta:beta=2", "specificity", "npv"):
    LABEL += [_name, f"{_name}:class=0", f"{_name}:class=1"] + [f"{_name}:average={a}" for a in ("macro", "micro", "weighted")]
RANKING = []
for _name in ("roc_auc", "average_precision"):
    RANKING += [_name, f"{_name}:class=0", f"{_name}:class=1"] + [f"{_name}:average={a}" for a in ("macro", "micro", "weighted")]
SPECS = {
    "binary": LABEL + RANKING + ["accuracy:threshold=0.3", "recall:threshold=0.7", "log_loss", "brier", "ece", "ece:bins=5"],
    "multiclass": LABEL + RANKING + ["log_loss", "brier", "ece", "top_k_accuracy", "top_k_accuracy:k=1", "top_k_accuracy:k=3"],
    "multilabel": [s for s in LABEL if s != "cohen_kappa"] + RANKING + ["log_loss", "brier"],
    "regression": ["mse", "rmse", "mae", "r2"],
}
EXACT = ("confusion", "ranking", "multilabel", "ece")


def _draw(data, task, output, n, width, dtype):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), "seed"))
    ties = data.draw(st.booleans(), "ties")
    if task == "regression":
        y = rng.normal(size=(n, width)) if width > 1 else rng.normal(size=n)
        return y, (y + rng.normal(size=y.shape)).astype(dtype)
    if task == "binary":
        y = rng.integers(0, 2, n)
        z = rng.normal(size=n) * data.draw(st.sampled_from([1.0, 30.0]), "scale") + y
    elif task == "multiclass":
        y = rng.integers(0, width, n)
        z = rng.normal(size=(n, width))
        z[np.arange(n), y] += 1.0
    else:
        y = rng.integers(0, 2, (n, width))
        z = rng.normal(size=(n, width)) + y
    if ties:
        z = np.round(z)
    if output == "label":
        if task == "binary":
            return y, (z > 0.5).astype(np.int64)
        if task == "multiclass":
            return y, z.argmax(axis=1)
        return y, (z > 0.5).astype(np.int64)
    if output == "logit":
        return y, z.astype(dtype)
    if task == "multiclass":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return y, (e / e.sum(axis=1, keepdims=True)).astype(dtype)
    return y, (1 / (1 + np.exp(-z))).astype(dtype)


def _check(task, output, y, out, texts, **run):
    checked = 0
    for text in texts:
        spec = parse_metric(text)
        if selection.row_kind(spec, task) is None:
            continue
        if output == "label" and spec.family != "label":
            continue
        try:
            ev = selection.evaluate_arrays(task, output, spec, y, [out], **run)
        except Exception as exc:  # a metric that does not apply to this output
            if "does not apply" in str(exc) or "not defined" in str(exc):
                continue
            raise
        if ev.rows is None or ev.values[0] is None:
            continue
        n = ev.rows.data.shape[1]
        unit = selection.weighted_values(ev.rows, np.ones((1, n), dtype=np.float32), ev.spec, task)[0, 0]
        want = ev.values[0]
        if ev.rows.kind in EXACT:
            assert unit == pytest.approx(want, abs=1e-12), (text, ev.rows.kind)
        else:
            assert unit == pytest.approx(want, rel=2e-5, abs=2e-6), (text, ev.rows.kind)
        checked += 1
    return checked


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    task=st.sampled_from(["binary", "multiclass", "multilabel", "regression"]),
    output=st.sampled_from(["probability", "logit", "label"]),
    n=st.integers(2, 40),
    width=st.integers(2, 4),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_unit_weights_reproduce_the_displayed_value(data, task, output, n, width, dtype):
    if task == "regression":
        output = "probability"
        width = data.draw(st.integers(1, 3), "outputs")
    y, out = _draw(data, task, output, n, width, dtype)
    run = {"positive_class": 1} if task == "binary" else {"n_classes": width} if task == "multiclass" else {}
    checked = _check(task, output, y, out, SPECS[task], **run)
    assert checked >= (len(LABEL) // 2 if output == "label" else 4)


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_unit_weights_reproduce_the_linearised_ranking_value(task):
    """From 1,000 rows ROC AUC / average precision use the linearised (float32) form."""
    rng = np.random.default_rng(1)
    n = 1200
    if task == "binary":
        y, out = rng.integers(0, 2, n), rng.normal(size=n)
    elif task == "multiclass":
        y, out = rng.integers(0, 3, n), rng.normal(size=(n, 3))
    else:
        y, out = rng.integers(0, 2, (n, 3)), rng.normal(size=(n, 3))
    assert _check(task, "logit", y, out, RANKING) == len(RANKING)
