"""Per-row metric values of combined predictions, for many candidates at once.

A combination search scores thousands of candidate ensembles (every greedy step tries every
checkpoint), each under many resample weights. Only metrics that are a weighted mean of
per-row values can be scored that way: ``accuracy``, ``log_loss``, ``brier`` (binary and
multiclass) and ``mse``/``mae`` (regression). The arithmetic is the kernels' (tests check
unit weights against :func:`ckptaudit.metrics.kernels.mean_rows` and scikit-learn), so the
value a candidate is chosen by is the value ``rank`` shows for it once written.
"""

from __future__ import annotations

import numpy as np

from ..errors import MetricError
from ..metrics.prepared import DEFAULT_THRESHOLD
from ..metrics.spec import MetricSpec

#: metrics a combination can be searched under, per task
SUPPORTED: dict[str, tuple[str, ...]] = {
    "binary": ("accuracy", "log_loss", "brier"),
    "multiclass": ("accuracy", "log_loss", "brier"),
    "regression": ("mse", "mae"),
}


def check_supported(spec: MetricSpec, task: str, output: str) -> None:
    """Raise :class:`MetricError` unless combinations can be searched under ``spec``."""
    if output == "label":
        raise MetricError("combine needs probabilities, logits or values: hard labels (output 'label') cannot be averaged")
    names = SUPPORTED.get(task)
    if not task:  # an imported run not yet predicted
        from ..store.runformat import NO_TASK_YET

        raise MetricError(f"combine needs predictions: {NO_TASK_YET}")
    if names is None:
        raise MetricError(f"combine does not support {task} runs (binary, multiclass and regression only)")
    if spec.source != "builtin" or spec.name not in names or spec.class_ref is not None or spec.average is not None:
        raise MetricError(
            f"combine searches under a mean over rows; for a {task} run use one of {', '.join(names)}, not {spec.text!r}"
        )


def row_values(task: str, spec: MetricSpec, y: np.ndarray, p: np.ndarray, eps: float) -> np.ndarray:
    """The per-row metric values of predictions ``p``: binary ``(..., N)`` positive-class
    probabilities, multiclass ``(..., N, C)`` probabilities, regression ``(..., N)`` or
    ``(..., N, D)`` values; returns ``(..., N)`` float64. ``eps`` clips probabilities for
    log_loss as the kernels do (the stored float type's machine epsilon)."""
    name = spec.name
    if task == "binary":
        if name == "accuracy":
            t = np.float64(DEFAULT_THRESHOLD if spec.threshold is None else spec.threshold)
            return ((p > t) == (y == 1)).astype(np.float64)
        if name == "log_loss":
            q = np.clip(p, eps, 1 - eps)
            return -(y * np.log(q) + (1 - y) * np.log(1 - q))
        return (y - p) ** 2
    if task == "multiclass":
        if name == "accuracy":
            return (p.argmax(axis=-1) == y).astype(np.float64)
        picked = np.take_along_axis(p, np.broadcast_to(y[:, None], p.shape[:-1] + (1,)), axis=-1)[..., 0]
        if name == "log_loss":
            return -np.log(np.clip(picked, eps, 1 - eps))
        # brier: sum over classes of (onehot - p)^2 = sum p^2 - 2 p_y + 1
        summed = (p * p).sum(axis=-1) - 2 * picked + 1
        return summed / 2 if p.shape[-1] < 3 else summed
    diff = p - y
    per = np.abs(diff) if name == "mae" else diff * diff
    return per.mean(axis=-1) if y.ndim == 2 else per


def weighted_means(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``rows`` (..., N) averaged over rows under ``weights`` (N,) or (B, N): (...,) or
    (..., B). Rows of weight zero do not count."""
    if weights.ndim == 1:
        return rows @ weights / weights.sum()
    return rows @ weights.T / weights.sum(axis=1)


def search_space(task: str, spec: MetricSpec, probs: np.ndarray, y: np.ndarray, eps: float):  # type: ignore[no-untyped-def]
    """The arrays the search averages, and the per-row metric on their mean.

    log_loss (and binary brier) depend only on each row's probability of its true class,
    which is affine in the probabilities, so the mean of the members' true-class
    probabilities is the ensemble's: the search then works on ``(K, N)`` arrays whatever
    the number of classes (a 100-class run costs what a binary one does). Other metrics work
    on the probabilities themselves. The returned function may overwrite its argument (the
    search passes it temporaries only)."""
    if spec.name == "log_loss" or (task == "binary" and spec.name == "brier"):
        if task == "binary":
            t = np.where(y == 1, probs, 1 - probs).astype(probs.dtype, copy=False)
        else:
            t = np.take_along_axis(probs, np.broadcast_to(y[None, :, None], (probs.shape[0], y.shape[0], 1)), axis=2)[..., 0]
        if spec.name == "log_loss":

            def rows(a: np.ndarray) -> np.ndarray:
                np.clip(a, eps, 1 - eps, out=a)
                np.log(a, out=a)
                return np.negative(a, out=a)

            # NOTE: lets the greedy search score sums of c members without dividing by c:
            # -log(clip(s / c)) = -log(clip(s, eps c, (1 - eps) c)) + log(c)
            rows.log_loss_eps = eps  # type: ignore[attr-defined]

        else:

            def rows(a: np.ndarray) -> np.ndarray:
                np.subtract(1, a, out=a)
                return np.square(a, out=a)

        return np.ascontiguousarray(t), rows
    return probs, lambda p: row_values(task, spec, y, p, eps)
