"""The ``pick`` and ``unpin`` commands: choose and place the winner, and release its pin."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from .application import _emit, _finish, _report_left_out
from .options import AddressOpt, Engine, EngineOpt, JobsOpt, ModeOpt, PathsArg, RemoteCacheOpt, ResamplesOpt, SeedOpt, StrictOpt


class PickFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


def pick(
    paths: PathsArg,
    metric: Annotated[str, typer.Option("--metric", "-m", help="Metric spec to choose by.")],
    mode: ModeOpt = None,
    across: Annotated[bool, typer.Option("--across", help="One winner across every run (a sweep), not one per run.")] = False,
    link: Annotated[Path | None, typer.Option("--link", help="Place the winner as a relative symlink at DEST.")] = None,
    copy: Annotated[Path | None, typer.Option("--copy", help="Place a copy of the winner's folder at DEST.")] = None,
    fmt: Annotated[PickFormat, typer.Option("--format", "-f", help="Output format.")] = PickFormat.table,
    resamples: ResamplesOpt = 1000,
    seed: SeedOpt = 0,
    no_pin: Annotated[
        bool, typer.Option("--no-pin", help="Do not pin the placed checkpoint in its run (prune may then delete it).")
    ] = False,
    strict: StrictOpt = False,
    jobs: JobsOpt = None,
    engine: EngineOpt = Engine.local,
    address: AddressOpt = None,
    cache: RemoteCacheOpt = False,
) -> None:
    """Choose the best checkpoint (per run, or --across a sweep) and record why.

    With --link or --copy DEST the winner is placed there and DEST.ckptaudit.json records the
    run, checkpoint, metric, value, 95% interval, findings and sha256 of every weights file,
    and the checkpoint is pinned in its run (prune keeps it until `ckptaudit unpin`).
    """
    from ..store.remote import READING  # NOTE: --cache keeps the copies of runs given as URLs

    READING.keep_cache(cache)
    from ..engines import use as use_engine
    from ..errors import UsageError
    from ..picking import choose_report, place
    from ..render import render
    from ..sweep import exit_status
    from ..views import picks_document

    if link is not None and copy is not None:
        raise UsageError("give --link or --copy, not both")
    with use_engine(engine.value, address):
        report = choose_report(paths, metric, mode=mode, across=across, resamples=resamples, seed=seed, jobs=jobs)
    picks = list(report.picks)
    if link is not None or copy is not None:
        if len(picks) != 1:
            raise UsageError(f"{len(picks)} runs give {len(picks)} winners; place one with --across or name one run")
        if exit_status(report.problems, [s for s in report.skipped if s.kind == "skipped"], strict):
            # NOTE: the best checkpoint may be among what could not be read: place nothing.
            _report_left_out(report.problems, report.skipped)
            raise UsageError("nothing placed: some input could not be read (see above); fix it or name only healthy runs")
        picks = [place(picks[0], link=link, copy=copy, pin=not no_pin)]
    _emit(render(picks_document(picks), fmt.value))
    _finish(report.problems, report.skipped, strict)


def unpin(
    checkpoint: Annotated[Path, typer.Argument(help="The pinned checkpoint folder, RUN/checkpoints/NAME.", show_default=False)],
    dest: Annotated[
        Path | None, typer.Option("--dest", help="Remove only the pin written for this export (default: every pin).")
    ] = None,
) -> None:
    """Remove the pins of a checkpoint, so that prune may delete it again.

    `pick --link/--copy` pins the checkpoint it exports; prune keeps pinned checkpoints.
    Exit 2 when the checkpoint had no pin.
    """
    from ..store.pins import unpin as unpin_checkpoint

    for pin in unpin_checkpoint(checkpoint, dest=dest):
        _emit(f"unpinned {pin.checkpoint}" + (f" (exported to {pin.dest})" if pin.dest else "") + "\n")
