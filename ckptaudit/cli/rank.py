"""The ``rank`` command: re-score every checkpoint and order them best first."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from .application import _emit, _finish
from .options import AddressOpt, Engine, EngineOpt, JobsOpt, MetricOpt, ModeOpt, PathsArg, StrictOpt


class RankFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


def rank(
    paths: PathsArg,
    metric: MetricOpt = [],  # noqa: B006 - typer needs a literal default
    mode: ModeOpt = None,
    fmt: Annotated[RankFormat, typer.Option("--format", "-f", help="Output format.")] = RankFormat.table,
    top: Annotated[int | None, typer.Option("--top", min=1, help="Show only the best N rows.")] = None,
    per_run: Annotated[bool, typer.Option("--per-run", help="Show each run's best checkpoint only.")] = False,
    ci: Annotated[
        bool,
        typer.Option(
            "--ci",
            help="Add a 95% bootstrap interval for the first metric, mark the checkpoints that cannot be told apart "
            "from the best, and give each run's winner its value expected on new data.",
        ),
    ] = False,
    resamples: Annotated[int, typer.Option("--resamples", min=100, help="Bootstrap resamples for --ci.")] = 1000,
    flags: Annotated[
        bool, typer.Option("--flags", help="Audit the runs (without the bootstrap) and list each row's finding codes.")
    ] = False,
    cache: Annotated[
        bool,
        typer.Option(
            "--cache",
            help="Read (and keep current) a derived cache of validation outputs in RUN/.ckptaudit-cache; "
            "runs given as URLs are kept in a local cache too (docs/storage.md).",
        ),
    ] = False,
    strict: StrictOpt = False,
    jobs: JobsOpt = None,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help="'group': each checkpoint's (first) metric on every group of the val.npz group column, and the "
            "worst group, with 95% intervals (docs/slices.md).",
        ),
    ] = None,
    engine: EngineOpt = Engine.local,
    address: AddressOpt = None,
) -> None:
    """Re-score every checkpoint under any metric and order them best first.

    Ties go to the earlier epoch. Checkpoints that cannot be scored are listed last with
    the reason; unreadable input still exits 2 after the table is printed.
    """
    from ..engines import use as use_engine
    from ..progress import progress_bar
    from ..ranking import rank_checkpoints
    from ..render import render
    from ..store.remote import READING  # NOTE: runs given as URLs (docs/storage.md): what to fetch, what to keep
    from ..views import ranking_document

    READING.keep_cache(cache)
    if not (flags or ci):
        READING.leave_out("train.npz")
    if by is not None:  # NOTE: slices (issue 24): ckptaudit.slices
        from ..errors import UsageError
        from ..slices import rank_by_group, slice_document

        if by != "group" or not metric:
            raise UsageError("--by takes 'group' and needs --metric")
        rows = rank_by_group(paths, metric[0], mode=mode, resamples=resamples)
        _emit(render(slice_document(rows, metric[0]), fmt.value))
        return
    with use_engine(engine.value, address):
        ranking = rank_checkpoints(
            paths,
            metric,
            mode=mode,
            top=top,
            per_run=per_run,
            progress=progress_bar("scoring"),
            cache=cache,
            ci=ci,
            resamples=resamples,
            jobs=jobs,
            flags=flags,
        )
    _emit(render(ranking_document(ranking, show_ci=ci, show_flags=flags), fmt.value))
    _finish(ranking.problems, ranking.skipped, strict)
