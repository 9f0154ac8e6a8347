"""The ``ckptaudit`` app and what every command shares: one-line errors, output, exit status.

Known errors become one line on stderr and exit code 2; set ``CKPTAUDIT_DEBUG=1`` to see
the full traceback instead. Reports go to stdout and summaries to stderr, so
``--format json > out.json`` stays clean.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable, Iterator, MutableMapping
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args

import typer
import typer.core

from .. import __version__
from ..errors import CkptauditError, PruneInterrupted, one_line
from ..exitcodes import ExitCode
from .fasthelp import DESCRIPTION
from .registry import COMMANDS


def load_command(name: str) -> Any:
    """The click command of ``name``: its module imported and its function converted by
    typer, as ``app.command(name)`` would have at start-up."""
    module_name, function, wrapped, _ = COMMANDS[name]
    module = importlib.import_module(f"{__package__}.{module_name}")
    func = getattr(module, function)
    one = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    one.command(name)(handle_errors(func) if wrapped else func)
    command = typer.main.get_command(one)
    _plain_command(command)
    return command


_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,15})?")


class _NotPlain(Exception):
    """A value the plain coercion leaves to typer's own (valid or not, typer words the error)."""


def _in_range(value: float, info: Any) -> float:
    if info.clamp or (info.min is not None and value < info.min) or (info.max is not None and value > info.max):
        raise _NotPlain
    return value


def _plain_value(annotation: Any, info: Any, value: Any) -> Any:
    """``value`` coerced to ``annotation`` where that is plain (a name, a number in range, a
    choice spelt exactly, an existing readable or missing path); else :class:`_NotPlain`."""
    if annotation is str and isinstance(value, str):
        return value
    if annotation is bool and isinstance(value, bool):
        return value
    if annotation is int:
        if type(value) is int:
            return _in_range(value, info)
        if isinstance(value, str) and _INT.fullmatch(value):
            return _in_range(int(value), info)
    elif annotation is float:
        if type(value) is float:
            return _in_range(value, info)
        if isinstance(value, str) and _FLOAT.fullmatch(value):
            return _in_range(float(value), info)
    elif isinstance(annotation, type) and issubclass(annotation, Enum) and info.case_sensitive:
        if isinstance(value, annotation):
            return value
        for member in annotation:
            if isinstance(value, str) and member.value == value:
                return member
    elif annotation is Path and isinstance(value, str) and value not in ("", "-"):
        plain = not (info.exists or info.writable or info.resolve_path or info.allow_dash or info.path_type is not None)
        if plain and info.file_okay and info.dir_okay:
            try:
                os.stat(value)
            except OSError:
                return Path(value)
            if not info.readable or os.access(value, os.R_OK):
                return Path(value)
    raise _NotPlain


class _PlainCoercion:
    """A parameter's coercion without typer's per-call pydantic models (importing pydantic
    and building one validator per parameter cost more than the rest of a small ``rank``).
    Plain values (see :func:`_plain_value`) are converted here; any other value goes to
    typer's own coercion, built on first need, so results and error messages are typer's.
    tests/test_cli_startup.py checks both give the same values."""

    def __init__(self, param: Any) -> None:
        self.param = param
        self.fallback: Any = None

    def _typer(self) -> Any:
        if self.fallback is None:
            from typer._coercion import build_runtime_param

            self.fallback = build_runtime_param(self.param.type_descriptor)
        return self.fallback

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        descriptor = param.type_descriptor
        if value is None:
            return () if param.multiple or param.nargs == -1 else None  # NOTE: as typer's RuntimeParam.coerce
        try:
            if value is not None and not isinstance(value, str) and descriptor.is_list and isinstance(value, (list, tuple)):
                (item,) = get_args(descriptor.annotation)
                return [_plain_value(item, descriptor.parameter_info, v) for v in value]
            if value is not None and not descriptor.is_list:
                return _plain_value(descriptor.annotation, descriptor.parameter_info, value)
        except (_NotPlain, ValueError):
            pass
        return self._typer().coerce(value, param=param, ctx=ctx)


def _plain_command(command: Any) -> None:
    """:func:`_plain_coercion` for each parameter of ``command``, its help option included
    (which click creates on first use)."""
    for param in command.params:
        _plain_coercion(param)
    original = command.get_help_option

    def get_help_option(ctx: Any) -> Any:
        option = original(ctx)
        if option is not None:
            _plain_coercion(option)
        return option

    command.get_help_option = get_help_option


def _plain_coercion(param: Any) -> None:
    """Give ``param`` a :class:`_PlainCoercion` where typer's parameter has the shape this
    was written for (typer 0.2x: ``type_descriptor`` and a lazy ``_runtime_param``)."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None or getattr(param, "_runtime_param", False) is not None:
        return
    if descriptor.file_annotation is not None or descriptor.is_tuple or descriptor.parameter_info.parser is not None:
        return
    param._runtime_param = _PlainCoercion(param)


class _Commands(MutableMapping[str, Any]):
    """The app's commands by name, each imported and converted the first time it is looked
    up: ``ckptaudit rank`` imports the rank command's module only (start-up time)."""

    def __init__(self) -> None:
        self._loaded: dict[str, Any] = {}
        self._order: list[str] = list(COMMANDS)

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            if name not in COMMANDS:
                raise KeyError(name)
            self._loaded[name] = load_command(name)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        if name not in self._order:
            self._order.append(name)
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        self._order.remove(name)
        self._loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, name: object) -> bool:
        return name in self._order

    def listing(self, name: str) -> Any:
        """What ``--help`` lists for ``name``: the command if already loaded, else a stand-in
        carrying the first paragraph of its help."""
        if name in self._loaded or name not in COMMANDS:
            return self[name]
        return typer.core.TyperCommand(name, help=COMMANDS[name][3], rich_markup_mode=None)


class LazyGroup(typer.core.TyperGroup):
    """The top-level group, whose commands load on first use (:class:`_Commands`)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        _plain_command(self)
        commands = _Commands()
        for name, command in self.commands.items():
            commands[name] = command
        self.commands = commands

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """As typer's, from each command's :meth:`_Commands.listing` (nothing imported)."""
        assert isinstance(self.commands, _Commands)
        commands = [(name, self.commands.listing(name)) for name in self.list_commands(ctx)]
        commands = [(name, cmd) for name, cmd in commands if cmd is not None and not cmd.hidden]
        if commands:
            limit = formatter.width - 6 - max(len(name) for name, _ in commands)
            rows = [(name, cmd.get_short_help_str(limit)) for name, cmd in commands]
            with formatter.section("Commands"):
                formatter.write_dl(rows)


app = typer.Typer(
    name="ckptaudit",
    cls=LazyGroup,
    help=DESCRIPTION,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


F = TypeVar("F", bound=Callable[..., Any])


def say(message: object, prefix: str = "ckptaudit: error: ") -> None:
    """Print one message on stderr as exactly one line (see :func:`~ckptaudit.errors.one_line`):
    the one place the CLI writes its errors, notes and summaries."""
    typer.echo(prefix + one_line(message), err=True)


def _fail(message: str, code: ExitCode = ExitCode.ERROR) -> typer.Exit:
    say(message)
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
                say(line)
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
