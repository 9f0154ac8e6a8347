"""Label metrics on logits never compute probabilities (issue 10 §2), and the quick
non-finite check counts exactly what the full one counted."""

from __future__ import annotations

import numpy as np
import pytest

from ckptaudit.metrics import kernels
from ckptaudit.metrics.evaluation import _nonfinite
from ckptaudit.metrics.spec import parse_metric


@pytest.mark.parametrize(
    ("task", "shape", "metrics"),
    [
        ("multiclass", (500, 30), ["accuracy", "balanced_accuracy", "f1", "mcc", "cohen_kappa", "recall:average=micro"]),
        ("multilabel", (500, 12), ["accuracy", "f1", "recall:average=macro", "balanced_accuracy"]),
        ("binary", (500,), ["accuracy", "recall", "f1", "mcc", "precision:threshold=0.3"]),
    ],
)
def test_label_metrics_on_logits_compute_no_probabilities(task, shape, metrics):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(shape).astype(np.float32)
    if task == "multiclass":
        target = rng.integers(0, shape[1], shape[0])
    elif task == "multilabel":
        target = (rng.random(shape) < 0.3).astype(np.int64)
    else:
        target = (rng.random(shape[0]) < 0.4).astype(np.int64)
    prep = kernels.prepare(task, "logit", target, logits)
    values = [kernels.KERNELS[parse_metric(m).name](prep, parse_metric(m)) for m in metrics]
    assert prep._proba is None  # never computed
    # the same values as from a view whose probabilities were computed first (the old way)
    eager = kernels.prepare(task, "logit", target, logits)
    assert eager.proba is not None and eager._proba is not None
    assert values == [kernels.KERNELS[parse_metric(m).name](eager, parse_metric(m)) for m in metrics]
    expected = (
        kernels._softmax(logits.astype(np.float64)) if task == "multiclass" else kernels._sigmoid(logits.astype(np.float64))
    )
    assert np.array_equal(eager.proba, expected)


def test_probabilities_of_a_resample_are_those_of_the_rows():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((200, 5)).astype(np.float32)
    prep = kernels.prepare("multiclass", "logit", rng.integers(0, 5, 200), logits)
    idx = rng.integers(0, 200, 200)
    assert np.array_equal(prep.take(idx).proba, prep.proba[idx])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("bad", [[], [np.nan], [np.inf], [-np.inf], [np.nan, -np.inf, np.inf, np.nan]])
def test_the_quick_nonfinite_count_is_the_full_count(dtype, bad):
    values = np.random.default_rng(2).standard_normal((50, 4)).astype(dtype)
    flat = values.reshape(-1)
    flat[: len(bad)] = bad
    assert _nonfinite(values) == int(np.count_nonzero(~np.isfinite(values)))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_huge_finite_values_whose_sum_overflows_are_finite(dtype):
    values = np.full(1000, np.finfo(dtype).max, dtype=dtype)
    assert _nonfinite(values) == 0
    values[3] = np.nan
    assert _nonfinite(values) == 1


def test_integer_outputs_have_no_nonfinite_values():
    assert _nonfinite(np.arange(10)) == 0 and _nonfinite(np.zeros(0)) == 0
