"""Scoring checkpoints: metric specs applied to one run's checkpoints, one at a time.

:class:`RunScorer` binds parsed specs to a run (resolving class names, checking that
each metric applies to the run's task, importing a user's function once) and
:func:`iter_scores` streams a run's checkpoints, loading each prediction file once
and computing every requested metric from it. A checkpoint that cannot be scored
yields ``None`` values and a note that says why; it never stops the others.

The same pass feeds whatever else a verb needs from the predictions (the selection
statistics' compact per-row data, the audit's statistics): an :data:`Observer` given to
:func:`iter_scores` sees each checkpoint's predictions, prepared view and values, so no
verb reads a prediction file a second time.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MetricError, RunFormatError
from ..store.reader import Checkpoint, PassReader, Predictions, Run, ValSetGuard, read_predictions
from . import influence
from . import kernels as metrics
from .outcome import Outcome, OutcomeSource, fingerprint, pack_error, raise_error
from .spec import MetricSpec, check_applies, parse_metric

if TYPE_CHECKING:
    from ..store.sweepcache import SweepBook

#: called by :func:`iter_scores` once per checkpoint, in epoch order, with the checkpoint,
#: its validation predictions (None when not read or unreadable), their prepared view (None
#: when not scorable: unread, unreadable or non-finite outputs), the values in spec order,
#: and the read error (None when the file was read or not needed)
Observer = Callable[[Checkpoint, Predictions | None, "metrics.Prepared | None", tuple[float | None, ...], str | None], None]


#: an observer may carry this attribute, ``(spec, prepared view) -> bool``: whether it keeps
#: that metric's per-row influence (ROC AUC / average precision), which the pass then
#: computes with the value, from one sort per column (:mod:`ckptaudit.metrics.influence`)
WANTS_INFLUENCE = "wants_influence"


def wants_influence(observe: object) -> Callable[[MetricSpec, metrics.Prepared], bool] | None:
    """The :data:`WANTS_INFLUENCE` test of an observer (None: it keeps no influence)."""
    return getattr(observe, WANTS_INFLUENCE, None)


def observers(*each: Observer | None) -> Observer | None:
    """One :data:`Observer` that calls each of ``each`` (None entries left out) in turn."""
    found = [o for o in each if o is not None]
    if len(found) <= 1:
        return found[0] if found else None

    def both(*args: Any) -> None:
        for o in found:
            o(*args)

    tests = [t for t in map(wants_influence, found) if t is not None]
    if tests:
        setattr(both, WANTS_INFLUENCE, lambda spec, prep: any(t(spec, prep) for t in tests))
    return both


@dataclass(frozen=True)
class CheckpointScore:
    """Metric values of one checkpoint, in spec order (None where not scorable)."""

    run: Run
    checkpoint: Checkpoint
    values: tuple[float | None, ...]
    notes: tuple[str, ...]
    unreadable: bool = False  #: the prediction file itself was missing or malformed


def selected_modes(runs: Sequence[Run]) -> dict[str, str]:
    """Logged metric name -> direction, from run.json ``selected_by`` (where all runs agree)."""
    modes: dict[str, set[str]] = {}
    for run in runs:
        if run.selected_by is not None and run.selected_by.mode is not None:
            modes.setdefault(run.selected_by.metric, set()).add(run.selected_by.mode)
    return {name: next(iter(found)) for name, found in modes.items() if len(found) == 1}


def parse_metrics(texts: Sequence[str], runs: Sequence[Run], mode: str | None = None) -> list[MetricSpec]:
    """Parse ``--metric`` values against the metric names the runs logged."""
    if not texts:
        raise MetricError("no metric given: pass --metric NAME (see `ckptaudit metrics`)")
    logged = sorted({name for run in runs for name in run.logged_names()})
    specs = [parse_metric(t, mode=mode, logged=logged, logged_modes=selected_modes(runs)) for t in texts]
    seen: set[str] = set()
    for spec in specs:
        if spec.text in seen:
            raise MetricError(f"metric {spec.text!r} given twice")
        seen.add(spec.text)
    return specs


def prepare_predictions(run: Run, preds: Predictions) -> metrics.Prepared:
    """The metric kernels' view of one checkpoint's predictions, read per run.json."""
    prep = metrics.prepare(run.task, run.output, preds.target, preds.output, run.positive_class, run.num_classes)
    prep.groups = preds.groups  # the slices' group columns (ckptaudit.metrics.groups)
    return prep


def _nonfinite(output: np.ndarray) -> int:
    """How many of ``output``'s values are NaN or infinite: one sum when none is (a NaN or an
    infinity makes the sum NaN or infinite, so a finite sum means every value is finite), a
    count otherwise (also when a sum of huge finite values overflows). float16 sums overflow
    too easily: min and max tell there."""
    if output.dtype.kind != "f" or output.size == 0:
        return 0
    if output.dtype.itemsize >= 4:
        with np.errstate(over="ignore", invalid="ignore"):
            total = output.sum()
        if np.isfinite(total):
            return 0
    elif np.isfinite(output.min()) and np.isfinite(output.max()):
        return 0
    return int(np.count_nonzero(~np.isfinite(output)))


def _load_custom(spec: MetricSpec) -> Callable[..., float]:
    module_name, _, func_name = spec.name.rpartition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise MetricError(f"metric {spec.text!r}: cannot import {module_name!r}: {exc}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise MetricError(f"metric {spec.text!r}: {module_name!r} has no function {func_name!r}")
    return func


class RunScorer:
    """The specs of one scoring request, bound to one run."""

    def __init__(self, run: Run, specs: Sequence[MetricSpec]) -> None:
        self.run = run
        bound: list[MetricSpec] = []
        for spec in specs:
            check_applies(spec, run.task, run.output, run.name)
            try:
                bound.append(spec.for_run(run.classes, run.task, run.positive_class, run.num_classes))
            except MetricError as exc:
                raise MetricError(exc.problem, run.name) from None
        self.specs = bound
        self._custom = {s.text: _load_custom(s) for s in bound if s.source == "custom"}
        self.needs_predictions = any(s.source != "logged" for s in bound)
        #: set by a pass whose observer keeps per-row influence (:func:`wants_influence`)
        self.wants_influence: Callable[[MetricSpec, metrics.Prepared], bool] | None = None

    def score_metrics_only(self, checkpoint: Checkpoint) -> tuple[tuple[float | None, ...], tuple[str, ...]]:
        """:meth:`score` of a metrics-only checkpoint (only logged metrics: a rotation deleted
        it, or the framework never saved it): its logged values, with a note when a spec
        needs predictions."""
        values, notes = self.score(checkpoint, None)
        if self.needs_predictions:
            notes = ("metrics-only checkpoint: no predictions (only its logged metrics were kept)",) + notes
        return values, notes

    def logged_values(self, checkpoint: Checkpoint) -> tuple[float | None, ...]:
        """Each spec's value when the predictions cannot be read: the logged ones only."""
        return tuple(checkpoint.logged.get(s.name) if s.source == "logged" else None for s in self.specs)

    def score(self, checkpoint: Checkpoint, preds: Predictions | None) -> tuple[tuple[float | None, ...], tuple[str, ...]]:
        """Every spec's value on one checkpoint, and notes for the missing ones."""
        values, notes, _ = self.score_prepared(checkpoint, preds)
        return values, notes

    def score_prepared(
        self, checkpoint: Checkpoint, preds: Predictions | None
    ) -> tuple[tuple[float | None, ...], tuple[str, ...], metrics.Prepared | None]:
        """:meth:`score`, and the prepared view it scored (None when not scorable)."""
        values: list[float | None] = []
        notes: list[str] = []
        prep: metrics.Prepared | None = None
        nonfinite = 0
        if preds is not None:
            nonfinite = _nonfinite(preds.output)
            if nonfinite:
                notes.append(f"{nonfinite} non-finite outputs (NaN/inf) in {preds.path.name}")
            else:
                prep = prepare_predictions(self.run, preds)
                if self.wants_influence is not None:
                    for spec in self.specs:
                        if self.wants_influence(spec, prep):
                            influence.remember(prep, spec)
        for spec in self.specs:
            if spec.source == "logged":
                value = checkpoint.logged.get(spec.name)
                if value is None:
                    notes.append(f"{spec.text}: not logged at this checkpoint")
                elif not math.isfinite(value):
                    notes.append(f"{spec.text}: logged value is {value}")
                    value = None
                values.append(value)
                continue
            if prep is None:
                values.append(None)
                continue
            value = self._compute(spec, prep, preds)
            if value is not None and not math.isfinite(value):
                notes.append(f"{spec.text}: {metrics.undefined_reason(prep, spec)}")
                value = None
            elif spec.operating is not None and value is not None:  # issue 20: the threshold beside the value
                notes.append(metrics.operating.threshold_note(prep, spec) or f"{spec.text}: no threshold")
                if spec.threshold is not None:  # check --threshold: the shipped threshold's rates
                    notes.append(metrics.operating.shipped_note(prep, spec) or "")
            values.append(value)
        return tuple(values), tuple(notes), prep

    def _compute(self, spec: MetricSpec, prep: metrics.Prepared, preds: Predictions | None) -> float | None:
        if spec.source == "custom":
            assert preds is not None
            scores = prep.proba if prep.proba is not None else prep.hard
            if self.run.task == "binary":
                target = preds.target
            else:
                target = prep.y
            try:
                return float(self._custom[spec.text](target, scores))
            except Exception as exc:
                raise MetricError(f"metric {spec.text!r} raised {type(exc).__name__}: {exc}", preds.path) from None
        if spec.class_index is not None and spec.class_index >= max(prep.n_classes, 2):
            raise MetricError(
                f"metric {spec.text!r}: class {spec.class_index} does not exist ({prep.n_classes} classes)", self.run.name
            )
        return metrics.KERNELS[spec.name](prep, spec)


def pool_eligible(specs: Sequence[MetricSpec], *, cache: bool = False, observe: object = None) -> bool:
    """Whether a pass can be scored by worker processes (:mod:`ckptaudit.parallel`): no
    observer (it needs each checkpoint's predictions here), no cache to build or read, no
    custom metric (a user's function runs in this process only)."""
    return not cache and observe is None and all(s.source != "custom" for s in specs)


def score_segment(scorer: RunScorer, start: int, stop: int, *, guard: bool, read_all: bool) -> list[Outcome]:
    """Checkpoints ``start:stop`` of ``scorer.run`` scored as :func:`iter_scores` scores them
    (in a worker of :mod:`ckptaudit.parallel`), each an :class:`~ckptaudit.parallel.Outcome`;
    the validation-set check compares each read file with the segment's first one."""
    run = scorer.run
    reference = ValSetGuard(run) if guard else None
    reader = PassReader(run)  # as in iter_scores: one output buffer, the targets shared
    out: list[Outcome] = []
    for ckpt in run.checkpoints[start:stop]:
        try:
            if ckpt.metrics_only and not ckpt.has_split("val"):
                only_values, notes = scorer.score_metrics_only(ckpt)
                out.append(Outcome(only_values, notes, metrics_only=True))
                continue
            preds: Predictions | None = None
            unreadable = False
            read_note: tuple[str, ...] = ()
            if reads_predictions(ckpt, scorer.needs_predictions, guard=guard, read_all=read_all):
                try:
                    preds = read_predictions(run, ckpt, "val", reader)
                except RunFormatError as exc:
                    unreadable = True
                    read_note = (str(exc),)
            same: bool | None = None
            mark: bytes | None = None
            if preds is not None and reference is not None:
                if reference._first is None:
                    mark = fingerprint(preds.target, preds.ids)
                same = reference.problem(ckpt, preds) is None if mark is None else None
                if mark is not None:
                    reference.problem(ckpt, preds)  # the segment's reference from now on
            read = preds is not None
            if unreadable and scorer.needs_predictions:
                values: tuple[float | None, ...] = scorer.logged_values(ckpt)
                out.append(Outcome(values, read_note, unreadable=True, read=read, same=same, fingerprint=mark))
                continue
            try:
                values, notes, _ = scorer.score_prepared(ckpt, preds)
            except Exception as exc:  # raised in the parent at this checkpoint, after its guard
                out.append(Outcome((), (), read=read, same=same, fingerprint=mark, error=pack_error(exc)))
                continue
            out.append(Outcome(values, read_note + notes, unreadable=unreadable, read=read, same=same, fingerprint=mark))
        except Exception as exc:
            out.append(Outcome((), (), error=pack_error(exc)))
    return out


def reads_predictions(ckpt: Checkpoint, needs_predictions: bool, *, guard: bool, read_all: bool) -> bool:
    """Whether :func:`iter_scores` reads this checkpoint's val.npz (the read-ahead of
    :mod:`ckptaudit.parallel` reads exactly those)."""
    if ckpt.metrics_only and not ckpt.has_split("val"):
        return False
    return needs_predictions or ((read_all or guard) and ckpt.has_split("val"))


def _fetched(item: tuple[str, Any]) -> Predictions:
    """A read-ahead worker's predictions, or its read error raised here."""
    if item[0] == "ok":
        return item[1]
    raise_error(item[1])
    raise AssertionError("unreachable")


def _pooled_scores(run: Run, scorer: RunScorer, outcomes: Iterator[Outcome], *, guard: bool) -> Iterator[CheckpointScore]:
    """:func:`iter_scores` from a pool's outcomes: the same scores, notes and errors in the
    same order, with the validation-set check settled here (see :mod:`ckptaudit.parallel`)."""
    first: tuple[Checkpoint, bytes | None] | None = None
    for ckpt, outcome in zip(run.checkpoints, outcomes, strict=False):
        if outcome.metrics_only:
            yield CheckpointScore(run, ckpt, outcome.values, outcome.notes)
            continue
        if guard and outcome.read:
            if first is None:
                first = (ckpt, outcome.fingerprint)
            elif (outcome.fingerprint is not None and outcome.fingerprint != first[1]) or outcome.same is False:
                _check_again(run, first[0], ckpt)
        if outcome.error is not None:
            raise_error(outcome.error)
        yield CheckpointScore(run, ckpt, outcome.values, outcome.notes, unreadable=outcome.unreadable)


def _check_again(run: Run, first: Checkpoint, ckpt: Checkpoint) -> None:
    """The exact validation-set check of ``ckpt`` against the run's first read checkpoint,
    on both files read again (only where a worker saw a difference)."""
    check = ValSetGuard(run)
    check.check(first, read_predictions(run, first, "val"))
    check.check(ckpt, read_predictions(run, ckpt, "val"))


def iter_scores(
    run: Run,
    specs: Sequence[MetricSpec],
    *,
    guard: bool = True,
    cache: bool = False,
    observe: Observer | None = None,
    read_all: bool = False,
    pool: OutcomeSource | None = None,
    book: SweepBook | None = None,
) -> Iterator[CheckpointScore]:
    """Score a run's checkpoints in epoch order, one prediction file in memory at a time.

    With ``guard`` a change of validation targets or ids between checkpoints raises
    :class:`~ckptaudit.errors.ValSetChangedError`. With ``cache`` predictions come from the
    run's derived cache when it is current, and a missing or stale cache is rebuilt.
    ``observe`` is called for each checkpoint before its score is yielded (see
    :data:`Observer`); with ``read_all`` every val.npz is read even when the specs need
    none (the audit's statistics do). With ``pool`` (a :class:`~ckptaudit.parallel.ScorePool`
    started on this run with the same specs and flags) worker processes read and score the
    checkpoints; the scores, notes and errors are the same, in the same order. With
    ``cache``, ``book`` (the sweep's :class:`~ckptaudit.store.sweepcache.SweepBook`) serves
    the stored values first and keeps those the run's cache gives.
    """
    scorer = RunScorer(run, specs)
    scorer.wants_influence = wants_influence(observe)
    if cache and any(s.group_agg is not None or s.group_name is not None for s in scorer.specs):
        cache = False  # NOTE: the cache keeps no group columns (slices, issue 24)
    if pool is not None and not pool.read_only and pool_eligible(specs, cache=cache, observe=observe):
        yield from _pooled_scores(run, scorer, pool.outcomes(run), guard=guard)
        return
    writer = None
    key = None
    computed: list[tuple[tuple[float | None, ...], tuple[str, ...]]] = []
    if cache and scorer.needs_predictions:
        from ..store import cache as derived

        # NOTE: a user's function may change between runs: its values are never kept
        key = None if any(s.source == "custom" for s in scorer.specs) else derived.values_key(scorer.specs)
        stored = book.values(run, key) if book is not None and key is not None and observe is None else None
        index = None if stored is not None else derived.valid_index(run)
        if stored is None and index is not None and key is not None and observe is None:
            stored = derived.cached_values(run, key, index)
            if stored is not None and book is not None:
                book.record(run, key, stored, index)
        if stored is not None:
            # NOTE: values computed from this very cache by this version (issue 21: a warm
            # pass reads no output at all)
            for stored_ckpt, (stored_values, stored_notes) in zip(run.checkpoints, stored, strict=True):
                yield CheckpointScore(run, stored_ckpt, stored_values, stored_notes)
            return
        cached = None if index is None else derived.open_cache(run, index)
        if cached is not None:
            # NOTE: a cache is only ever built from a run whose validation set never changed.
            for cached_ckpt, cached_preds in cached.predictions():
                cached_values, cached_notes, cached_prep = scorer.score_prepared(cached_ckpt, cached_preds)
                if observe is not None:
                    observe(cached_ckpt, cached_preds, cached_prep, cached_values, None)
                computed.append((cached_values, cached_notes))
                yield CheckpointScore(run, cached_ckpt, cached_values, cached_notes)
            if key is not None:
                derived.store_values(run, key, computed, index)
                if book is not None:
                    book.record(run, key, computed, index)
            return
        writer = derived.CacheWriter(run)
    val_guard = ValSetGuard(run) if guard else None
    # NOTE: one checkpoint at a time, so its output may lie in a buffer the next read reuses
    # (observers copy what they keep); the run's checkpoints share one copy of the targets.
    reader = PassReader(run)
    ahead = pool.outcomes(run) if pool is not None and pool.read_only and writer is None else None
    try:
        for ckpt in run.checkpoints:
            preds: Predictions | None = None
            unreadable = False
            read_note: tuple[str, ...] = ()
            fetched = next(ahead) if ahead is not None else None
            # NOTE: a run ranked only by logged metrics needs no val.npz, but one that has
            # them is still checked for a changed validation set.
            if ckpt.metrics_only and not ckpt.has_split("val"):
                # NOTE: logged metrics only (weights deleted by rotation): scored by logged
                # metrics, listed last with a note for prediction metrics, never an error.
                only_values, notes = scorer.score_metrics_only(ckpt)
                if observe is not None:
                    observe(ckpt, None, None, only_values, None)
                if writer is not None:
                    writer.add(None)  # a run with a metrics-only checkpoint is not cached
                yield CheckpointScore(run, ckpt, only_values, notes)
                continue
            if reads_predictions(ckpt, scorer.needs_predictions, guard=val_guard is not None, read_all=read_all):
                try:
                    preds = _fetched(fetched) if fetched is not None else read_predictions(run, ckpt, "val", reader)
                except RunFormatError as exc:
                    unreadable = True
                    read_note = (str(exc),)
            if preds is not None and val_guard is not None:
                val_guard.check(ckpt, preds)
            if writer is not None:
                writer.add(preds)
            if unreadable and scorer.needs_predictions:
                values = scorer.logged_values(ckpt)
                if observe is not None:
                    observe(ckpt, None, None, values, read_note[0])
                yield CheckpointScore(run, ckpt, values, read_note, unreadable=True)
                continue
            values, notes, prep = scorer.score_prepared(ckpt, preds)
            if observe is not None:
                observe(ckpt, preds, prep, values, read_note[0] if read_note else None)
            if writer is not None:
                computed.append((values, read_note + notes))
            yield CheckpointScore(run, ckpt, values, read_note + notes, unreadable=unreadable)
    except BaseException:
        if writer is not None:
            writer.abandon()
        raise
    if writer is not None and writer.finish(key, computed) and key is not None and book is not None:
        book.record(run, key, computed, writer.index)
