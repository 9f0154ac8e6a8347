"""Compact per-row data of a run's checkpoints, collected in one pass over its validation files.

The selection statistics resample these (:mod:`ckptaudit.stats.weighted`); each is derived
from the same prepared values, by the same functions, as the displayed metric (the kernels'
labels, :func:`~ckptaudit.metrics.kernels.mean_rows`, ``ece_terms``, the rank columns of
:func:`~ckptaudit.metrics.ranks.column_matrix`), so unit weights reproduce the displayed
value (tests/test_stats_unit_weights.py). See :class:`RowData` for the forms and
:func:`row_data` for which metrics resample rows and which stratify by class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import RunFormatError
from ..metrics import kernels as metrics
from ..metrics.spec import MetricSpec
from ..store.reader import Checkpoint, Run, ValSetGuard, read_predictions
from . import ranking_rows

#: the most bytes of compact per-row data one run's evaluation keeps
MAX_ROW_BYTES = 512 * 2**20

_RANKING = ("roc_auc", "average_precision")
_MEAN = ("log_loss", "brier", "mse", "mae", "rmse", "top_k_accuracy")


@dataclass(frozen=True)
class RowData:
    """Compact per-row predictions of every scorable checkpoint of a run, for one metric.

    ``kind`` is ``"confusion"`` (``data``: predicted class per row, uint8 or int16),
    ``"ranking"`` (``data``: (checkpoints, rows, columns) score columns of
    :func:`~ckptaudit.metrics.ranks.column_matrix` in their own dtype; ``y`` the (rows,
    columns) positives; ``mode`` how the columns combine) or ``"mean"`` (``data``: float32
    per-row losses or hits whose mean is the metric; ``sqrt`` for rmse). ``data`` has
    shape (checkpoints, rows) otherwise; ``strata`` gives each row's resampling stratum
    (the target class for ROC AUC / average precision, else all zeros: rows are
    resampled); ``classes`` each row's target class where the run has classes.
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
    #: grouped metrics (:mod:`ckptaudit.stats.groupstats`): each row's group is
    #: ``strata // group_div`` (0: not grouped); ``group_pick`` the group of ``group=NAME``
    #: (-1: the worst group); ``group_names`` the groups' names by code
    group_div: int = 0
    group_pick: int = -1
    group_names: tuple[str, ...] = ()

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
    if spec.group_agg is not None or spec.group_name is not None:  # slices: sum-type forms only
        from .groupstats import GROUPED_KINDS

        inner = row_kind(replace(spec, group_agg=None, group_name=None), task)
        return inner if inner in GROUPED_KINDS else None
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
        # NOTE: the run's per-row arrays are written into one (checkpoints, ...) array made
        # at the first, whose pages the system maps as they are written: the run's data is
        # then held once. Kept in a list and stacked at the end, each checkpoint's array
        # and its copy were held at once (issue 21: 160 MB at 20,000 x 1,000 float32 rows)
        self._buffer: np.ndarray | None = None
        self._buffered = 0  # leading entries of _rows that are rows of _buffer
        self._scored: list[int] = []
        self._y: np.ndarray | None = None
        self._pos: np.ndarray | None = None
        self._mode = ""
        self._n_classes = 0
        self._bytes = 0
        self._groups: tuple[np.ndarray, int, tuple[str, ...]] | None = None
        self.note: str | None = None if self.kind else f"{spec.text}: no per-row form for selection statistics"
        self.reads = 0

    def wants_influence(self, spec: MetricSpec, prep: metrics.Prepared) -> bool:
        """Whether this builder will keep ``spec``'s linearised per-row data of ``prep``: the
        pass then computes the value with the influence, from one sort per column
        (:func:`ckptaudit.metrics.influence.remember`)."""
        return (
            spec.text == self.spec.text
            and spec.name in _RANKING
            and self.kind in ("ranking", "mean")
            and self.note is None
            and self.max_bytes > 0
            and ranking_rows.form(prep) == "mean"
        )

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
            if self.spec.group_agg is not None or self.spec.group_name is not None:
                from ..metrics.groups import group_view

                codes, names = group_view(self.spec, prep)
                pick = -1 if self.spec.group_name is None else names.index(self.spec.group_name)
                self._groups = (codes, pick, names)
        elif prep.y.shape != self._y.shape or not np.array_equal(prep.y, self._y):
            self.drop("the validation targets differ between checkpoints")
            return
        per = _per_row(self.kind, self.spec, prep)
        self._bytes += per.nbytes
        if self._bytes > self.max_bytes:
            self.drop(
                f"per-row data of this run would exceed {self.max_bytes / 2**20:.0f} MiB "
                f"({len(self._ckpts)} checkpoints x {per.shape[0]} rows so far)"
            )
            return
        if not self._rows:
            # (room for every checkpoint of the run left, within the byte limit)
            room = min(len(self.run.checkpoints) - index, self.max_bytes // max(per.nbytes, 1))
            self._buffer = np.empty((room, *per.shape), dtype=per.dtype) if room > 1 else None
        buffer = self._buffer
        if (
            buffer is not None
            and self._buffered == len(self._rows) < buffer.shape[0]
            and per.shape == buffer.shape[1:]
            and per.dtype == buffer.dtype
        ):
            slot = buffer[self._buffered]
            slot[...] = per
            per = slot
            self._buffered += 1
        elif not per.flags.owndata:
            # NOTE: a view may lie in the pass's reused output buffer (PassReader), which the
            # next checkpoint's read overwrites: keep a copy
            per = per.copy()
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
        self._buffer = None
        self._buffered = 0

    def _stacked(self) -> np.ndarray:
        """The kept per-row arrays as one (checkpoints, ...) array: the rows of the buffer
        they were written into, where every one was; else each is copied in and then
        replaced by its view of the result (a later ``add`` still appends)."""
        if self._buffer is not None and self._buffered == len(self._rows):
            return self._buffer[: self._buffered]  # (written in place: no copy)
        first = self._rows[0]
        stacked = np.empty((len(self._rows), *first.shape), dtype=np.result_type(*self._rows))
        for i, per in enumerate(self._rows):
            stacked[i] = per
            self._rows[i] = stacked[i]
        self._buffer, self._buffered = stacked, len(self._rows)
        return stacked

    def finish(self) -> RunEvaluation:
        """The evaluation collected so far."""
        rows = None
        if self.note is None and self._rows and self._y is not None and self.kind is not None:
            rows = row_data(
                self.kind,
                self.spec,
                self.run.task,
                self._y,
                self._stacked(),
                self._n_classes,
                self._pos,
                self._mode,
                groups=self._groups,
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
    groups: tuple[np.ndarray, int, tuple[str, ...]] | None = None,
) -> RowData:
    """The :class:`RowData` of stacked per-row values ``data`` (checkpoints first, each
    from :func:`_per_row`) on targets ``y``; the exact ranking form also takes its
    positives ``pos`` and column ``mode`` (:func:`ckptaudit.stats.ranking_rows.targets`).

    Resampling is by rows (one stratum) wherever the metric depends on the class mix
    (accuracy, precision, F1, balanced rates, mean losses): stratifying by class would drop
    the variance of the mix, under-covering accuracy and raising the confidence set's false
    alarms between checkpoints of equal accuracy but different balance (issue 17). Only ROC
    AUC and average precision resample within classes: they are undefined on a resample
    that lacks one, and a ranking metric conditions on the class counts anyway. ``groups``
    (codes, picked code, names) of a grouped metric stratify by group as well
    (:mod:`ckptaudit.stats.groupstats`)."""
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
    extra: dict[str, Any] = {}
    if groups is not None:
        from .groupstats import group_strata

        strata, div = group_strata(strata, groups[0])
        extra = {"group_div": div, "group_pick": groups[1], "group_names": groups[2]}
    return RowData(kind, y_kept, data, strata, width, sqrt=spec.name == "rmse", mode=mode, classes=classes, **extra)


def evaluate_run(run: Run, spec: MetricSpec, *, max_bytes: int = MAX_ROW_BYTES) -> RunEvaluation:
    """Read each of the run's val.npz files once and evaluate ``spec`` (bound to the run)
    on every checkpoint, keeping compact per-row data for the selection statistics."""
    from ..metrics.evaluation import _nonfinite, prepare_predictions

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
        if _nonfinite(preds.output):
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
    groups: Any = None,
) -> RunEvaluation:
    """An evaluation of in-memory predictions (one array per checkpoint, in order), for
    notebooks, simulations and tests; checkpoints are named ``c0000``, ``c0001``, ...
    ``groups``: the rows' group column (an array: the ``group`` column) or columns (a
    mapping), for grouped metrics."""
    from pathlib import Path

    # NOTE: bound like a run's specs (class=INDEX resolved, binary indices re-coded)
    spec = spec.for_run(None, task, positive_class)
    ckpts = tuple(Checkpoint(Path(name) / f"c{i:04d}", f"c{i:04d}", i, None, {}) for i in range(len(outputs)))
    run = Run(Path(name), name, task, output, None, positive_class, None, None, ckpts)
    builder = EvaluationBuilder(run, spec)
    kernel = metrics.KERNELS[spec.name]
    for ckpt, out in zip(ckpts, outputs, strict=True):
        prep = metrics.prepare(task, output, target, out, positive_class, n_classes)
        if groups is not None:
            prep.groups = dict(groups) if isinstance(groups, dict) else {"group": np.asarray(groups)}
        builder.add(ckpt, prep, kernel(prep, spec))
    return builder.finish()


def distinct_codes(codes: np.ndarray) -> np.ndarray:
    """``np.unique(codes)`` of integer codes (strata, classes, groups), ascending: by a count
    where they are small and non-negative (numpy's hashed unique took 2.8 ms on 100,000
    int64 codes, a count 0.2 ms; issue 21), else by ``np.unique``."""
    if codes.size and codes.dtype.kind in "iu":
        low, high = int(codes.min()), int(codes.max())
        if low >= 0 and high <= 4 * codes.size + 1024:
            return np.flatnonzero(np.bincount(codes.ravel(), minlength=high + 1)).astype(codes.dtype, copy=False)
    return np.unique(codes)
