"""The ``ckptaudit`` app and what every command shares: one-line errors, output, exit status.

Known errors become one line on stderr and exit code 2; set ``CKPTAUDIT_DEBUG=1`` to see
the full traceback instead. Reports go to stdout and summaries to stderr, so
``--format json > out.json`` stays clean.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer

from .. import __version__
from ..errors import CkptauditError, PruneInterrupted
from ..exitcodes import ExitCode

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


def _fail(message: str, code: ExitCode = ExitCode.ERROR) -> typer.Exit:
    typer.echo(f"ckptaudit: error: {message}", err=True)
    return typer.Exit(int(code))


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
        except PruneInterrupted as exc:
            raise _fail(str(exc), ExitCode.INTERRUPTED) from None
        except CkptauditError as exc:
            for line in getattr(exc, "details", ()):
                typer.echo(f"ckptaudit: error: {line}", err=True)
            raise _fail(str(exc)) from None
        except BrokenPipeError:
            raise _stdout_closed() from None
        except RecursionError:
            raise _fail("input nested too deeply to read (set CKPTAUDIT_DEBUG=1 for the traceback)") from None
        except OSError as exc:  # a read-only run folder, a full disk: say which file and why
            target = exc.filename2 or exc.filename  # a rename or symlink fails at its destination
            where = f"{target}: " if target else ""
            raise _fail(f"{where}{exc.strerror or exc}") from None
        except KeyboardInterrupt:
            raise _fail("interrupted", ExitCode.INTERRUPTED) from None
        except Exception as exc:  # a bug: still one line, with the way to see more
            raise _fail(f"internal error: {type(exc).__name__}: {exc} (set CKPTAUDIT_DEBUG=1 for the traceback)") from None

    return wrapper  # type: ignore[return-value]


def _stdout_closed() -> typer.Exit:
    """The reader of our output went away (``ckptaudit rank ... | head``): stop quietly,
    as a tool ended by SIGPIPE does, and keep Python from complaining at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return typer.Exit(int(ExitCode.BROKEN_PIPE))


def _emit(text: str) -> None:
    if sys.stdout is None:
        raise _fail("cannot write the output: standard output is closed")
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise _stdout_closed() from None
    except OSError as exc:
        raise _fail(f"cannot write the output: {exc.strerror or exc}") from None


def _report_left_out(problems: Any, skipped: Any) -> None:
    """One line on stderr per broken input and per skipped run or folder."""
    for problem in problems:
        typer.echo(f"ckptaudit: error: {problem}", err=True)
    for item in skipped:
        if item.kind == "skipped":
            typer.echo(f"ckptaudit: skipped: {item}", err=True)


def _finish(problems: Any, skipped: Any, strict: bool) -> None:
    """After the results: one line per broken input (exit 2) and per skipped run or
    folder (a note; exit 2 with --strict). The rule is the same for every command."""
    from ..sweep import exit_status

    _report_left_out(problems, skipped)
    if exit_status(problems, [s for s in skipped if s.kind == "skipped"], strict):
        raise typer.Exit(int(ExitCode.ERROR))


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"ckptaudit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Choose checkpoints after the fact, under any metric, and prove the choice was honest.

    Exit codes: 0 ok, 1 a gate or finding failed, 2 usage error or unreadable input.
    """
