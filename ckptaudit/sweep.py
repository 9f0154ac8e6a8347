"""Sweeps survive one bad run: read, bind and score every run, leaving out the broken ones.

A folder of runs is never all-or-nothing. Each run that cannot be used becomes a
:class:`~ckptaudit.runs.Skipped` record with its reason, and the others are still ranked,
audited or picked. Two kinds of leaving out, one exit-code rule for every command
(README, "Sweeps"):

- ``error``: something is broken (an unreadable run.json or meta.json, a changed
  validation set, a custom metric that raises). The results for the rest are printed,
  then the command exits 2.
- ``skipped``: nothing is wrong, there is just nothing to score (a run with no checkpoint
  yet, a run whose task the metric does not apply to, a folder under checkpoints/ that is
  not a checkpoint). A note on stderr; the exit code is unchanged unless ``--strict``.

When nothing at all is left, the command fails with every reason (:class:`NothingLeftError`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CkptauditError, MetricError, RunFormatError
from .metrics.evaluation import CheckpointScore, Observer, RunScorer, iter_scores, parse_metrics, pool_eligible
from .metrics.spec import MetricSpec
from .store.reader import Run, Skipped, discover_sweep

if TYPE_CHECKING:
    from .parallel import ScorePool
    from .store.sweepcache import SweepBook

ProgressFn = Callable[[int, int], None]


class NothingLeftError(RunFormatError):
    """Every run given was left out: there is nothing to rank, audit or pick.

    With one run left out, the message is its reason; with several, ``details`` holds
    one line per run and the message says how many.
    """

    def __init__(self, skipped: Sequence[Skipped], problems: Sequence[str] = ()) -> None:
        self.skipped = tuple(skipped)
        runs = [s for s in self.skipped if s.checkpoint is None] or list(self.skipped)
        if len(runs) == 1:
            super().__init__(runs[0].reason, runs[0].path)
            self.details: tuple[str, ...] = tuple(problems)
        else:
            super().__init__(f"none of the {len(runs)} runs could be used (reasons above)")
            self.details = tuple(problems) + tuple(str(s) for s in runs)


def problems_of(skipped: Sequence[Skipped]) -> tuple[str, ...]:
    """The broken inputs among ``skipped`` (kind ``error``), one line each."""
    return tuple(str(s) for s in skipped if s.kind == "error")


def applicable(runs: Sequence[Run], specs: Sequence[MetricSpec]) -> tuple[list[Run], list[Skipped]]:
    """Split ``runs`` into those every spec applies to and the rest (with the reason).

    A metric that fits no run of this kind (``recall`` on a regression run, a class the
    run does not have) leaves that run out; an error that is not about one run (a custom
    metric that cannot be imported) is raised as before.
    """
    fit: list[Run] = []
    left_out: list[Skipped] = []
    for run in runs:
        try:
            RunScorer(run, specs)
        except MetricError as exc:
            if exc.path != run.name:
                raise
            left_out.append(Skipped(run.name, run.name, exc.problem, "skipped"))
            continue
        fit.append(run)
    return fit, left_out


@dataclass(frozen=True)
class SweepScores:
    """Every readable checkpoint's scores, the runs they came from and what was left out."""

    specs: tuple[MetricSpec, ...]
    runs: tuple[Run, ...]
    scores: tuple[CheckpointScore, ...]
    skipped: tuple[Skipped, ...]


def score_sweep(
    paths: Sequence[str | Path],
    metrics: Sequence[str],
    *,
    mode: str | None = None,
    progress: ProgressFn | None = None,
    cache: bool = False,
    observe: Callable[[Run, Sequence[MetricSpec]], Observer | None] | None = None,
    jobs: int | None = None,
) -> SweepScores:
    """Score every checkpoint of every usable run under ``paths``, streamed one prediction
    file at a time; a run that fails part-way (its validation set changed, a custom metric
    raised) is left out whole, with the reason. ``observe(run, specs)`` may return an
    :data:`~ckptaudit.metrics.evaluation.Observer` of the run's pass (what a verb needs
    besides the scores, gathered while each file is read once). ``jobs``: worker processes
    for a pass without observers or cache (:func:`ckptaudit.parallel.resolve_jobs`; None:
    ``CKPTAUDIT_JOBS`` or automatic); the result is the same whatever the number."""
    # NOTE: a sweep's metadata and stored values in one file (issue 21: a warm pass opened
    # nine small files a run)
    book = None
    if cache:
        from .store.sweepcache import open_book

        book = open_book(paths)
    try:
        return _score_sweep(paths, metrics, mode, progress, cache, observe, jobs, book)
    finally:
        if book is not None:
            book.save()


def _score_sweep(
    paths: Sequence[str | Path],
    metrics: Sequence[str],
    mode: str | None,
    progress: ProgressFn | None,
    cache: bool,
    observe: Callable[[Run, Sequence[MetricSpec]], Observer | None] | None,
    jobs: int | None,
    book: SweepBook | None,
) -> SweepScores:
    runs, skipped = discover_sweep(paths, book)
    if not runs:
        raise NothingLeftError(skipped)
    specs = parse_metrics(metrics, runs, mode)
    runs, not_applicable = applicable(runs, specs)
    skipped += not_applicable
    if not runs:
        raise NothingLeftError(skipped)
    total = sum(len(r.checkpoints) for r in runs)
    pool = None
    if not cache:
        # NOTE: with observers (or a custom metric) the workers only read the files ahead
        # of this process, which scores them and feeds the observers as before.
        scoring = observe is None and pool_eligible(specs)
        pool = start_pool(runs, [specs] * len(runs), jobs, read_only=not scoring)
    try:
        return _score_runs(runs, specs, skipped, progress, cache, observe, pool, total, book)
    finally:
        if pool is not None:
            pool.close()


def start_pool(
    runs: Sequence[Run],
    specs: Sequence[Sequence[MetricSpec]],
    jobs: int | None,
    *,
    guard: bool = True,
    read_all: bool = False,
    read_only: bool = False,
) -> ScorePool | None:
    """A :class:`~ckptaudit.parallel.ScorePool` over ``runs`` when more than one worker is
    asked for or pays (:func:`~ckptaudit.parallel.resolve_jobs`), else None. A read-ahead
    pool (``read_only``) only for small prediction files (they travel back pickled). Under
    ``--engine ray`` (:mod:`ckptaudit.engines`) a :class:`~ckptaudit.engines.ray_pool.RayPool`
    instead, always."""
    from .engines import current
    from .parallel import READ_AHEAD_MAX_FILE, ScorePool, requested_jobs, resolve_jobs

    if current().ray:  # NOTE: Ray tasks do the workers' work on the cluster, whatever the size (--jobs is ignored)
        from .engines.ray_pool import RayPool

        has_work = any(len(r.checkpoints) for r in runs)
        return RayPool(runs, specs, guard=guard, read_all=read_all, read_only=read_only) if has_work else None  # type: ignore[return-value]
    # NOTE: a read-ahead only on request (--jobs, CKPTAUDIT_JOBS): where observers feed the
    # selection statistics, they, not the reads, take the time (HPO sweep, rank --ci: 40 s
    # of CPU in this process either way), so starting workers did not pay.
    if read_only and requested_jobs(jobs) is None:
        return None
    total = sum(len(r.checkpoints) for r in runs)
    one = _one_file_bytes(runs)
    workers = resolve_jobs(jobs, total, one * total)
    if workers < 2 or (read_only and one > READ_AHEAD_MAX_FILE):
        return None
    return ScorePool(runs, specs, workers, guard=guard, read_all=read_all, read_only=read_only)


def _one_file_bytes(runs: Sequence[Run]) -> int:
    """One prediction file's size, from the first one found (one stat)."""
    import os

    for run in runs[:1]:
        for ckpt in run.checkpoints[:1]:
            try:
                return os.stat(ckpt.split_file("val")).st_size
            except OSError:
                return 0
    return 0


def _score_runs(
    runs: Sequence[Run],
    specs: Sequence[MetricSpec],
    skipped: list[Skipped],
    progress: ProgressFn | None,
    cache: bool,
    observe: Callable[[Run, Sequence[MetricSpec]], Observer | None] | None,
    pool: ScorePool | None,
    total: int,
    book: SweepBook | None = None,
) -> SweepScores:
    done = 0
    scored_runs: list[Run] = []
    scores: list[CheckpointScore] = []
    for run in runs:
        run_scores: list[CheckpointScore] = []
        try:
            watcher = None if observe is None else observe(run, specs)
            for score in iter_scores(run, specs, cache=cache, observe=watcher, pool=pool, book=book):
                run_scores.append(score)
                done += 1
                if progress is not None:
                    progress(done, total)
        except CkptauditError as exc:
            skipped.append(Skipped(run.name, exc.path or run.name, exc.problem, "error"))
            done += len(run.checkpoints) - len(run_scores)
            continue
        scored_runs.append(run)
        scores.extend(run_scores)
    if not scored_runs:
        raise NothingLeftError(skipped)
    return SweepScores(tuple(specs), tuple(scored_runs), tuple(scores), tuple(skipped))


def exit_status(problems: Sequence[str], skipped: Sequence[Skipped], strict: bool) -> bool:
    """True when the command must exit 2: an input was broken, or ``strict`` and
    anything was left out."""
    return bool(problems) or strict and bool(skipped)
