"""The ``replay`` command: what stopping and retention rules would have done on recorded runs."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from .application import _emit, _finish
from .options import ModeOpt, PathsArg, ResamplesOpt, SeedOpt, StrictOpt


class ReplayFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


def replay(
    paths: PathsArg,
    rule: Annotated[
        list[str],
        typer.Option(
            "--rule",
            "-r",
            help="A rule to replay (repeatable), e.g. patience=3,min_delta=0.001; gl=5; save_top_k=2; "
            "hf:save_total_limit=2,load_best_model_at_end; keras:save_best_only (docs/replay.md).",
        ),
    ],
    metric: Annotated[str, typer.Option("--metric", "-m", help="The target metric, re-scored from the predictions.")],
    mode: ModeOpt = None,
    sweep: Annotated[bool, typer.Option("--sweep", help="Over many runs: which rule loses least on average.")] = False,
    fmt: Annotated[ReplayFormat, typer.Option("--format", "-f", help="Output format.")] = ReplayFormat.table,
    resamples: ResamplesOpt = 1000,
    seed: SeedOpt = 0,
    strict: StrictOpt = False,
) -> None:
    """Replay early-stopping and retention rules on recorded runs: stop, kept, regret.

    One row per rule and run: the epoch it would have stopped at, what it would have kept and
    deleted, the regret of the checkpoint it ships against the post-hoc best under --metric
    (with a 95% interval that re-selects the best in every resample) and the epochs (and
    logged wall time) it would have saved. With --sweep, one row per rule: its mean regret
    over the runs, with an interval over runs. A run that cannot be replayed is reported and
    the others go on (exit 2 after the table).
    """
    from ..render import render
    from ..replay import replay as replay_runs
    from ..replay.sweep import summarise
    from ..replay.views import replay_document, sweep_document

    report = replay_runs(paths, rule, metric, mode=mode, resamples=resamples, seed=seed)
    if sweep:
        doc = sweep_document(report, summarise(report.results, report.rules, seed=seed))
    else:
        doc = replay_document(report)
    _emit(render(doc, fmt.value))
    _finish(report.problems, report.skipped, strict)
