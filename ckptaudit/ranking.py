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
from .verdict.order import order_scores as order_scores  # the one ordering rule, re-exported

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
    #: (resamples, seed) the intervals were computed with (None: no intervals yet)
    ci: tuple[int, int] | None = None
    #: each run's verdict (ckptaudit.verdict.Verdict) by run name: what the rows were read from
    verdicts: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def metric_names(self) -> list[str]:
        """The metric specs as the user typed them."""
        return [s.text for s in self.specs]


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
    flags: bool = False,
) -> Ranking:
    """Rank every checkpoint under ``paths`` by ``metrics`` (the first one orders).

    Returns plain data; :func:`ckptaudit.rank` wraps it in a DataFrame. With ``cache``
    each run's validation outputs are read from (and kept in) a derived cache. A run that
    cannot be used is left out (``Ranking.skipped``) and listed last, the others ranked.
    With ``ci`` the rows carry each run's verdict statistics of the first metric (interval,
    tie set, winner estimate: :mod:`ckptaudit.verdict`), from the same pass that scores
    them. ``jobs``: worker processes reading and scoring (:mod:`ckptaudit.parallel`; None:
    ``CKPTAUDIT_JOBS`` or automatic), same result. With ``flags`` each row carries the
    codes of the audit findings (without the bootstrap) that concern it, from the same pass.
    """
    from .limits import check_resamples
    from .verdict.build import Options, evaluate_paths

    if ci:
        check_resamples(resamples)

    audit_options = None
    if flags:
        from .auditing import AuditOptions

        audit_options = AuditOptions(metric=metrics[0] if metrics else None, mode=mode, noise=False)
    options = Options(
        statistics=ci, all_metrics=False, audit=flags, resamples=resamples, seed=seed, mode=mode, audit_options=audit_options
    )
    judged = evaluate_paths(paths, metrics, options, progress=progress, cache=cache, jobs=jobs)
    ranking = ranking_of(judged, top=top, per_run=per_run, ci=(resamples, seed) if ci else None)
    return with_flags(ranking, finding_codes(judged.verdicts)) if flags else ranking


def finding_codes(verdicts: Sequence[Any]) -> dict[tuple[str, str], list[str]]:
    """(run, checkpoint) -> the codes of the verdicts' findings that concern it (a run-wide
    finding concerns every checkpoint of its run)."""
    codes: dict[tuple[str, str], list[str]] = {}
    for verdict in verdicts:
        if verdict.audit_error is not None:
            raise verdict.audit_error
        for finding in verdict.findings:
            names = [finding.checkpoint] if finding.checkpoint else [c.name for c in verdict.run.checkpoints]
            for name in names:
                codes.setdefault((verdict.run.name, name), []).append(finding.code)
    return codes


def ranking_of(judged: Any, *, top: int | None = None, per_run: bool = False, ci: tuple[int, int] | None = None) -> Ranking:
    """The ranking view of a sweep's verdicts (:class:`~ckptaudit.verdict.Verdicts`):
    rows best first, with the first metric's interval, tie membership and (on each run's
    winner) estimate read from the verdicts when they hold them."""
    specs = list(judged.specs)
    scores = judged.scores()
    by_run = {v.run.name: v for v in judged.verdicts}
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
        row = RankedRow(
            rank=next_rank if scored else None,
            run=s.run.name,
            checkpoint=s.checkpoint.name,
            epoch=s.checkpoint.epoch,
            step=s.checkpoint.step,
            values={spec.text: v for spec, v in zip(specs, s.values, strict=True)},
            notes=s.notes,
            path=s.checkpoint.path,
        )
        if ci is not None:
            row = _with_statistics(row, by_run[s.run.name])
        rows.append(row)
        next_rank += scored
    for skip in judged.skipped:
        if skip.checkpoint is None:
            values: dict[str, float | None] = {spec.text: None for spec in specs}
            note = skip.reason if skip.path == skip.run else str(skip)
            rows.append(RankedRow(None, skip.run, None, None, None, values, notes=(note,)))
    if top is not None:
        rows = rows[:top]
    problems = tuple(n for s in scores if s.unreadable for n in s.notes[:1])
    from .sweep import problems_of

    problems += problems_of(judged.skipped)
    selections = {}
    if ci is not None:
        shown = {r.run for r in rows}
        selections = {v.run.name: v.primary.selection for v in judged.verdicts if v.run.name in shown and v.primary.selection}
    return Ranking(
        specs=tuple(specs),
        rows=tuple(rows),
        problems=problems,
        runs=judged.runs,
        selections=selections,
        skipped=judged.skipped,
        ci=ci,
        verdicts=by_run,
    )


def _with_statistics(row: RankedRow, verdict: Any) -> RankedRow:
    """``row`` with its checkpoint's interval, tie membership and (the run's winner) estimate."""
    m = verdict.primary
    i = verdict.index(row.checkpoint)
    sel = m.selection
    expected = None
    if m.available and sel.winner == row.checkpoint and sel.estimate is not None:
        expected = sel.estimate.as_dict()
    return replace(
        row, interval=None if i is None else m.interval_of(i), tied_best=m.tied_of(row.checkpoint or ""), expected=expected
    )


def with_flags(ranking: Ranking, flags: dict[tuple[str, str], list[str]]) -> Ranking:
    """A copy of ``ranking`` whose rows carry audit finding codes."""
    rows = tuple(replace(r, flags=tuple(flags.get((r.run, r.checkpoint or ""), ()))) for r in ranking.rows)
    return replace(ranking, rows=rows)


def with_intervals(ranking: Ranking, *, resamples: int = 1000, seed: int = 0) -> Ranking:
    """A copy of ``ranking`` whose rows carry the first metric's verdict statistics (see
    :func:`rank_checkpoints` with ``ci``; nothing is computed again when ``ranking`` was made
    with ``ci`` and the same resamples and seed). Logged and custom metrics get none."""
    from .stats import bootstrap
    from .verdict.build import Options, evaluate_run

    spec = ranking.specs[0]
    if not bootstrap.supports(spec) or ranking.ci == (resamples, seed):
        return ranking
    shown = {row.run for row in ranking.rows}
    options = Options(statistics=True, all_metrics=False, audit=False, resamples=resamples, seed=seed, guard=False)
    verdicts = {r.name: evaluate_run(r, ranking.specs[:1], options) for r in ranking.runs if r.name in shown}
    rows = tuple(
        _with_statistics(row, verdicts[row.run]) if row.checkpoint is not None and row.run in verdicts else row
        for row in ranking.rows
    )
    selections = {name: v.primary.selection for name, v in verdicts.items() if v.primary.selection is not None}
    return replace(ranking, rows=rows, selections=selections, ci=(resamples, seed), verdicts=verdicts)


def to_dataframe(ranking: Ranking) -> pd.DataFrame:
    """The ranking as a pandas DataFrame, one row per checkpoint, best first."""
    import pandas as pd

    return pd.DataFrame([r.as_dict(ranking.specs) for r in ranking.rows])
