"""The ``prune`` command: garbage-collect the checkpoints no keep-rule protects."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from .application import _emit
from .options import MetricOpt, ModeOpt, PathsArg


class PruneFormat(str, Enum):
    table = "table"
    json = "json"


def prune(
    paths: PathsArg,
    metric: MetricOpt = [],  # noqa: B006
    keep: Annotated[int, typer.Option("--keep", "-k", min=0, help="Keep the top K checkpoints by each --metric.")] = 3,
    keep_last: Annotated[int, typer.Option("--keep-last", min=0, help="Keep the newest N checkpoints (by epoch).")] = 1,
    keep_every: Annotated[
        int | None, typer.Option("--keep-every", min=1, help="Keep checkpoints whose epoch is divisible by N.")
    ] = None,
    mode: ModeOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Really delete (default: dry run).")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Only show the plan (the default; accepted for habit).")
    ] = False,
    trash: Annotated[
        Path | None, typer.Option("--trash", help="Move doomed checkpoints into DIR instead of deleting them.")
    ] = None,
    whole: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Delete doomed checkpoints whole (predictions too) instead of their weights only; "
            "what they scored is recorded in the run, but the selection statistics then change.",
        ),
    ] = False,
    resume_only: Annotated[bool, typer.Option("--resume", help="Only finish what an interrupted prune left in trash.")] = False,
    fmt: Annotated[PruneFormat, typer.Option("--format", "-f", help="Output format.")] = PruneFormat.table,
) -> None:
    """Garbage-collect checkpoints no keep-rule protects (dry run unless --yes).

    Always kept: the top K by each --metric, the newest --keep-last, every --keep-every,
    run.json 'chosen', pinned checkpoints (pick --link/--copy), checkpoints a symbolic link
    in the run points at, checkpoints named by a provenance file in the run, and anything
    that cannot be scored. By default a doomed checkpoint loses its weights only: its
    predictions and meta.json stay, so every statistic still counts it; --all deletes the
    folder. PATH may be RUN/checkpoints/NAME: only that checkpoint may go.
    Exit 130 when interrupted (the message says what is left and how to resume).
    """
    from ..errors import UsageError
    from ..pruning import prune as prune_runs
    from ..pruning import resume
    from ..render import render
    from ..views import prune_document

    if dry_run and (yes or resume_only):
        raise UsageError("--dry-run contradicts --yes and --resume")
    if resume_only:
        plans = resume(paths, trash_dir=trash)
    else:
        plans = prune_runs(
            paths, metric, keep=keep, keep_last=keep_last, keep_every=keep_every, mode=mode, yes=yes, trash_dir=trash, whole=whole
        )
    _emit(render(prune_document(plans), fmt.value))
