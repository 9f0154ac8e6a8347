"""``rank``: re-score every checkpoint under any metric and order them best first.

Ordering rule (documented in the README): best first by the first metric; ties go to
the earlier epoch, then the earlier step, then the run and checkpoint name, so the
order never depends on file names or modification times. A checkpoint that cannot be
scored under the first metric is listed last, with the reason in ``notes``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .metricspec import MetricSpec
from .runs import Run, Skipped
from .scoring import CheckpointScore, iter_scores

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
    skipped: tuple[Skipped, ...] = ()

    @property
    def metric_names(self) -> list[str]:
        """The metric specs as the user typed them."""
        return [s.text for s in self.specs]


def order_scores(scores: Sequence[CheckpointScore], spec: MetricSpec, index: int = 0) -> list[CheckpointScore]:
    """Scores best first under ``spec`` (value at ``index``), unscorable last."""
    sign = -1.0 if spec.maximize else 1.0

    def key(s: CheckpointScore) -> tuple:
        v = s.values[index]
        return (
            v is None,
            0.0 if v is None else sign * v,
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
) -> Ranking:
    """Rank every checkpoint under ``paths`` by ``metrics`` (the first one orders).

    Returns plain data; :func:`ckptaudit.rank` wraps it in a DataFrame. With ``cache``
    each run's validation outputs are read from (and kept in) a derived cache. A run that
    cannot be used is left out (``Ranking.skipped``) and listed last, the others ranked.
    """
    from .sweep import problems_of, score_sweep

    sweep = score_sweep(paths, metrics, mode=mode, progress=progress, cache=cache)
    specs, runs, scores = list(sweep.specs), sweep.runs, sweep.scores
    ordered = order_scores(scores, specs[0])
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
    return Ranking(specs=tuple(specs), rows=tuple(rows), problems=problems, runs=tuple(runs), skipped=sweep.skipped)


def with_flags(ranking: Ranking, flags: dict[tuple[str, str], list[str]]) -> Ranking:
    """A copy of ``ranking`` whose rows carry audit finding codes."""
    rows = tuple(replace(r, flags=tuple(flags.get((r.run, r.checkpoint or ""), ()))) for r in ranking.rows)
    return replace(ranking, rows=rows)


def with_intervals(ranking: Ranking, *, resamples: int = 1000, seed: int = 0) -> Ranking:
    """A copy of ``ranking`` whose rows carry a 95% bootstrap interval of the first metric
    (built-in metrics only; reads each checkpoint's predictions again, one at a time)."""
    from . import bootstrap
    from .runs import read_predictions
    from .scoring import RunScorer, prepare_predictions

    spec = ranking.specs[0]
    if not bootstrap.supports(spec):
        return ranking
    runs = {r.name: r for r in ranking.runs}
    bound = {name: RunScorer(run, [spec]).specs[0] for name, run in runs.items()}
    rows = []
    for row in ranking.rows:
        run = runs.get(row.run)
        ckpt = None if run is None or row.checkpoint is None else run.checkpoint(row.checkpoint)
        interval = None
        if row.values.get(spec.text) is not None and run is not None and ckpt is not None:
            prep = prepare_predictions(run, read_predictions(run, ckpt))
            interval = bootstrap.interval(bound[row.run], prep, resamples=resamples, seed=seed)
        rows.append(replace(row, interval=interval))
    return replace(ranking, rows=tuple(rows))


def to_dataframe(ranking: Ranking) -> pd.DataFrame:
    """The ranking as a pandas DataFrame, one row per checkpoint, best first."""
    import pandas as pd

    return pd.DataFrame([r.as_dict(ranking.specs) for r in ranking.rows])
