"""The ``ckptaudit`` command line: parse options, call the library, render, exit.

No scoring, auditing or deleting logic lives here. Known errors become one line on
stderr and exit code 2; set ``CKPTAUDIT_DEBUG=1`` to see the full traceback instead.
Reports go to stdout and summaries to stderr, so ``--format json > out.json`` stays clean.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, Callable, List, Optional, TypeVar

import typer

from . import __version__
from .errors import CkptauditError
from .exitcodes import ExitCode

app = typer.Typer(
    name="ckptaudit",
    help="Choose checkpoints after the fact, under any metric, and prove the choice was honest.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str) -> typer.Exit:
    typer.echo(f"ckptaudit: error: {message}", err=True)
    return typer.Exit(int(ExitCode.ERROR))


def handle_errors(func: F) -> F:
    """Turn library exceptions into one line on stderr and exit code 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if os.environ.get("CKPTAUDIT_DEBUG"):
            return func(*args, **kwargs)
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except CkptauditError as exc:
            raise _fail(str(exc)) from None
        except KeyboardInterrupt:
            raise _fail("interrupted") from None
        except Exception as exc:  # a bug: still one line, with the way to see more
            raise _fail(f"internal error: {type(exc).__name__}: {exc} (set CKPTAUDIT_DEBUG=1 for the traceback)") from None

    return wrapper  # type: ignore[return-value]


class RankFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


# Shared option aliases, defined once.
PathsArg = Annotated[List[Path], typer.Argument(help="Runs, checkpoint folders, or folders holding runs at any depth.", show_default=False)]
MetricOpt = Annotated[List[str], typer.Option("--metric", "-m", help="Metric spec, e.g. recall, recall:class=fraud, f1:average=micro, val_loss (repeatable; the first orders). See `ckptaudit metrics`.")]
ModeOpt = Annotated[Optional[str], typer.Option("--mode", help="Direction (max or min) for logged or custom metrics whose direction is not known.")]


def _emit(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"ckptaudit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Choose checkpoints after the fact, under any metric, and prove the choice was honest.

    Exit codes: 0 ok, 1 a gate or finding failed, 2 usage error or unreadable input.
    """


@app.command()
@handle_errors
def rank(
    paths: PathsArg,
    metric: MetricOpt = [],  # noqa: B006 - typer needs a literal default
    mode: ModeOpt = None,
    fmt: Annotated[RankFormat, typer.Option("--format", "-f", help="Output format.")] = RankFormat.table,
    top: Annotated[Optional[int], typer.Option("--top", min=1, help="Show only the best N rows.")] = None,
    per_run: Annotated[bool, typer.Option("--per-run", help="Show each run's best checkpoint only.")] = False,
    ci: Annotated[bool, typer.Option("--ci", help="Add a 95% bootstrap interval for the first metric.")] = False,
    resamples: Annotated[int, typer.Option("--resamples", min=100, help="Bootstrap resamples for --ci.")] = 1000,
    flags: Annotated[bool, typer.Option("--flags/--no-flags", help="Run the audit and list each row's finding codes.")] = True,
) -> None:
    """Re-score every checkpoint under any metric and order them best first.

    Ties go to the earlier epoch. Checkpoints that cannot be scored are listed last with
    the reason; unreadable input still exits 2 after the table is printed.
    """
    from .progress import progress_bar
    from .ranking import rank_checkpoints
    from .render import render
    from .views import ranking_document

    ranking = rank_checkpoints(paths, metric, mode=mode, top=top, per_run=per_run, progress=progress_bar("scoring"))
    ranking = _decorate_ranking(ranking, ci=ci, resamples=resamples, flags=flags)
    _emit(render(ranking_document(ranking, show_ci=ci), fmt.value))
    for problem in ranking.problems:
        typer.echo(f"ckptaudit: error: {problem}", err=True)
    if ranking.problems:
        raise typer.Exit(int(ExitCode.ERROR))


def _decorate_ranking(ranking: Any, *, ci: bool, resamples: int, flags: bool) -> Any:
    """Hook for intervals and audit flags (filled in by the audit module when present)."""
    return ranking


@app.command("metrics")
def list_metrics() -> None:
    """List the built-in metrics, their direction, options and aliases."""
    from .metricspec import ALIASES, BUILTINS, OPTIONS

    from tabulate import tabulate

    rows = []
    for name, (direction, family) in BUILTINS.items():
        aliases = ", ".join(sorted(a for a, n in ALIASES.items() if n == name))
        if name == "fbeta":
            aliases = ", ".join(filter(None, [aliases, "f2, f0.5, f<beta>"]))
        rows.append([name, direction, family, ", ".join(sorted(OPTIONS[name])) or "-", aliases or "-"])
    _emit(tabulate(rows, headers=["metric", "best", "needs", "options", "aliases"], tablefmt="simple") + "\n")
    _emit("\nAlso: any name training logged in meta.json (val_loss), and MODULE:FUNCTION:mode=max for your own.\n")


def run() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    run()
