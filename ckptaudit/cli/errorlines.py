"""The CLI's one channel to the user: every error, note and summary is one line on stderr
(:func:`say`), every library exception maps to one line and its documented exit code
(:func:`handle_errors`: a missing optional dependency names the extra to install, a failed
file operation names the file), and results go to stdout without a traceback when the
reader goes away."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
import typer.core

from ..errors import CkptauditError, PruneInterrupted, one_line
from ..exitcodes import ExitCode
from ..store.remote import shown_text

F = TypeVar("F", bound=Callable[..., Any])


def say(message: object, prefix: str = "ckptaudit: error: ") -> None:
    """Print one message on stderr as exactly one line (see :func:`~ckptaudit.errors.one_line`):
    the one place the CLI writes its errors, notes and summaries."""
    typer.echo(prefix + one_line(shown_text(str(message))), err=True)


def _fail(message: str, code: ExitCode = ExitCode.ERROR) -> typer.Exit:
    say(message)
    return typer.Exit(int(code))


def handle_errors(func: F) -> F:
    """Turn library exceptions into one line on stderr and exit code 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return _handled(*args, **kwargs)
        finally:
            _end_remote()

    def _handled(*args: Any, **kwargs: Any) -> Any:
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
                say(line)
            raise _fail(str(exc)) from None
        except BrokenPipeError:
            raise _stdout_closed() from None
        except RecursionError:
            raise _fail("input nested too deeply to read (set CKPTAUDIT_DEBUG=1 for the traceback)") from None
        except ModuleNotFoundError as exc:
            raise _fail(missing_extra(exc)) from None
        except OSError as exc:  # a read-only run folder, a full disk: say which file and why
            raise _fail(os_error_line(exc)) from None
        except KeyboardInterrupt:
            raise _fail("interrupted", ExitCode.INTERRUPTED) from None
        except Exception as exc:  # a bug: still one line, with the way to see more
            raise _fail(f"internal error: {type(exc).__name__}: {exc} (set CKPTAUDIT_DEBUG=1 for the traceback)") from None

    return wrapper  # type: ignore[return-value]


def _end_remote() -> None:
    """The command is over: remove its temporary copies of remote runs (kept ones stay in
    the cache), so that the next command in this process lists the server again."""
    from ..store.remote import READING

    READING.reset()
    mirror = sys.modules.get("ckptaudit.store.mirror")
    if mirror is not None:
        mirror.end_command()


#: the top-level module of an optional dependency -> the extra of ckptaudit that brings it
EXTRAS = {
    "torch": "inference",
    "safetensors": "inference",
    "h5py": "inference",
    "matplotlib": "plot",
    "ray": "ray",
    "lightning": "lightning",
    "pytorch_lightning": "lightning",
    "transformers": "hf",
    "accelerate": "hf",
    "keras": "keras",
}


def missing_extra(exc: ModuleNotFoundError) -> str:
    """The line for a missing module: the extra to install when it is an optional
    dependency (``import files`` without torch), else an internal error."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return f"internal error: {type(exc).__name__}: {exc} (set CKPTAUDIT_DEBUG=1 for the traceback)"
    return f'this needs {top}, which is not installed: install ckptaudit with its [{extra}] extra (from the checkout: pip install -e ".[{extra}]")'


def os_error_line(exc: OSError) -> str:
    """``path: problem`` for a failed file operation; a write into a folder that does not
    exist names that folder (not the temporary file the atomic write was creating)."""
    target = exc.filename2 or exc.filename  # a rename or symlink fails at its destination
    if target and exc.errno == errno.ENOENT:
        parent = os.path.dirname(os.fspath(target))
        if parent and not os.path.isdir(parent):
            return f"{parent}: no such directory"
    where = f"{target}: " if target else ""
    return f"{where}{exc.strerror or exc}"


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
        sys.stdout.write(shown_text(text))
        sys.stdout.flush()
    except BrokenPipeError:
        raise _stdout_closed() from None
    except OSError as exc:
        raise _fail(f"cannot write the output: {exc.strerror or exc}") from None


def _report_left_out(problems: Any, skipped: Any) -> None:
    """One line on stderr per broken input and per skipped run or folder."""
    for problem in problems:
        say(problem)
    for item in skipped:
        if item.kind == "skipped":
            say(item, "ckptaudit: skipped: ")


def _finish(problems: Any, skipped: Any, strict: bool) -> None:
    """After the results: one line per broken input (exit 2) and per skipped run or
    folder (a note; exit 2 with --strict). The rule is the same for every command."""
    from ..sweep import exit_status

    _report_left_out(problems, skipped)
    if exit_status(problems, [s for s in skipped if s.kind == "skipped"], strict):
        raise typer.Exit(int(ExitCode.ERROR))
