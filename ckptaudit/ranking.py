"""``rank``: re-score every checkpoint under any metric and order them best first.

Ordering rule (documented in the README): best first by the first metric; ties go to
the next metric given, then the earlier epoch, then the earlier step, then the run and checkpoint name, so the
order never depends on file names or modification times. A checkpoint that cannot be
scored under the first metric is listed last, with the reason in ``notes``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .metrics.evaluation import CheckpointScore, iter_scores
from .metrics.spec import MetricSpec
from .store.reader import Run, Skipped

if TYPE_CHECKING:
    import pandas as pd

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class RankedRow:
    """One checkpoint in a ranking."""

    rank: int | None
    run: str
    checkpoint: str | None  #: None on the row of a run that was left out (reason in notes)
    epoch: int | None
    step: int | None
    values: dict[str, float | None]
    notes: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    interval: tuple[float, float] | None = None
    path: Path | None = None
    #: cannot be told apart from the best checkpoint of its run (None: not evaluated)
    tied_best: bool | None = None
    #: on each run's winner row with --ci: the selection-corrected estimate (WinnerEstimate.as_dict())
    expected: dict[str, object] | None = None

    def as_dict(self, specs: Sequence[MetricSpec]) -> dict[str, object]:
        """The JSON shape of a row: rank, run, checkpoint, epoch, step, one key per
        metric as typed, notes and flags (plus ci95 when intervals were asked for)."""
        out: dict[str, object] = {
            "rank": self.rank,
            "run": self.run,
            "checkpoint": self.checkpoint,
            "epoch": self.epoch,
            "step": self.step,
        }
        for spec in specs:
            out[spec.text] = self.values.get(spec.text)
        if self.interval is not None:
            out["ci95"] = list(self.interval)
        if self.tied_best is not None:
            out["tied_best"] = self.tied_best
        if self.expected is not None:
            out["expected_on_new_data"] = self.expected
        out["flags"] = list(self.flags)
        out["notes"] = list(self.notes)
        return out


@dataclass(frozen=True)
class Ranking:
    """The result of :func:`rank_checkpoints`: rows best first, every problem met
    reading the input (each also noted on its row; exit 2), and what was left out
    (``skipped``: whole runs, also listed last as rows, and folders that are not checkpoints)."""

    specs: tuple[MetricSpec, ...]
    rows: tuple[RankedRow, ...]
    problems: tuple[str, ...] = ()
    runs: tuple[Run, ...] = field(default=(), repr=False)
    #: with intervals: each run's selection statistics (ckptaudit.selection.RunSelection), by run name
    selections: dict[str, Any] = field(default_factory=dict, repr=False)
    skipped: tuple[Skipped, ...] = ()
    #: with ``ci``: what the scoring pass gathered for the intervals, so that no file is read
    #: again: each run's evaluation (ckptaudit.stats.selection.RunEvaluation) by run name, and
    #: per-checkpoint intervals of metrics without a per-row form, by (run, checkpoint)
    evaluations: dict[str, Any] = field(default_factory=dict, repr=False)
    pass_intervals: dict[tuple[str, str], tuple[float, float] | None] = field(default_factory=dict, repr=False)
    #: (resamples, seed) the intervals were computed with (None: no intervals yet)
    ci: tuple[int, int] | None = None

    @property
    def metric_names(self) -> list[str]:
        """The metric specs as the user typed them."""
        return [s.text for s in self.specs]


def order_scores(
    scores: Sequence[CheckpointScore], spec: MetricSpec, index: int = 0, tie_break: Sequence[tuple[int, MetricSpec]] = ()
) -> list[CheckpointScore]:
    """Scores best first under ``spec`` (value at ``index``), unscorable last. Equal values
    go by each ``(index, spec)`` of ``tie_break`` in turn, then to the earlier epoch."""
    sign = -1.0 if spec.maximize else 1.0

    def key(s: CheckpointScore) -> tuple:
        v = s.values[index]
        ties: list[object] = []
        for i, other in tie_break:
            w = s.values[i]
            ties += [w is None, 0.0 if w is None else (-w if other.maximize else w)]
        return (
            v is None,
            0.0 if v is None else sign * v,
            *ties,
            s.checkpoint.epoch,
            -1 if s.checkpoint.step is None else s.checkpoint.step,
            s.run.name,
            s.checkpoint.name,
        )

    return sorted(scores, key=key)


def score_runs(
    runs: Sequence[Run], specs: Sequence[MetricSpec], progress: ProgressFn | None = None, cache: bool = False
) -> list[CheckpointScore]:
    """Score every checkpoint of every run (streamed: one prediction file at a time)."""
    total = sum(len(r.checkpoints) for r in runs)
    done = 0
    out: list[CheckpointScore] = []
    for run in runs:
        for score in iter_scores(run, specs, cache=cache):
            out.append(score)
            done += 1
            if progress is not None:
                progress(done, total)
    return out


def rank_checkpoints(
    paths: Sequence[str | Path],
    metrics: Sequence[str],
    *,
    mode: str | None = None,
    top: int | None = None,
    per_run: bool = False,
    progress: ProgressFn | None = None,
    cache: bool = False,
    ci: bool = False,
    resamples: int = 1000,
    seed: int = 0,
    jobs: int | None = None,
) -> Ranking:
    """Rank every checkpoint under ``paths`` by ``metrics`` (the first one orders).

    Returns plain data; :func:`ckptaudit.rank` wraps it in a DataFrame. With ``cache``
    each run's validation outputs are read from (and kept in) a derived cache. A run that
    cannot be used is left out (``Ranking.skipped``) and listed last, the others ranked.
    With ``ci`` the rows carry :func:`with_intervals`' statistics (``resamples``, ``seed``),
    from the same pass that scores them. ``jobs``: worker processes reading and scoring
    (:mod:`ckptaudit.parallel`; None: ``CKPTAUDIT_JOBS`` or automatic), same result.
    """
    from .limits import check_resamples
    from .sweep import problems_of, score_sweep

    if ci:
        check_resamples(resamples)
    evaluations: dict[str, Any] = {}
    pass_intervals: dict[tuple[str, str], tuple[float, float] | None] = {}
    watch = _interval_observer(evaluations, pass_intervals, resamples, seed) if ci else None
    sweep = score_sweep(paths, metrics, mode=mode, progress=progress, cache=cache, observe=watch, jobs=jobs)
    specs, runs, scores = list(sweep.specs), sweep.runs, sweep.scores
    # NOTE: ties go to the next --metric given (Lightning #16504), then the earlier epoch.
    ordered = order_scores(scores, specs[0], 0, list(enumerate(specs))[1:])
    if per_run:
        best: dict[str, CheckpointScore] = {}
        for s in ordered:
            best.setdefault(s.run.name, s)
        ordered = [s for s in ordered if best[s.run.name] is s]
    rows: list[RankedRow] = []
    next_rank = 1
    for s in ordered:
        scored = s.values[0] is not None
        rows.append(
            RankedRow(
                rank=next_rank if scored else None,
                run=s.run.name,
                checkpoint=s.checkpoint.name,
                epoch=s.checkpoint.epoch,
                step=s.checkpoint.step,
                values={spec.text: v for spec, v in zip(specs, s.values, strict=True)},
                notes=s.notes,
                path=s.checkpoint.path,
            )
        )
        next_rank += scored
    for skip in sweep.skipped:
        if skip.checkpoint is None:
            values: dict[str, float | None] = {spec.text: None for spec in specs}
            note = skip.reason if skip.path == skip.run else str(skip)
            rows.append(RankedRow(None, skip.run, None, None, None, values, notes=(note,)))
    if top is not None:
        rows = rows[:top]
    problems = tuple(n for s in scores if s.unreadable for n in s.notes[:1]) + problems_of(sweep.skipped)
    ranking = Ranking(specs=tuple(specs), rows=tuple(rows), problems=problems, runs=tuple(runs), skipped=sweep.skipped)
    if ci:
        kept = {run.name for run in runs}
        ranking = replace(
            ranking,
            evaluations={name: e.finish() for name, e in evaluations.items() if name in kept},
            pass_intervals=pass_intervals,
        )
        ranking = with_intervals(ranking, resamples=resamples, seed=seed)
    return ranking


def _interval_observer(
    evaluations: dict[str, Any], intervals: dict[tuple[str, str], tuple[float, float] | None], resamples: int, seed: int
) -> Callable[[Run, Sequence[MetricSpec]], Any]:
    """Per run, an observer of the scoring pass that keeps what :func:`with_intervals`
    needs: the first metric's evaluation (compact per-row data), and for a metric without
    a per-row form, each scorable checkpoint's bootstrap interval (from the predictions
    in hand, as the pass reads them)."""
    from .stats import bootstrap, selection

    def for_run(run: Run, specs: Sequence[MetricSpec]) -> Any:
        from .metrics.evaluation import RunScorer

        spec = RunScorer(run, specs[:1]).specs[0]
        if not bootstrap.supports(spec):
            return None
        builder = selection.EvaluationBuilder(run, spec)
        evaluations[run.name] = builder
        per_row = builder.kind is not None

        def observe(ckpt: Any, preds: Any, prep: Any, values: tuple, error: str | None) -> None:
            builder.observe(ckpt, preds, prep, values, error)
            if not per_row and prep is not None and values[0] is not None:
                intervals[(run.name, ckpt.name)] = bootstrap.interval(spec, prep, resamples=resamples, seed=seed)

        return observe

    return for_run


def with_flags(ranking: Ranking, flags: dict[tuple[str, str], list[str]]) -> Ranking:
    """A copy of ``ranking`` whose rows carry audit finding codes."""
    rows = tuple(replace(r, flags=tuple(flags.get((r.run, r.checkpoint or ""), ()))) for r in ranking.rows)
    return replace(ranking, rows=rows)


def with_intervals(ranking: Ranking, *, resamples: int = 1000, seed: int = 0) -> Ranking:
    """A copy of ``ranking`` whose rows carry a 95% bootstrap interval of the first metric,
    whether each checkpoint cannot be told apart from its run's best (a model confidence
    set), and, on each run's winner row, its value expected on new data (corrected for
    having been selected). One pass per run reads each prediction file once
    (:mod:`ckptaudit.stats.selection`), or none at all when ``ranking`` was made with
    ``ci`` (its pass gathered what they need). Logged and custom metrics get none of these."""
    from .metrics.evaluation import RunScorer, prepare_predictions
    from .stats import bootstrap, selection
    from .store.reader import read_predictions

    spec = ranking.specs[0]
    if not bootstrap.supports(spec) or ranking.ci == (resamples, seed):
        return ranking
    shown = {row.run for row in ranking.rows}
    runs = [r for r in ranking.runs if r.name in shown]
    selections = selection.selections_for(runs, spec, resamples=resamples, seed=seed, evaluations=ranking.evaluations)
    by_name = {r.name: r for r in runs}
    rows = []
    for row in ranking.rows:
        run = by_name.get(row.run)
        if row.checkpoint is None or run is None:
            rows.append(row)  # a run left out of the sweep: nothing to resample
            continue
        sel = selections[row.run]
        entry = sel.entry(row.checkpoint)
        if sel.available and entry is not None:
            expected = sel.estimate.as_dict() if sel.winner == row.checkpoint and sel.estimate is not None else None
            rows.append(replace(row, interval=entry.interval, tied_best=entry.tied_best, expected=expected))
            continue
        # NOTE: metrics without a per-row form (logged, custom), and runs past the per-row
        # memory bound, keep the per-checkpoint bootstrap interval, and no selection statistics.
        ckpt = run.checkpoint(row.checkpoint)
        interval = None
        if (row.run, row.checkpoint) in ranking.pass_intervals:
            interval = ranking.pass_intervals[(row.run, row.checkpoint)]
        elif row.values.get(spec.text) is not None and run is not None and ckpt is not None:
            # NOTE: read again only when the pass kept nothing for this row: a ranking made
            # without ``ci``, or a run whose per-row data exceeded the memory bound.
            prep = prepare_predictions(run, read_predictions(run, ckpt))
            bound = RunScorer(run, [spec]).specs[0]
            interval = bootstrap.interval(bound, prep, resamples=resamples, seed=seed)
        rows.append(replace(row, interval=interval))
    return replace(ranking, rows=tuple(rows), selections=selections, ci=(resamples, seed))


def to_dataframe(ranking: Ranking) -> pd.DataFrame:
    """The ranking as a pandas DataFrame, one row per checkpoint, best first."""
    import pandas as pd

    return pd.DataFrame([r.as_dict(ranking.specs) for r in ranking.rows])
