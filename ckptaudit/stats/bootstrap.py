"""Paired bootstrap over validation rows: is one checkpoint really better than another?

Both checkpoints were scored on the same rows, so the honest comparison resamples rows
(with replacement) and recomputes *both* metrics on each resample; the 95% interval of the
difference says whether the validation set can tell them apart.

Resampling is the plain (unstratified) row bootstrap. It runs on the selection
statistics' engine (:mod:`ckptaudit.stats.selection`): every metric with a compact
per-row form (:func:`~ckptaudit.stats.selection.row_kind`: confusion metrics from weighted
per-class counts, mean losses, multilabel per-label counts, R2, ROC AUC / average
precision) is recomputed for a whole chunk of resamples at once from row-weight matrices
(exact multinomial counts while rows x chunk resamples is small, Poisson(1) weights
rescaled to the row count beyond that; see the selection module). Metrics without one
(ece, multi-class ranking metrics) resample row indices and call the kernel per resample.
Every draw comes from a generator seeded with ``seed``: results are reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..metrics import kernels as metrics
from ..metrics.spec import MetricSpec
from .quantiles import percentiles

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
_CHUNK_CELLS = 4_000_000  # rows x resamples per chunk in the row-index path


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of checkpoint A against B under one metric.

    ``diff`` is oriented so that positive means A is better; ``low``/``high`` bound its
    95% percentile interval. ``tied`` is true when the interval reaches zero.
    """

    diff: float
    low: float
    high: float
    resamples: int

    @property
    def tied(self) -> bool:
        """A is not significantly better than B."""
        return self.low <= 0.0


def supports(spec: MetricSpec) -> bool:
    """Whether the bootstrap can recompute ``spec`` (built-ins only: logged values and
    user functions have no per-row form)."""
    return spec.source == "builtin"


def _oriented(spec: MetricSpec, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a - b if spec.maximize else b - a


def _interval(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = percentiles(finite, [2.5, 97.5])
    return float(low), float(high)


def _resampled(spec: MetricSpec, preps: Sequence[metrics.Prepared], resamples: int, seed: int) -> np.ndarray:
    """(resamples, len(preps)) metric values of the checkpoints ``preps`` (same rows) on
    the same plain row resamples."""
    from . import ranking_rows, selection

    rng = np.random.default_rng(seed)
    first = preps[0]
    kind = selection.row_kind(spec, first.task)
    if kind is not None:
        data = np.stack([selection._per_row(kind, spec, p) for p in preps])
        pos, mode = (None, "") if kind != "ranking" else ranking_rows.targets(spec, first)[::-1]
        rows = selection.row_data(kind, spec, first.task, np.asarray(first.y), data, first.n_classes, pos, mode)
        rows = replace(rows, strata=np.zeros(first.y.shape[0], dtype=np.int64))
        chunks = [
            selection.weighted_values(rows, w, spec, first.task) for w in selection._weight_chunks(rows.strata, resamples, rng)
        ]
        return np.concatenate(chunks)
    # no per-row form: resample row indices and call the kernel (a Python loop)
    kernel = metrics.KERNELS[spec.name]
    n = first.y.shape[0]
    per_chunk = max(1, _CHUNK_CELLS // max(n, 1))
    out: list[list[float]] = []
    done = 0
    while done < resamples:
        k = min(per_chunk, resamples - done)
        for idx in rng.integers(0, n, size=(k, n)):
            out.append([kernel(p.take(idx), spec) for p in preps])
        done += k
    return np.array(out, dtype=np.float64).reshape(resamples, len(preps))


def compare(
    spec: MetricSpec,
    a: metrics.Prepared,
    b: metrics.Prepared,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Comparison:
    """Paired bootstrap of ``metric(A) - metric(B)`` (oriented: positive = A better)."""
    kernel = metrics.KERNELS[spec.name]
    point = _oriented(spec, np.array([kernel(a, spec)]), np.array([kernel(b, spec)]))[0]
    values = _resampled(spec, (a, b), resamples, seed)
    low, high = _interval(_oriented(spec, values[:, 0], values[:, 1]))
    return Comparison(diff=float(point), low=low, high=high, resamples=resamples)


def interval(
    spec: MetricSpec,
    prep: metrics.Prepared,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float]:
    """95% percentile bootstrap interval of one checkpoint's metric value."""
    return _interval(_resampled(spec, (prep,), resamples, seed)[:, 0])
