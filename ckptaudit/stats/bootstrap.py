"""Paired bootstrap over validation rows: is one checkpoint really better than another?

Both checkpoints were scored on the same rows, so the honest comparison resamples rows
(with replacement) and recomputes *both* metrics on each resample; the 95% interval of the
difference says whether the validation set can tell them apart.

For confusion-matrix metrics (accuracy, recall, f1, mcc, ...) of binary and multiclass runs
every row falls into one cell of (target, prediction of A, prediction of B), so a
resample of rows is exactly a multinomial draw over those cells: the bootstrap costs
O(resamples x cells) instead of O(resamples x rows). Other metrics resample row indices.
Every draw comes from a generator seeded with ``seed``: results are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..metrics import kernels as metrics
from ..metrics.spec import MetricSpec

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
_CHUNK_CELLS = 4_000_000  # rows x resamples per chunk in the row-resampling path


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


def _take(prep: metrics.Prepared, idx: np.ndarray) -> metrics.Prepared:
    return prep.take(idx)


def _cell_path(spec: MetricSpec, prep: metrics.Prepared) -> bool:
    return spec.family == "label" and prep.task in ("binary", "multiclass")


def _pred_codes(prep: metrics.Prepared, spec: MetricSpec) -> np.ndarray:
    return prep.labels(spec.threshold).astype(np.int64)


def _oriented(spec: MetricSpec, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a - b if spec.maximize else b - a


def _interval(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def _row_resamples(n: int, resamples: int, rng: np.random.Generator):
    per_chunk = max(1, _CHUNK_CELLS // max(n, 1))
    done = 0
    while done < resamples:
        k = min(per_chunk, resamples - done)
        yield rng.integers(0, n, size=(k, n))
        done += k


def compare(
    spec: MetricSpec,
    a: metrics.Prepared,
    b: metrics.Prepared,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Comparison:
    """Paired bootstrap of ``metric(A) - metric(B)`` (oriented: positive = A better)."""
    rng = np.random.default_rng(seed)
    point = _oriented(spec, np.array([metrics.KERNELS[spec.name](a, spec)]), np.array([metrics.KERNELS[spec.name](b, spec)]))[0]
    if _cell_path(spec, a):
        k = max(a.n_classes, 2)
        y = a.y.astype(np.int64)
        codes = (y * k + _pred_codes(a, spec)) * k + _pred_codes(b, spec)
        cells = np.bincount(codes, minlength=k**3)
        draws = rng.multinomial(int(cells.sum()), cells / cells.sum(), size=resamples).reshape(resamples, k, k, k)
        cm_a = draws.sum(axis=3)
        cm_b = draws.sum(axis=2)
        va = metrics.from_confusions(cm_a, spec, a.task, a.n_classes)
        vb = metrics.from_confusions(cm_b, spec, a.task, a.n_classes)
    else:
        kernel = metrics.KERNELS[spec.name]
        va_list: list[float] = []
        vb_list: list[float] = []
        for chunk in _row_resamples(a.y.shape[0], resamples, rng):
            for idx in chunk:
                va_list.append(kernel(_take(a, idx), spec))
                vb_list.append(kernel(_take(b, idx), spec))
        va, vb = np.array(va_list), np.array(vb_list)
    low, high = _interval(_oriented(spec, va, vb))
    return Comparison(diff=float(point), low=low, high=high, resamples=resamples)


def interval(
    spec: MetricSpec,
    prep: metrics.Prepared,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float]:
    """95% percentile bootstrap interval of one checkpoint's metric value."""
    rng = np.random.default_rng(seed)
    if _cell_path(spec, prep):
        k = max(prep.n_classes, 2)
        codes = prep.y.astype(np.int64) * k + _pred_codes(prep, spec)
        cells = np.bincount(codes, minlength=k * k)
        draws = rng.multinomial(int(cells.sum()), cells / cells.sum(), size=resamples).reshape(resamples, k, k)
        values = metrics.from_confusions(draws, spec, prep.task, prep.n_classes)
    else:
        kernel = metrics.KERNELS[spec.name]
        values = np.array(
            [kernel(_take(prep, idx), spec) for chunk in _row_resamples(prep.y.shape[0], resamples, rng) for idx in chunk]
        )
    return _interval(values)
