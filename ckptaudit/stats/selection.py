"""Statistics that know the winner was selected.

A run's winner is the best of many checkpoints scored on the same validation rows, so
its validation value flatters it (the maximum of noisy estimates is biased upward) and
comparing it pairwise with every other checkpoint multiplies false alarms. This module
answers both questions over one run's per-row predictions of *all* checkpoints at once:

* **Expected on new data** (selection-corrected estimate of the winner): bootstrap the
  whole selection (Tsamardinos et al. 2018, "BBC-CV"): resample rows, select the best
  checkpoint on the in-bag rows, score that checkpoint on the out-of-bag rows. The mean
  of those scores estimates what the selected checkpoint scores on new data; their 2.5th
  and 97.5th percentiles are its 95% interval; ``optimism`` is how far the raw validation
  value flatters it (positive: the raw value is better than the expectation).
* **The checkpoints that cannot be told apart from the best**: a model confidence set
  (Hansen, Lunde & Nason 2011) with the range statistic: a checkpoint leaves the set when
  the best one in the set beats it by more than the 95% quantile of the bootstrap maximum
  of all centred pairwise differences in the set, step by step until none leaves. The set contains the truly best checkpoints
  with probability >= 95%, so a run of equal checkpoints reports one of them as worse at
  most about 5% of the time, however many there are.
* A 95% percentile interval of every checkpoint's value from the same resamples.

Resampling is stratified by the target class (each class resampled within itself, so
every resample keeps the validation set's class counts; needed for ranking metrics at
low prevalence). A stratum of ``n`` rows is resampled exactly (n draws with replacement)
while ``n x resamples-per-chunk`` is small, and otherwise with Poisson(1) row weights
rescaled to the stratum's size, which is indistinguishable at that size and ~8x cheaper.
For sum-type metrics (confusion counts, mean losses) on large validation sets (rows x
resamples >= 2e7, every class >= 1000 rows, <= 256 summed features) the resampled sums
are drawn from their exact Gaussian limit instead (:func:`gaussian_ok`): the mean and
covariance of the in-bag and out-of-bag sums come from one rows x features^2 product, so
the cost no longer grows with rows x resamples x checkpoints.

One pass reads each prediction file once and keeps compact per-row data
(:class:`RowData`): predicted labels as uint8 for confusion metrics, float32 scores for
ROC AUC / average precision, float32 per-row losses for mean metrics (log_loss, brier,
mse, mae, rmse, top_k_accuracy, multilabel subset accuracy), predicted labels packed 8 to
a byte for multilabel per-label metrics, float32 squared residuals for R2, and (bin,
hit - confidence) float64 pairs for ece. Every value is a function of weighted sums
(:func:`weighted_values`, the one bootstrap engine; :mod:`ckptaudit.stats.bootstrap` runs
on it too): a confusion metric needs only each class's weighted true-positive, predicted
and actual counts and n (:func:`~ckptaudit.metrics.kernels.from_counts`), computed by
matrix products with 0/1 indicators (up to 8 classes) or sparse ones (more), never
classes x classes cells per resample; a multilabel metric the same per label; R2 the sums
of the squared residuals and of the centred targets. Exact stratum draws are remembered
by (size, resamples, generator state) in a cache of at most 64 MiB, so runs seeded alike
(an HPO sweep) draw each stratum size once, with bit-identical results. Memory:
``rows x checkpoints x (1 or 4)`` bytes, e.g.
5 MB (labels) or 20 MB (scores) for 50 checkpoints x 100,000 rows; above
:data:`MAX_ROW_BYTES` (512 MiB) no per-row data is kept and the statistics are reported
as unavailable, with the reason (`rank --ci` and `pick` then bootstrap each checkpoint they
show on its own, which reads its val.npz a second time: the one exception to "each
prediction file is read once per command"). The bootstrap works on chunks of resamples whose weight
matrices stay under ~64 MB (with the out-of-bag indicators), groups checkpoints so that each
count array stays under 4 MB, and never allocates resamples x checkpoints x checkpoints
nor resamples x classes x classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import RunFormatError
from ..metrics import kernels as metrics
from ..metrics.spec import MetricSpec
from ..store.reader import Checkpoint, Run, ValSetGuard, read_predictions
from . import ranking_rows

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
LEVEL = 0.95
#: the most bytes of compact per-row data one run's evaluation keeps
MAX_ROW_BYTES = 512 * 2**20
#: float32 cells of one chunk's weight matrices (in-bag and out-of-bag together)
_CHUNK_CELLS = 8_000_000
#: a stratum is resampled exactly while rows x chunk resamples stays below this
_EXACT_CELLS = 2_000_000
METHOD = "model confidence set (Hansen, Lunde & Nason 2011, range statistic, step-down), 95%"
CORRECTION = "bootstrap bias-corrected selection (Tsamardinos et al. 2018): best on in-bag rows, scored out-of-bag"

_RANKING = ("roc_auc", "average_precision")
_MEAN = ("log_loss", "brier", "mse", "mae", "rmse", "top_k_accuracy")


# --------------------------------------------------------------------------- per-row data


@dataclass(frozen=True)
class RowData:
    """Compact per-row predictions of every scorable checkpoint of a run, for one metric.

    ``kind`` is ``"confusion"`` (``data``: predicted class per row, uint8 or int16),
    ``"ranking"`` (``data``: float32 scores, higher means positive; ``y`` 1 = positive)
    or ``"mean"`` (``data``: float32 per-row losses or hits whose mean is the metric;
    ``sqrt`` for rmse). ``data`` has shape (checkpoints, rows); ``strata`` gives each
    row's resampling stratum (the target class, or all zeros).
    """

    kind: str
    y: np.ndarray
    data: np.ndarray
    strata: np.ndarray
    n_classes: int
    sqrt: bool = False
    #: how the exact ranking form's score columns combine (``single``, ``macro``,
    #: ``weighted``, ``micro``); ``y`` is then the (rows, columns) positives
    mode: str = ""
    #: each row's target class (binary: 1 = positive) where the run has classes, else None
    classes: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        """Bytes held (the memory bound is on this)."""
        return int(self.y.nbytes + self.data.nbytes + self.strata.nbytes)


def row_kind(spec: MetricSpec, task: str) -> str | None:
    """Which compact per-row form serves ``spec`` on a run of ``task``, or None when the
    selection statistics do not support it (logged and custom metrics, multilabel label
    metrics, ece, r2). ROC AUC / average precision get ``"ranking"`` here, which the
    builder turns into ``"mean"`` (linearised) on large validation sets
    (:func:`ckptaudit.stats.ranking_rows.form`)."""
    if spec.source != "builtin":
        return None
    if spec.family == "label":
        if task == "multilabel":
            # NOTE: subset accuracy is the mean of a per-row hit; the per-label metrics
            # come from weighted per-label counts
            return "mean" if spec.name == "accuracy" else "multilabel"
        return "confusion" if task in ("binary", "multiclass") else None
    if spec.name in _RANKING:
        return "ranking" if task in ("binary", "multiclass", "multilabel") else None
    if spec.name in _MEAN:
        if spec.name == "top_k_accuracy" and task != "multiclass":
            return None
        return "mean"
    if spec.name == "r2":
        return "r2"
    if spec.name == "ece" and task in ("binary", "multiclass"):
        return "ece"
    return None


def _per_row(kind: str, spec: MetricSpec, prep: metrics.Prepared) -> np.ndarray:
    """One checkpoint's compact per-row values (see :class:`RowData`), derived from the same
    prepared values and by the same functions as the displayed metric (the kernels'
    labels, :func:`~ckptaudit.metrics.kernels.mean_rows`, ``ece_terms``, the rank
    columns), so unit weights reproduce the displayed value."""
    if spec.name in _RANKING:
        return ranking_rows.per_row(kind, spec, prep)
    if kind == "confusion":
        labels = np.asarray(prep.labels(spec.threshold))
        return labels.astype(np.uint8 if prep.n_classes <= 255 else np.int32, copy=False)
    if kind == "multilabel":  # predicted labels, 8 to a byte
        return np.packbits(np.asarray(prep.labels(spec.threshold)).astype(bool), axis=1)
    if kind == "r2":  # squared residuals, per output
        assert prep.proba is not None
        return ((prep.y - prep.proba) ** 2).astype(np.float32)
    if kind == "ece":  # (confidence bin, hit - confidence) per row, as the kernel bins them
        return np.stack(metrics.ece_terms(prep, spec), axis=1)
    return metrics.mean_rows(prep, spec).astype(np.float32)


# --------------------------------------------------------------------------- one pass


@dataclass(frozen=True)
class RunEvaluation:
    """One run evaluated under one metric in one pass over its validation files.

    ``values`` follows ``checkpoints`` (epoch order; None where not scorable);
    ``scored`` lists the indices of the checkpoints whose rows are in ``rows.data`` (in the
    same order). ``rows`` is None when the selection statistics are unavailable, and
    ``rows_note`` says why.
    """

    run: Run
    spec: MetricSpec
    checkpoints: tuple[Checkpoint, ...]
    values: tuple[float | None, ...]
    rows: RowData | None
    scored: tuple[int, ...]
    rows_note: str | None = None
    reads: int = 0


class EvaluationBuilder:
    """Collects a run's evaluation one checkpoint at a time from a verb's own pass (the
    scoring pass of rank and pick through :meth:`observe`, the audit's pass through
    :meth:`add`), so no file is read again; :meth:`finish` returns a :class:`RunEvaluation`."""

    def __init__(self, run: Run, spec: MetricSpec, max_bytes: int = MAX_ROW_BYTES) -> None:
        self.run = run
        self.spec = spec
        self.kind = row_kind(spec, run.task)
        self.max_bytes = max_bytes
        self._ckpts: list[Checkpoint] = []
        self._values: list[float | None] = []
        self._rows: list[np.ndarray] = []
        self._scored: list[int] = []
        self._y: np.ndarray | None = None
        self._pos: np.ndarray | None = None
        self._mode = ""
        self._n_classes = 0
        self._bytes = 0
        self.note: str | None = None if self.kind else f"{spec.text}: no per-row form for selection statistics"
        self.reads = 0

    def add(self, ckpt: Checkpoint, prep: metrics.Prepared | None, value: float | None) -> None:
        """Record one checkpoint: its metric value and (when scorable) its per-row data."""
        index = len(self._ckpts)
        self._ckpts.append(ckpt)
        self._values.append(value if value is not None and math.isfinite(value) else None)
        if self.kind is None or self.note is not None or prep is None or self._values[-1] is None:
            return
        if self._y is None:
            self._y = np.asarray(prep.y)
            self._n_classes = prep.n_classes
            if self.kind == "ranking":  # exact or linearised, by the validation set's size
                self.kind = ranking_rows.form(prep)
            if self.kind == "ranking":
                self._mode, self._pos = ranking_rows.targets(self.spec, prep)
        elif prep.y.shape != self._y.shape or not np.array_equal(prep.y, self._y):
            self.drop("the validation targets differ between checkpoints")
            return
        per = _per_row(self.kind, self.spec, prep)
        if not per.flags.owndata:
            # NOTE: a view may lie in the pass's reused output buffer (PassReader), which the
            # next checkpoint's read overwrites: keep a copy
            per = per.copy()
        self._bytes += per.nbytes
        if self._bytes > self.max_bytes:
            self.drop(
                f"per-row data of this run would exceed {self.max_bytes / 2**20:.0f} MiB "
                f"({len(self._ckpts)} checkpoints x {per.shape[0]} rows so far)"
            )
            return
        self._rows.append(per)
        self._scored.append(index)

    def observe(self, ckpt: Checkpoint, preds: Any, prep: metrics.Prepared | None, values: tuple, error: str | None) -> None:
        """An :data:`~ckptaudit.metrics.evaluation.Observer` of a scoring pass whose first
        spec is this builder's spec (``values[0]`` is its value)."""
        self.reads += preds is not None
        self.add(ckpt, prep, values[0])

    def drop(self, note: str) -> None:
        """Give up the per-row data (the values are still kept), saying why."""
        self.note = note
        self._rows.clear()
        self._scored.clear()

    def finish(self) -> RunEvaluation:
        """The evaluation collected so far."""
        rows = None
        if self.note is None and self._rows and self._y is not None and self.kind is not None:
            rows = row_data(
                self.kind, self.spec, self.run.task, self._y, np.stack(self._rows), self._n_classes, self._pos, self._mode
            )
        note = self.note
        if rows is None and note is None:
            note = "no checkpoint could be scored"
        return RunEvaluation(
            run=self.run,
            spec=self.spec,
            checkpoints=tuple(self._ckpts),
            values=tuple(self._values),
            rows=rows,
            scored=tuple(self._scored) if rows is not None else (),
            rows_note=note,
            reads=self.reads,
        )


def row_data(
    kind: str,
    spec: MetricSpec,
    task: str,
    y: np.ndarray,
    data: np.ndarray,
    n_classes: int,
    pos: np.ndarray | None = None,
    mode: str = "",
) -> RowData:
    """The :class:`RowData` of stacked per-row values ``data`` (checkpoints first, each
    from :func:`_per_row`) on targets ``y``; the exact ranking form also takes its
    positives ``pos`` and column ``mode`` (:func:`ckptaudit.stats.ranking_rows.targets`).

    Resampling is by rows (one stratum) wherever the metric depends on the class mix
    (accuracy, precision, F1, balanced rates, mean losses): stratifying by class would drop
    the variance of the mix, under-covering accuracy and raising the confidence set's false
    alarms between checkpoints of equal accuracy but different balance (issue 17). Only ROC
    AUC and average precision resample within classes: they are undefined on a resample
    that lacks one, and a ranking metric conditions on the class counts anyway."""
    classes = np.asarray(y, dtype=np.int64) if task in ("binary", "multiclass") and y.ndim == 1 else None
    if classes is not None and spec.name in _RANKING:
        strata = classes
    else:
        strata = np.zeros(y.shape[0], dtype=np.int64)
    if kind == "ranking":
        assert pos is not None, "the exact ranking form needs its positives"
        y_kept = pos.astype(np.int8)
        if data.ndim == 2:
            data = data[:, :, None]
    elif kind == "r2":
        y_kept = np.asarray(y, dtype=np.float64)
    elif kind in ("mean", "ece"):
        y_kept = np.zeros(0, dtype=np.int8)
    else:
        y_kept = y.astype(np.int8 if n_classes <= 127 or kind == "multilabel" else np.int32)
    width = n_classes if kind == "multilabel" else max(n_classes, 2)
    return RowData(kind, y_kept, data, strata, width, sqrt=spec.name == "rmse", mode=mode, classes=classes)


def evaluate_run(run: Run, spec: MetricSpec, *, max_bytes: int = MAX_ROW_BYTES) -> RunEvaluation:
    """Read each of the run's val.npz files once and evaluate ``spec`` (bound to the run)
    on every checkpoint, keeping compact per-row data for the selection statistics."""
    from ..metrics.evaluation import prepare_predictions

    builder = EvaluationBuilder(run, spec, max_bytes)
    guard = ValSetGuard(run)
    kernel = metrics.KERNELS.get(spec.name) if spec.source == "builtin" else None
    for ckpt in run.checkpoints:
        if kernel is None:
            builder.add(ckpt, None, ckpt.logged.get(spec.name) if spec.source == "logged" else None)
            continue
        try:
            preds = read_predictions(run, ckpt, "val")
        except RunFormatError:
            builder.add(ckpt, None, None)
            continue
        builder.reads += 1
        problem = guard.problem(ckpt, preds)
        if problem:
            builder.drop(f"the validation set changed: {problem}")
        if preds.output.dtype.kind == "f" and not np.isfinite(preds.output).all():
            builder.add(ckpt, None, None)
            continue
        prep = prepare_predictions(run, preds)
        builder.add(ckpt, prep, kernel(prep, spec))
    return builder.finish()


def evaluate_arrays(
    task: str,
    output: str,
    spec: MetricSpec,
    target: np.ndarray,
    outputs: Sequence[np.ndarray],
    *,
    positive_class: int = 1,
    name: str = "<arrays>",
    n_classes: int | None = None,
) -> RunEvaluation:
    """An evaluation of in-memory predictions (one array per checkpoint, in order), for
    notebooks, simulations and tests; checkpoints are named ``c0000``, ``c0001``, ..."""
    from pathlib import Path

    # NOTE: bound like a run's specs (class=INDEX resolved, binary indices re-coded)
    spec = spec.for_run(None, task, positive_class)
    ckpts = tuple(Checkpoint(Path(name) / f"c{i:04d}", f"c{i:04d}", i, None, {}) for i in range(len(outputs)))
    run = Run(Path(name), name, task, output, None, positive_class, None, None, ckpts)
    builder = EvaluationBuilder(run, spec)
    kernel = metrics.KERNELS[spec.name]
    for ckpt, out in zip(ckpts, outputs, strict=True):
        prep = metrics.prepare(task, output, target, out, positive_class, n_classes)
        builder.add(ckpt, prep, kernel(prep, spec))
    return builder.finish()


# --------------------------------------------------------------------------- resampling


def _stratum_weights(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """(k, n) float32 bootstrap weights of one stratum of n rows, summing to n per row."""
    if n * k <= _EXACT_CELLS:
        idx = rng.integers(0, n, size=(k, n)) + (np.arange(k) * n)[:, None]
        return np.bincount(idx.ravel(), minlength=k * n).reshape(k, n).astype(np.float32)
    # Poisson(1) weights through a 16-bit lookup table, rescaled to the stratum's size
    u = rng.integers(0, 1 << 16, size=(k, n), dtype=np.uint16)
    w = _POISSON_LUT[u].astype(np.float32)
    total = w.sum(axis=1, keepdims=True)
    empty = np.flatnonzero(total[:, 0] == 0)
    if empty.size:  # all rows out of bag (only possible for tiny strata): draw those exactly
        idx = rng.integers(0, n, size=(empty.size, n)) + (np.arange(empty.size) * n)[:, None]
        w[empty] = np.bincount(idx.ravel(), minlength=empty.size * n).reshape(empty.size, n)
        total[empty] = n
    w *= n / total
    return w


def _poisson_lut() -> np.ndarray:
    k = np.arange(16)
    pmf = np.exp(-1.0) / np.array([math.factorial(int(i)) for i in k])
    edges = np.cumsum(pmf) * 65536
    return np.searchsorted(edges, np.arange(65536), side="right").astype(np.uint8)


_POISSON_LUT = _poisson_lut()


#: exact draws of a stratum this size or larger (rows x resamples) are remembered ...
_DRAW_CACHE_MIN_CELLS = 100_000
#: ... in a cache of at most this many bytes
_DRAW_CACHE_BYTES = 64 * 2**20
_DRAW_CACHE: dict[tuple, tuple[np.ndarray, Any]] = {}


def _state_key(state: Any) -> Any:
    if isinstance(state, dict):
        return tuple((key, _state_key(value)) for key, value in sorted(state.items()))
    return state


def _remember(key: tuple, counts: np.ndarray, state: Any) -> None:
    if counts.max(initial=0) > 255:
        return
    _DRAW_CACHE[key] = (counts.astype(np.uint8), state)
    total = sum(c.nbytes for c, _ in _DRAW_CACHE.values())
    if total > _DRAW_CACHE_BYTES:
        # NOTE: the smallest go first: a large stratum (drawn first, its key depends on its
        # size alone) repeats across runs far more often than the small ones after it
        for old in sorted(_DRAW_CACHE, key=lambda key: _DRAW_CACHE[key][0].nbytes):
            total -= _DRAW_CACHE.pop(old)[0].nbytes
            if total <= _DRAW_CACHE_BYTES:
                break


def _weight_chunks(strata: np.ndarray, resamples: int, rng: np.random.Generator, out_of_bag: bool = False):
    """Yield (k, N) in-bag weight matrices, stratified by ``strata``, in chunks; with
    ``out_of_bag``, (2k, N) matrices whose last k rows are the out-of-bag indicators
    (1 where a row was not drawn) of the first k.

    A stratum's exact counts depend only on its size, the chunk's resamples and the
    generator's state before its draws, so those are remembered (:data:`_DRAW_CACHE`): a
    sweep of many runs seeded alike draws each stratum size once; the generator is then set
    to the state the draws would have left, so every result is the same bit for bit as
    without the cache. Strata stored contiguously (see :func:`_by_stratum`) are written as
    blocks."""
    n = strata.shape[0]
    per_chunk = max(1, min(resamples, _CHUNK_CELLS // (2 * max(n, 1))))
    values = np.unique(strata)
    groups: list[Any] = [np.flatnonzero(strata == s) for s in values]
    if all(g.shape[0] == 0 or g[-1] - g[0] + 1 == g.shape[0] for g in groups):
        groups = [slice(int(g[0]), int(g[-1]) + 1) if g.shape[0] else g for g in groups]
    done = 0
    while done < resamples:
        k = min(per_chunk, resamples - done)
        both = np.empty((2 * k if out_of_bag else k, n), dtype=np.float32)
        w = both[:k]
        for rows in groups:  # in the strata's order: the random stream does not depend on the method
            m = rows.stop - rows.start if isinstance(rows, slice) else rows.shape[0]
            if m * k > _EXACT_CELLS:
                w[:, rows] = _stratum_weights(m, k, rng)
                continue
            key = None
            if m * k >= _DRAW_CACHE_MIN_CELLS:
                key = (m, k, _state_key(rng.bit_generator.state))
                hit = _DRAW_CACHE.get(key)
                if hit is not None:
                    rng.bit_generator.state = hit[1]
                    w[:, rows] = hit[0]
                    continue
            counts = _stratum_weights(m, k, rng)
            w[:, rows] = counts
            if key is not None:
                _remember(key, counts, rng.bit_generator.state)
        if out_of_bag:
            np.equal(w, 0, out=both[k:], casting="unsafe")
        yield both
        done += k


# --------------------------------------------------------------------------- weighted values


def _ranking_values(rows: RowData, w: np.ndarray, spec: MetricSpec, task: str) -> np.ndarray:
    return ranking_rows.exact_values(rows.y.astype(bool), rows.data, w, rows.mode, spec.name)


#: up to this many classes, per-class weighted sums are matrix products with dense 0/1
#: indicators; above it, products with sparse ones
_DENSE_CLASSES = 8
#: float64 cells of the per-class count arrays one step of the confusion path holds
_COUNT_CELLS = 500_000


def _class_sums(w_t: np.ndarray, codes: np.ndarray, k: int, rows: np.ndarray | None = None) -> np.ndarray:
    """(B, k) sums of the weights over the rows of each class ``codes`` (N,) (only the
    rows where the boolean ``rows`` is true, when given), from the transposed weights
    ``w_t`` (N, B): a sparse 0/1 (k, N) matrix times ``w_t``, which adds whole rows of
    ``w_t`` in place (no B x N x k array, no gathered copy of the weights)."""
    from scipy import sparse  # a dependency of scikit-learn

    n = codes.shape[0]
    if rows is None:
        indices, indptr = codes, np.arange(n + 1)
    else:
        indices, indptr = codes[rows], np.r_[0, np.cumsum(rows)]
    onehot = sparse.csc_matrix((np.ones(indices.shape[0], dtype=np.float32), indices, indptr), shape=(k, n))
    return np.asarray(onehot @ w_t, dtype=np.float64).T


def _dense_counts(rows: RowData, w: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted true-positive, predicted and actual counts, (B, len(group), K) and (B, K),
    and the weights' sums (B,)
    of a run with few classes: one (B, N) x (N, features) product of 0/1 indicators
    (float32 sums of 0/1 features are exact for integer weights). Binary runs need only
    class 1's features: class 0's counts follow from n."""
    k = rows.n_classes
    y = rows.y.astype(np.int64)
    data = rows.data[group]
    g = group.shape[0]
    classes = [1] if k == 2 else list(range(k))
    features = np.empty((y.shape[0], len(classes) * (2 * g + 1) + 1), dtype=np.float32)
    features[:, -1] = 1.0  # n, the weights' sum
    for i, j in enumerate(classes):
        hit = data == j
        at = i * (2 * g + 1)
        features[:, at : at + g] = hit.T
        hit &= (y == j)[None, :]
        features[:, at + g : at + 2 * g] = hit.T
        features[:, at + 2 * g] = y == j
    sums = (w @ features).astype(np.float64)
    tp = np.empty((w.shape[0], g, k))
    predicted = np.empty_like(tp)
    actual = np.empty((w.shape[0], k))
    for i, j in enumerate(classes):
        at = i * (2 * g + 1)
        predicted[:, :, j] = sums[:, at : at + g]
        tp[:, :, j] = sums[:, at + g : at + 2 * g]
        actual[:, j] = sums[:, at + 2 * g]
    n = sums[:, -1]
    if k == 2:
        predicted[:, :, 0] = n[:, None] - predicted[:, :, 1]
        actual[:, 0] = n - actual[:, 1]
        # rows predicted 0 less the positives among them
        tp[:, :, 0] = predicted[:, :, 0] - (actual[:, 1:2] - tp[:, :, 1])
    return tp, predicted, actual, n


def _sparse_counts(rows: RowData, w_t: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted true-positive and predicted counts, each (B, len(group), K), of a run with
    many classes, from the transposed weights ``w_t`` (N, B) by sparse 0/1 products (never K x K cells per resample:
    every confusion metric needs only the diagonal and the margins,
    :func:`~ckptaudit.metrics.kernels.from_counts`)."""
    k = rows.n_classes
    y = rows.y.astype(np.int64)
    tp = np.empty((w_t.shape[1], group.shape[0], k))
    predicted = np.empty_like(tp)
    for g, pred in enumerate(rows.data[group]):
        tp[:, g, :] = _class_sums(w_t, y, k, pred == y)
        # NOTE: a label run's prediction outside the run's classes is predicted as no class
        # of it (the kernel counts it in a column past them)
        inside = None if int(pred.max(initial=0)) < k else pred < k
        predicted[:, g, :] = _class_sums(w_t, pred.astype(np.int64), k, inside)
    return tp, predicted


def _confusion_values(rows: RowData, w: np.ndarray, spec: MetricSpec, task: str) -> np.ndarray:
    """Every checkpoint's confusion metric under each row-weight vector, from weighted
    per-class counts (true positives, predicted, actual, n), in groups of checkpoints
    whose count arrays (and, with few classes, float32 indicators) stay bounded."""
    k = rows.n_classes
    c_count = rows.data.shape[0]
    n_rows = rows.data.shape[1]
    out = np.empty((w.shape[0], c_count))
    dense = k <= _DENSE_CLASSES
    n = None if dense else w.sum(axis=1, dtype=np.float64)
    w_t = None if dense else np.ascontiguousarray(w.T)
    actual = None if w_t is None else _class_sums(w_t, rows.y.astype(np.int64), k)
    # NOTE: the dense path's indicators are (N, 2 x group x classes) float32: about the
    # weights' size at most
    per_group = max(1, _COUNT_CELLS // max(w.shape[0] * k, 1))
    if dense:
        per_group = max(1, min(per_group, _CHUNK_CELLS // (4 * k * max(n_rows, 1))))
    for first in range(0, c_count, per_group):
        group = np.arange(first, min(first + per_group, c_count))
        if dense:
            tp, predicted, actual, n = _dense_counts(rows, w, group)
        else:
            assert w_t is not None
            tp, predicted = _sparse_counts(rows, w_t, group)
        assert actual is not None and n is not None
        out[:, group] = metrics.from_counts(tp, predicted, actual[:, None, :], n[:, None], spec, task, rows.n_classes)
    return out


def _multilabel_values(rows: RowData, w: np.ndarray, spec: MetricSpec) -> np.ndarray:
    """Every checkpoint's per-label metric under each row-weight vector, from weighted
    per-label counts (true positives, predicted, actual, n) as matrix products."""
    labels = rows.n_classes
    y = rows.y.astype(np.float32)
    actual = (w @ y).astype(np.float64)
    n = w.sum(axis=1, dtype=np.float64)
    out = np.empty((w.shape[0], rows.data.shape[0]))
    both = np.empty((y.shape[0], 2 * labels), dtype=np.float32)
    for c, packed in enumerate(rows.data):
        both[:, :labels] = np.unpackbits(packed, axis=1, count=labels)
        np.multiply(both[:, :labels], y, out=both[:, labels:])
        sums = w @ both  # predicted, then true positives: one product
        out[:, c] = metrics.from_counts(sums[:, labels:], sums[:, :labels], actual, n, spec, "multilabel", labels)
    return out


def _r2_values(rows: RowData, w: np.ndarray) -> np.ndarray:
    """Every checkpoint's R2 under each row-weight vector, from weighted sums of the squared
    residuals and of the (centred) targets, with the kernel's rules for a constant target."""
    y = rows.y if rows.y.ndim == 2 else rows.y[:, None]
    centred = (y - y.mean(axis=0)).astype(np.float32)
    total = w.sum(axis=1, dtype=np.float64)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        ss_tot = (w @ (centred * centred)).astype(np.float64) - (w @ centred).astype(np.float64) ** 2 / total
    ss_tot = np.clip(ss_tot, 0.0, None)
    safe = ss_tot > 0
    out = np.empty((w.shape[0], rows.data.shape[0]))
    for c, res2 in enumerate(rows.data):
        ss_res = (w @ (res2 if res2.ndim == 2 else res2[:, None])).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            per = np.where(safe, 1 - ss_res / np.where(safe, ss_tot, 1.0), np.where(ss_res == 0, 1.0, 0.0))
        out[:, c] = per.mean(axis=1)
    if y.shape[0] < 2:
        out[:] = np.nan
    return out


def _ece_values(rows: RowData, w: np.ndarray) -> np.ndarray:
    """Every checkpoint's expected calibration error under each row-weight vector: per bin,
    the weighted sum of (hit - confidence), by a sparse (bins, N) product."""
    from scipy import sparse  # a dependency of scikit-learn

    n_rows = w.shape[1]
    w_t = np.ascontiguousarray(w.T, dtype=np.float64)
    total = w.sum(axis=1, dtype=np.float64)
    out = np.empty((w.shape[0], rows.data.shape[0]))
    for c, terms in enumerate(rows.data):
        bins = terms[:, 0].astype(np.int64)
        gaps = sparse.csc_matrix((terms[:, 1], bins, np.arange(n_rows + 1)), shape=(int(bins.max(initial=0)) + 1, n_rows))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, c] = np.abs(np.asarray(gaps @ w_t)).sum(axis=0) / total
    return out


def weighted_values(rows: RowData, w: np.ndarray, spec: MetricSpec, task: str) -> np.ndarray:
    """The metric of every checkpoint under each row-weight vector: (k, N) -> (k, C).
    Unit weights give the checkpoints' own values."""
    if rows.kind == "confusion":
        return _confusion_values(rows, w, spec, task)
    if rows.kind == "ranking":
        return _ranking_values(rows, w, spec, task)
    if rows.kind == "multilabel":
        return _multilabel_values(rows, w, spec)
    if rows.kind == "r2":
        return _r2_values(rows, w)
    if rows.kind == "ece":
        return _ece_values(rows, w)
    total = w.sum(axis=1, keepdims=True)
    if rows.data.ndim == 3:  # rmse of several outputs: each output's root, averaged
        out = np.empty((w.shape[0], rows.data.shape[0]))
        for c, per_output in enumerate(rows.data):
            with np.errstate(invalid="ignore", divide="ignore"):
                out[:, c] = np.sqrt((w @ per_output).astype(np.float64) / total).mean(axis=1)
        return out
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (w @ rows.data.T).astype(np.float64) / total
    return np.sqrt(means) if rows.sqrt else means


# --------------------------------------------------------------------------- large validation sets

#: the Gaussian path serves runs with at least this many rows x resamples ...
_GAUSSIAN_MIN_CELLS = 20_000_000
#: ... whose every class (stratum) has at least this many rows ...
_GAUSSIAN_MIN_STRATUM = 1000
#: ... and at most this many summed features (checkpoints, x classes for multiclass)
_GAUSSIAN_MAX_FEATURES = 256
_OUT_OF_BAG = math.exp(-1.0)  # probability that a row is left out of a resample
#: rows of features the Gaussian path holds at once (up to it, one block: the sums, and so
#: every result, are bit for bit those of one product)
_GAUSSIAN_BLOCK_ROWS = 1_048_576


def _count_classes(rows: RowData) -> list[int]:
    """The classes whose counts the Gaussian confusion path sums (binary: class 1 alone,
    class 0's counts follow from n)."""
    return [1] if rows.n_classes == 2 else list(range(rows.n_classes))


def _features(rows: RowData, sel: np.ndarray) -> np.ndarray:
    """Per-row features whose sums give every checkpoint's confusion counts or loss sums:
    for a confusion metric, per class, each checkpoint's predicted and true-positive
    indicators and the row's actual-class indicator (so the sums carry the class mix,
    whatever the stratification)."""
    data = rows.data[:, sel]
    if rows.kind == "mean":
        return data.T.astype(np.float64)
    assert rows.classes is not None
    y = rows.classes[sel]
    c = data.shape[0]
    cls = _count_classes(rows)
    # NOTE: 0/1 features sum exactly in float32 (below 2^24 rows), twice as fast as float64
    out = np.empty((sel.shape[0], len(cls) * (2 * c + 1)), dtype=np.float32)
    for i, j in enumerate(cls):
        at = i * (2 * c + 1)
        hit = data == j
        out[:, at : at + c] = hit.T
        hit &= (y == j)[None, :]
        out[:, at + c : at + 2 * c] = hit.T
        out[:, at + 2 * c] = y == j
    return out


def _feature_count(rows: RowData) -> int:
    c = rows.data.shape[0]
    return c if rows.kind == "mean" else len(_count_classes(rows)) * (2 * c + 1)


def gaussian_ok(rows: RowData, resamples: int) -> bool:
    """Whether :func:`_gaussian_sums` serves this run: a sum-type metric (confusion counts or
    mean losses), a large validation set and no small class (nor stratum), where the
    bootstrap sums are Gaussian to within resampling error and exact weights would cost
    rows x resamples x checkpoints."""
    if rows.kind not in ("confusion", "mean") or rows.data.ndim != 2 or rows.data.shape[1] * resamples < _GAUSSIAN_MIN_CELLS:
        return False
    if rows.kind == "confusion" and rows.classes is None:
        return False
    for groups in (rows.strata, rows.classes):
        if groups is None:
            continue
        counts = np.bincount(groups)
        if int(counts[counts > 0].min()) < _GAUSSIAN_MIN_STRATUM:
            return False
    return _feature_count(rows) <= _GAUSSIAN_MAX_FEATURES


def _gaussian_sums(rows: RowData, resamples: int, rng: np.random.Generator):
    """Per stratum, (resamples, F+1) in-bag and out-of-bag feature sums (the last column is
    the row count), drawn from their exact joint mean and covariance under stratified
    resampling (out-of-bag membership to the Poisson approximation). Costs rows x F^2 once
    instead of rows x resamples x checkpoints."""
    pi = _OUT_OF_BAG
    for stratum in np.unique(rows.strata):
        sel = np.flatnonzero(rows.strata == stratum)
        n = sel.shape[0]
        m = total = None
        # NOTE: in blocks of rows, so the features never take more than a block's memory
        for first in range(0, n, _GAUSSIAN_BLOCK_ROWS):
            x = _features(rows, sel[first : first + _GAUSSIAN_BLOCK_ROWS])
            z = np.empty((x.shape[0], x.shape[1] + 1), dtype=x.dtype)
            z[:, :-1] = x
            z[:, -1] = 1.0
            del x
            block_m = (z.T @ z).astype(np.float64)
            block_total = z.sum(axis=0, dtype=np.float64)
            m = block_m if m is None else m + block_m
            total = block_total if total is None else total + block_total
        assert m is not None and total is not None
        outer = np.outer(total, total) / n
        centred = m - outer
        f = z.shape[1]
        cov = np.empty((2 * f, 2 * f))
        cov[:f, :f] = centred
        cov[:f, f:] = cov[f:, :f] = -pi * centred
        cov[f:, f:] = pi * (1 - pi) * m - pi * pi * outer
        vals, vecs = np.linalg.eigh(cov)
        scale = np.sqrt(np.clip(vals, 0.0, None))
        draws = (rng.standard_normal((resamples, 2 * f)) * scale) @ vecs.T
        mean = np.concatenate([total, pi * total])
        draws += mean
        yield int(stratum), draws[:, :f], draws[:, f:]


def gaussian_values(rows: RowData, spec: MetricSpec, task: str, resamples: int, rng: np.random.Generator):
    """In-bag and out-of-bag values (resamples, C) of every checkpoint from Gaussian sums."""
    c_count = rows.data.shape[0]
    k = rows.n_classes
    if rows.kind == "mean":
        sums = [np.zeros((resamples, c_count + 1)), np.zeros((resamples, c_count + 1))]
        for _, s_in, s_out in _gaussian_sums(rows, resamples, rng):
            sums[0] += s_in
            sums[1] += s_out
        out = []
        for s in sums:
            means = s[:, :-1] / s[:, -1:]
            out.append(np.sqrt(np.clip(means, 0.0, None)) if rows.sqrt else means)
        return out[0], out[1]
    # per-class counts (true positives, predicted, actual) of every checkpoint, in and out of bag
    f = _feature_count(rows)
    sums = [np.zeros((resamples, f + 1)), np.zeros((resamples, f + 1))]
    for _, s_in, s_out in _gaussian_sums(rows, resamples, rng):
        sums[0] += s_in
        sums[1] += s_out
    values = []
    for s in sums:
        s = np.clip(s, 0.0, None)
        n = s[:, -1]
        tp = np.zeros((resamples, c_count, k))
        predicted = np.zeros_like(tp)
        actual = np.zeros((resamples, k))
        for i, j in enumerate(_count_classes(rows)):
            at = i * (2 * c_count + 1)
            predicted[:, :, j] = s[:, at : at + c_count]
            tp[:, :, j] = np.minimum(s[:, at + c_count : at + 2 * c_count], predicted[:, :, j])
            actual[:, j] = s[:, at + 2 * c_count]
        if k == 2:
            predicted[:, :, 0] = np.clip(n[:, None] - predicted[:, :, 1], 0.0, None)
            actual[:, 0] = np.clip(n - actual[:, 1], 0.0, None)
            tp[:, :, 0] = np.clip(predicted[:, :, 0] - (actual[:, 1:2] - tp[:, :, 1]), 0.0, None)
        values.append(
            np.asarray(
                metrics.from_counts(tp, predicted, actual[:, None, :], n[:, None], spec, task, rows.n_classes), dtype=np.float64
            )
        )
    return values[0], values[1]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class CheckpointSelection:
    """One checkpoint's place in the selection: value, 95% interval, and whether it
    cannot be told apart from the best (``tied_best``; None when not evaluated).
    ``mcs_pvalue``: the model-confidence-set p-value (members have p > 0.05)."""

    checkpoint: str
    epoch: int
    value: float | None
    interval: tuple[float, float] | None
    tied_best: bool | None
    mcs_pvalue: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON shape of a checkpoint entry."""
        return {
            "checkpoint": self.checkpoint,
            "epoch": self.epoch,
            "value": self.value,
            "ci95": None if self.interval is None else list(self.interval),
            "tied_best": self.tied_best,
            "mcs_pvalue": self.mcs_pvalue,
        }


@dataclass(frozen=True)
class WinnerEstimate:
    """The selected checkpoint's raw validation value and what to expect on new data.

    ``optimism`` is oriented: positive when the raw value looks better than expected
    (raw - expected for metrics to maximise, expected - raw for losses)."""

    checkpoint: str
    raw: float
    expected: float
    interval: tuple[float, float]
    optimism: float
    #: resamples left out because their in-bag or out-of-bag rows had no row of the
    #: metric's class (recall of no positive is undefined, not 0)
    skipped_draws: int = 0
    #: rows of the metric's class (binary: positives) in the validation set, where it has one
    positives: int | None = None
    #: True when ``positives`` is below :data:`MIN_POSITIVES`: the estimate is then not
    #: calibrated (a view should say "too few positives", with ``positives_needed``)
    too_few_positives: bool = False
    positives_needed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON shape: checkpoint, raw, expected_on_new_data, ci95, optimism, and the
        positives fields."""
        return {
            "checkpoint": self.checkpoint,
            "raw": self.raw,
            "expected_on_new_data": self.expected,
            "ci95": list(self.interval),
            "optimism": self.optimism,
            "skipped_draws": self.skipped_draws,
            "positives": self.positives,
            "too_few_positives": self.too_few_positives,
            "positives_needed": self.positives_needed,
        }


@dataclass(frozen=True)
class RunSelection:
    """Selection statistics of one run under one metric (plain data; ``as_dict`` for JSON).

    ``tied_best`` names the checkpoints that cannot be told apart from the best (the
    winner first, then epoch order); empty when unavailable (``note`` says why).
    """

    run: str
    metric: str
    maximize: bool
    rows: int
    resamples: int
    seed: int
    winner: str | None
    estimate: WinnerEstimate | None
    checkpoints: tuple[CheckpointSelection, ...]
    tied_best: tuple[str, ...]
    note: str | None = None
    method: str = METHOD
    correction: str = CORRECTION
    level: float = LEVEL
    #: the smallest gap to the best (in the metric's units) that the confidence set would
    #: have told apart at this level: "cannot be told apart" means "differs by less than
    #: about this much, or not at all", not "equal" (None when not computed)
    detectable_difference: float | None = None
    _index: dict[str, CheckpointSelection] = field(default_factory=dict, repr=False, compare=False)

    @property
    def available(self) -> bool:
        """Whether the bootstrap statistics were computed."""
        return self.estimate is not None

    def entry(self, name: str) -> CheckpointSelection | None:
        """The entry of checkpoint ``name``."""
        if not self._index:
            self._index.update({c.checkpoint: c for c in self.checkpoints})
        return self._index.get(name)

    def is_tied_best(self, name: str) -> bool:
        """True when ``name`` cannot be told apart from the best."""
        return name in self.tied_best

    def as_dict(self) -> dict[str, Any]:
        """JSON shape of the whole selection."""
        return {
            "run": self.run,
            "metric": self.metric,
            "rows": self.rows,
            "resamples": self.resamples,
            "seed": self.seed,
            "level": self.level,
            "winner": self.winner,
            "estimate": None if self.estimate is None else self.estimate.as_dict(),
            "tied_best": list(self.tied_best),
            "checkpoints": [c.as_dict() for c in self.checkpoints],
            "method": self.method,
            "correction": self.correction,
            "note": self.note,
            "detectable_difference": self.detectable_difference,
        }


def _percentiles(values: np.ndarray) -> tuple[float, float] | None:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    low, high = np.percentile(finite, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return float(low), float(high)


#: below this many rows in the smaller class, ROC AUC intervals are widened to cover the
#: Hanley-McNeil interval (the percentile bootstrap is too narrow with a handful of positives)
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
    if values.size and np.isfinite(values).all():
        low, high = np.percentile(values, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2], axis=0)
        return [(float(a), float(b)) for a, b in zip(low, high, strict=True)]
    return [_percentiles(values[:, j]) for j in range(values.shape[1])]


def _checkpoint_interval(rows: RowData, spec: MetricSpec, draws: np.ndarray, value: float | None) -> tuple[float, float] | None:
    interval = _percentiles(draws)
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
    low, high = hanley_mcneil_interval(value, n_pos, n_neg)
    return min(interval[0], low), max(interval[1], high)


def confidence_set(oriented: np.ndarray, point: np.ndarray, winner: int, level: float = LEVEL) -> tuple[list[int], np.ndarray]:
    """Model confidence set with the range statistic (Hansen, Lunde & Nason 2011),
    eliminating in steps (Romano-Wolf step-down).

    ``oriented`` holds bootstrap values (resamples, C), larger = better; ``point`` the
    values on the full validation set. With ``M`` the checkpoints still in the set, ``q``
    is the ``level`` quantile of the bootstrap range ``max_M(V* - v) - min_M(V* - v)``
    (the largest centred pairwise difference); every checkpoint whose gap to the best of
    ``M`` exceeds ``q`` leaves, and the step repeats on the smaller set until none leaves.
    The differences are not studentised on purpose: a per-pair standard error estimated
    from the few rows two similar checkpoints disagree on has heavy tails, and the
    maximum over C^2 pairs then raises false alarms (7% instead of 5% for 50 equal
    checkpoints on 300 rows, measured by bench/simulate_selection.py). Returns the member
    indices and each checkpoint's p-value (members have p > 1 - level; the winner 1).
    Work: O(resamples x C) per step, no (resamples x C x C) array.
    """
    members, pvalues, _ = confidence_set_threshold(oriented, point, winner, level)
    return members, pvalues


def confidence_set_threshold(
    oriented: np.ndarray, point: np.ndarray, winner: int, level: float = LEVEL
) -> tuple[list[int], np.ndarray, float | None]:
    """:func:`confidence_set`, and the threshold of its last step: the gap to the best a
    member would have needed to leave the set (the smallest detectable difference at
    ``level``; None with a single checkpoint)."""
    c_count = point.shape[0]
    dev = oriented - point[None, :]
    alive = np.arange(c_count)
    pvalues = np.ones(c_count)
    running = 0.0
    q: float | None = None
    while alive.size > 1:
        sub = dev[:, alive]
        ranges = sub.max(axis=1) - sub.min(axis=1)
        gaps = point[alive].max() - point[alive]
        q = float(np.quantile(ranges, level))
        out = (gaps > q) & (alive != winner)
        if not out.any():
            break
        for j in np.flatnonzero(out):
            pvalues[alive[j]] = max(running, float(np.mean(ranges >= gaps[j])))
        running = max(running, float(pvalues[alive[out]].max()))
        alive = alive[~out]
    return [int(i) for i in alive], pvalues, q


def select(evaluation: RunEvaluation, *, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> RunSelection:
    """Selection statistics of one evaluated run (see the module docstring)."""
    # NOTE: the matrices here are small (checkpoints wide); BLAS threads only contend with
    # each other, which on a busy 2-core machine made this 4x slower.
    with _one_blas_thread():
        return _select(evaluation, resamples, seed)


_CONTROLLER: list[Any] = []


def _one_blas_thread() -> Any:
    """A context that limits BLAS to one thread. The controller (which inspects the loaded
    libraries, ~1 ms) is made once per process: a sweep of 1000 runs selects 1000 times."""
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController  # a dependency of scikit-learn

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")


def _by_stratum(rows: RowData, resamples: int) -> RowData:
    """``rows`` with its rows in stratum order (stable), so that each stratum's weights are
    written as one block, where that cannot change a value: confusion counts (sums of 0/1
    features) under integer weights (every stratum drawn exactly) are exact in any order.
    Kept as it is otherwise, or when the copy would be large."""
    n = rows.strata.shape[0]
    per_chunk = max(1, min(resamples, _CHUNK_CELLS // (2 * max(n, 1))))
    if rows.kind != "confusion" or n < 2 or rows.data.nbytes > _CHUNK_CELLS:
        return rows
    sizes = np.bincount(rows.strata)
    if sizes.max() * per_chunk > _EXACT_CELLS or bool(np.all(rows.strata[1:] >= rows.strata[:-1])):
        return rows
    order = np.argsort(rows.strata, kind="stable")
    classes = None if rows.classes is None else rows.classes[order]
    return replace(rows, y=rows.y[order], data=rows.data[:, order], strata=rows.strata[order], classes=classes)


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
    z = 1.959963984540054 if level == 0.95 else float(__import__("statistics").NormalDist().inv_cdf((1 + level) / 2))
    p = successes / trials
    centre = (successes + z * z / 2) / (trials + z * z)
    half = z * math.sqrt(max(p * (1 - p) / trials + z * z / (4 * trials * trials), 0.0)) * trials / (trials + z * z)
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion_counts(rows: RowData, spec: MetricSpec, task: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(successes, trials) of every checkpoint when its metric is one proportion (accuracy;
    recall, precision, specificity or npv of one class), from the same predicted labels
    the value comes from; None otherwise."""
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


def _resampled(rows: RowData, spec: MetricSpec, task: str, resamples: int, rng: np.random.Generator, event: int | None):
    """In-bag and out-of-bag values (resamples, C); with an ``event`` class, a resample
    whose in-bag or out-of-bag rows hold none of it is NaN (undefined, not 0)."""
    if gaussian_ok(rows, resamples):
        return gaussian_values(rows, spec, task, resamples, rng)
    in_bag: list[np.ndarray] = []
    out_of_bag: list[np.ndarray] = []
    by_stratum = _by_stratum(rows, resamples)
    indicator = None
    if event is not None and by_stratum.classes is not None:
        indicator = (by_stratum.classes == event).astype(np.float32)
    for both in _weight_chunks(by_stratum.strata, resamples, rng, out_of_bag=True):
        k = both.shape[0] // 2
        values_both = weighted_values(by_stratum, both, spec, task)
        if indicator is not None:
            values_both[(both @ indicator) == 0] = np.nan
        in_bag.append(values_both[:k])
        out_of_bag.append(values_both[k:])
    return np.concatenate(in_bag), np.concatenate(out_of_bag)


def _select(evaluation: RunEvaluation, resamples: int, seed: int) -> RunSelection:
    spec = evaluation.spec
    sign = 1.0 if spec.maximize else -1.0
    values = evaluation.values
    ckpts = evaluation.checkpoints
    scorable = [i for i, v in enumerate(values) if v is not None]
    winner_i = max(scorable, key=lambda i: (sign * values[i], -i)) if scorable else None  # type: ignore[operator]
    winner = None if winner_i is None else ckpts[winner_i].name
    rows = evaluation.rows

    def plain(note: str | None) -> RunSelection:
        entries = tuple(CheckpointSelection(c.name, c.epoch, v, None, None, None) for c, v in zip(ckpts, values, strict=True))
        n = 0 if rows is None else int(rows.data.shape[1])
        return RunSelection(evaluation.run.name, spec.text, spec.maximize, n, resamples, seed, winner, None, entries, (), note)

    if rows is None or winner_i is None:
        return plain(evaluation.rows_note or "no checkpoint could be scored")
    if winner_i not in evaluation.scored or winner is None:
        return plain("the winner has no per-row data")
    task = evaluation.run.task
    n = int(rows.data.shape[1])
    rng = np.random.default_rng(seed)
    event = event_class(spec, task, rows.kind)
    v_in, v_out = _resampled(rows, spec, task, resamples, rng, event)
    scored = list(evaluation.scored)
    if rows.kind == "confusion":  # the kernels' values are exactly the per-row counts' values
        point = np.array([values[i] for i in scored], dtype=np.float64)
    else:  # float32 rows: centre the bootstrap on the same numbers it resamples
        point = weighted_values(rows, np.ones((1, n), dtype=np.float32), spec, task)[0]
    w_local = scored.index(winner_i)

    # BBC: the checkpoint each resample selects (ties to the earlier epoch), scored out of
    # bag; a resample where the metric is undefined in or out of bag is left out, and counted
    oriented_in = np.where(np.isfinite(v_in), sign * v_in, -np.inf)
    picked = oriented_in.argmax(axis=1)
    oob_all = v_out[np.arange(v_out.shape[0]), picked]
    usable = np.isfinite(oob_all) & np.isfinite(oriented_in).any(axis=1)
    oob_scores = oob_all[usable]
    positives = None if event is None or rows.classes is None else int(np.count_nonzero(rows.classes == event))
    estimate = None
    if oob_scores.size:
        raw = float(values[winner_i])  # type: ignore[arg-type]
        expected = float(oob_scores.mean())
        interval = _percentiles(oob_scores)
        assert interval is not None
        few = positives is not None and positives < MIN_POSITIVES
        estimate = WinnerEstimate(
            winner,
            raw,
            expected,
            interval,
            sign * (raw - expected),
            skipped_draws=int(np.count_nonzero(~usable)),
            positives=positives,
            too_few_positives=few,
            positives_needed=MIN_POSITIVES if few else None,
        )

    # model confidence set over the resamples where every checkpoint is defined
    finite = np.isfinite(v_in).all(axis=1)
    members, pvalues, q = (
        confidence_set_threshold(sign * v_in[finite], sign * point, w_local)
        if finite.any()
        else ([w_local], np.ones(len(scored)), None)
    )
    member_names = {ckpts[scored[j]].name for j in members}
    tied = [winner] + [c.name for c in ckpts if c.name in member_names and c.name != winner]

    entries = []
    local = {ci: j for j, ci in enumerate(scored)}
    intervals = _all_percentiles(v_in)
    proportions = proportion_counts(rows, spec, task)
    for i, (c, v) in enumerate(zip(ckpts, values, strict=True)):
        j = local.get(i)
        if j is None:
            entries.append(CheckpointSelection(c.name, c.epoch, v, None, None, None))
            continue
        # NOTE: only ROC AUC may widen the percentile interval; the others use the batch's
        interval = _checkpoint_interval(rows, spec, v_in[:, j], v) if spec.name == "roc_auc" else intervals[j]
        if proportions is not None and proportions[1][j] > 0 and v is not None:
            # NOTE: one proportion: the Wilson interval of its own counts (the percentile
            # bootstrap of a proportion under-covers with few events: 71-81% for recall at
            # 5 positives, [1, 1] for 2 of 2)
            interval = wilson_interval(float(proportions[0][j]), float(proportions[1][j]))
        entries.append(CheckpointSelection(c.name, c.epoch, v, interval, c.name in member_names, float(pvalues[j])))
    unscored = len(scorable) - len(scored)
    note = f"{unscored} scorable checkpoint(s) without per-row data were left out" if unscored else None
    return RunSelection(
        evaluation.run.name,
        spec.text,
        spec.maximize,
        n,
        resamples,
        seed,
        winner,
        estimate,
        tuple(entries),
        tuple(tied),
        note,
        detectable_difference=q,
    )


def evaluate_selection(
    run: Run, spec: MetricSpec, *, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> RunSelection:
    """Selection statistics of ``run`` under ``spec`` (bound to the run with
    :class:`~ckptaudit.metrics.evaluation.RunScorer`), reading each val.npz once. A verb
    that has already read the files passes its :class:`RunEvaluation` to :func:`select`."""
    return select(evaluate_run(run, spec), resamples=resamples, seed=seed)


def selections_for(
    runs: Sequence[Run],
    spec: MetricSpec,
    *,
    resamples: int,
    seed: int,
    evaluations: dict[str, RunEvaluation] | None = None,
) -> dict[str, RunSelection]:
    """Selection statistics of each run under the unbound ``spec`` (bound per run), from
    ``evaluations`` (by run name) where given, else from a pass of their own."""
    from ..metrics.evaluation import RunScorer

    known = evaluations or {}
    out = {}
    for run in runs:
        evaluation = known.get(run.name)
        if evaluation is None:
            evaluation = evaluate_run(run, RunScorer(run, [spec]).specs[0])
        out[run.name] = select(evaluation, resamples=resamples, seed=seed)
    return out
