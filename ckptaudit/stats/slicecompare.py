"""Slice comparisons: is one checkpoint worse than another on some slice, beyond noise?

For a focus checkpoint F (the one shipped, or the best overall) and other checkpoints T,
:func:`slice_losses` gives, on every slice g, the loss ``M_g(T) - M_g(F)`` (oriented:
positive when F is worse) from the run's compact per-row data (:mod:`ckptaudit.stats.rows`,
confusion counts or per-row means, so ``M_g`` is exactly the metric on the slice's rows),
its paired bootstrap standard error (rows resampled within each slice, the same draws for
both checkpoints), and a one-sided p-value adjusted for every comparison made (Bonferroni
over slices x compared checkpoints: family-wise error <= ``alpha`` however many slices).
:func:`rows_needed` says how many rows a slice needs for a claim at a given precision.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..metrics.spec import MetricSpec

#: the half-width (in the metric's units) of a 95% interval below which a slice supports a claim
CLAIM_HALF_WIDTH = 0.05
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class SliceLoss:
    """The focus checkpoint against one other checkpoint on one slice."""

    group: str
    rows: int
    focus: str
    other: str
    focus_value: float
    other_value: float
    loss: float  #: oriented: positive when the focus is worse
    se: float
    p_adjusted: float  #: one-sided, Bonferroni over ``comparisons``
    comparisons: int


def slice_losses(
    rows: Any,
    spec: MetricSpec,
    task: str,
    codes: np.ndarray,
    names: tuple[str, ...],
    focus: int,
    others: list[int],
    labels: list[str],
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> list[SliceLoss]:
    """Every (slice, other) comparison of the checkpoint at row ``focus`` of ``rows.data``
    with those at ``others`` (``labels``: names of ``[focus, *others]``), most significant
    first. ``rows`` must be a sum-type form (``confusion`` or ``mean``) without groups."""
    from .weighted import weighted_values
    from .weights import _weight_chunks

    picked = [focus, *others]
    inner = replace(rows, data=rows.data[picked], group_div=0, group_pick=-1)
    sign = 1.0 if spec.maximize else -1.0
    masks = [(codes == g).astype(np.float32) for g in range(len(names))]
    point = np.stack([weighted_values(inner, m[None, :], spec, task)[0] for m in masks])  # (G, 1 + T)
    draws: list[np.ndarray] = []
    rng = np.random.default_rng(seed)
    for w in _weight_chunks(codes, resamples, rng):
        per = np.stack([weighted_values(inner, w * m[None, :], spec, task) for m in masks])  # (G, k, 1 + T)
        draws.append(sign * (per[:, :, 1:] - per[:, :, :1]))
    diffs = np.concatenate(draws, axis=1)  # (G, B, T)
    with np.errstate(invalid="ignore"):
        se = np.nanstd(diffs, axis=1, ddof=1)
    comparisons = len(names) * len(others)
    normal = statistics.NormalDist()
    out = []
    for g, name in enumerate(names):
        n_g = int(masks[g].sum())
        for t in range(len(others)):
            loss = float(sign * (point[g, 1 + t] - point[g, 0]))
            s = float(se[g, t])
            if not math.isfinite(loss) or not math.isfinite(s):
                continue
            if s == 0:
                p = 0.0 if loss > 0 else 1.0
            else:
                p = 1.0 - normal.cdf(loss / s)
            out.append(
                SliceLoss(
                    name,
                    n_g,
                    labels[0],
                    labels[1 + t],
                    float(point[g, 0]),
                    float(point[g, 1 + t]),
                    loss,
                    s,
                    min(1.0, p * comparisons),
                    comparisons,
                )
            )
    return sorted(out, key=lambda s: (s.p_adjusted, -s.loss))


def rows_needed(value: float, half_width: float = CLAIM_HALF_WIDTH) -> int:
    """Rows a proportion near ``value`` needs for a 95% interval of +-``half_width``
    (the normal approximation; ``value`` held within [0.05, 0.95] so that a slice scored
    perfectly still needs rows)."""
    p = min(max(value, 0.05), 0.95)
    return math.ceil(_Z95**2 * p * (1 - p) / half_width**2)


def half_width(value: float, rows: int) -> float:
    """The 95% half-width of a proportion near ``value`` on ``rows`` rows (as :func:`rows_needed`)."""
    p = min(max(value, 0.05), 0.95)
    return _Z95 * math.sqrt(p * (1 - p) / max(rows, 1))
