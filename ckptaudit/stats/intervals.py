"""Per-checkpoint 95% intervals, and what a metric needs of its rows' classes.

Percentile intervals of the bootstrap draws; ROC AUC the Hanley-McNeil interval (logit
scale) when a class has few rows; one-proportion metrics (accuracy; recall, precision,
specificity, npv of one class) the Wilson interval of their own counts, which covers with
few events where the percentile bootstrap does not (2 of 2 gives [0.34, 1], not [1, 1]).
"""

from __future__ import annotations

import math
import statistics

import numpy as np

from ..metrics.spec import MetricSpec
from .quantiles import percentiles
from .results import LEVEL
from .rows import _RANKING, RowData


def _percentiles(values: np.ndarray) -> tuple[float, float] | None:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    low, high = percentiles(finite, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return float(low), float(high)


#: below this many rows in the smaller class, ROC AUC intervals are the Hanley-McNeil
#: interval (the percentile bootstrap is too narrow with a handful of positives)
SMALL_CLASS_ROWS = 30


def hanley_mcneil_interval(auc: float, n_pos: int, n_neg: int) -> tuple[float, float]:
    """95% interval of a ROC AUC from the Hanley & McNeil (1982) variance, on the logit
    scale (so it stays inside (0, 1) and is not degenerate at one positive)."""
    half = 0.5 / max(n_pos * n_neg, 1)
    a = min(max(auc, half), 1 - half)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / max(n_pos * n_neg, 1)
    centre = math.log(a / (1 - a))
    se = math.sqrt(max(var, 0.0)) / (a * (1 - a))
    z = 1.959963984540054
    return 1 / (1 + math.exp(-(centre - z * se))), 1 / (1 + math.exp(-(centre + z * se)))


def _all_percentiles(values: np.ndarray) -> list[tuple[float, float] | None]:
    """:func:`_percentiles` of every column of ``values`` (resamples, C), in one call
    where every value is finite."""
    # NOTE: in blocks of columns (each column's percentiles are computed alone either way):
    # the percentiles copy what they partition, a (resamples, C) float64 copy at once
    # otherwise (issue 21: memory flat in checkpoints)
    out: list[tuple[float, float] | None] = []
    for start in range(0, values.shape[1], _COLUMN_BLOCK):
        part = values[:, start : start + _COLUMN_BLOCK]
        if part.size and np.isfinite(part).all():
            low, high = percentiles(part, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
            out += [(float(a), float(b)) for a, b in zip(low, high, strict=True)]
        else:
            out += [_percentiles(part[:, j]) for j in range(part.shape[1])]
    return out


#: checkpoints per block of :func:`_all_percentiles`
_COLUMN_BLOCK = 256


def _checkpoint_interval(
    rows: RowData, spec: MetricSpec, interval: tuple[float, float] | None, value: float | None
) -> tuple[float, float] | None:
    """A checkpoint's 95% interval: its percentile ``interval`` (:func:`_all_percentiles`),
    replaced by the Hanley-McNeil interval for ROC AUC with a small class."""
    if interval is None or value is None or spec.name != "roc_auc" or rows.kind not in ("ranking", "mean"):
        return interval
    if rows.kind == "ranking" and rows.mode == "single":  # one column: its positives
        n_pos = int(np.count_nonzero(rows.y[:, 0]))
    elif rows.kind == "mean" and rows.n_classes == 2 and rows.classes is not None:  # linearised binary
        n_pos = int(np.count_nonzero(rows.classes == (0 if spec.class_index == 0 else 1)))
    else:
        return interval
    n_neg = int(rows.strata.shape[0] - n_pos)
    if min(n_pos, n_neg) >= SMALL_CLASS_ROWS:
        return interval
    # NOTE: the Hanley-McNeil interval alone, not its union with the percentile one: a
    # union of two 95% intervals is conservative by construction. Binormal scores, 5%
    # positives, 16,000 trials (issue 17): n = 100 percentile 78.3%, union 97.5%,
    # Hanley-McNeil (logit) 96.8% (Wald 92.3%); n = 1,000 (50 positives, percentile) 94.0%.
    # (an AUC of exactly 0 or 1 is clamped inside (0, 1) on the logit scale: the interval
    # still holds the displayed value)
    low, high = hanley_mcneil_interval(value, n_pos, n_neg)
    return min(low, value), max(high, value)


#: below this many rows of the metric's class the winner estimate is marked "too few
#: positives" (the percentile bootstrap and the out-of-bag scores are not calibrated)
MIN_POSITIVES = SMALL_CLASS_ROWS
_PROPORTIONS = ("recall", "precision", "specificity", "npv")


def event_class(spec: MetricSpec, task: str, kind: str) -> int | None:
    """The class whose rows a metric cannot do without (binary: the positive class; a
    ``class=`` metric: that class), or None (accuracy, mean losses, averages over classes)."""
    if kind != "confusion" and spec.name not in _RANKING:
        return None
    if spec.class_index is not None and task in ("binary", "multiclass"):
        return spec.class_index
    if task == "binary" and spec.name != "accuracy":
        return 1
    return None


def wilson_interval(successes: float, trials: float, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion: covers near ``level`` with few events, where
    the percentile bootstrap of a proportion gives [1, 1] for 2 of 2."""
    z = 1.959963984540054 if level == 0.95 else statistics.NormalDist().inv_cdf((1 + level) / 2)
    p = successes / trials
    centre = (successes + z * z / 2) / (trials + z * z)
    half = z * math.sqrt(max(p * (1 - p) / trials + z * z / (4 * trials * trials), 0.0)) * trials / (trials + z * z)
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion_counts(rows: RowData, spec: MetricSpec, task: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(successes, trials) of every checkpoint when its metric is one proportion (accuracy;
    recall, precision, specificity or npv of one class), from the same predicted labels
    the value comes from; None otherwise."""
    if rows.group_div:  # slices: group=NAME is a proportion of its own rows; worst_group is none
        from .groupstats import picked_rows

        rows = picked_rows(rows)
        if rows is None:
            return None
    if rows.kind != "confusion" or rows.classes is None:
        return None
    y = rows.classes
    n = y.shape[0]
    if spec.name == "accuracy":
        return (rows.data == y[None, :]).sum(axis=1).astype(np.float64), np.full(rows.data.shape[0], float(n))
    if spec.name not in _PROPORTIONS:
        return None
    e = spec.class_index
    if e is None and task == "binary" and spec.average in (None, "binary"):
        e = 1
    if e is None:
        return None
    hit = rows.data == e
    ye = (y == e)[None, :]
    tp = (hit & ye).sum(axis=1).astype(np.float64)
    predicted = hit.sum(axis=1).astype(np.float64)
    actual = float(ye.sum())
    tn = n - predicted - actual + tp
    num, den = {
        "recall": (tp, np.full_like(tp, actual)),
        "precision": (tp, predicted),
        "specificity": (tn, np.full_like(tp, n - actual)),
        "npv": (tn, n - predicted),
    }[spec.name]
    return num, den
