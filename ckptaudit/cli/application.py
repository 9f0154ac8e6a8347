"""The ``ckptaudit`` app and what every command shares: one-line errors, output, exit status.

Known errors become one line on stderr and exit code 2; set ``CKPTAUDIT_DEBUG=1`` to see
the full traceback instead. Reports go to stdout and summaries to stderr, so
``--format json > out.json`` stays clean. The mapping from errors to lines, and the
output helpers, live in :mod:`.errorlines` (re-exported here for the commands).

Exit codes never depend on the typer release: start-up shortcuts that use typer's private
parts (:class:`_PlainCoercion`) switch themselves off where typer does not have the shape
they were tested at (:func:`_plain_supported`), and every command checks that the values
typer parsed have the types its signature declares (:func:`_typed`), so a typer/click pair
that parses wrongly (typer 0.12 with click 8.3+: every flag ``'False'``) fails closed with
exit 2 and one line, never passes a gate.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import types
import typing
from collections.abc import Iterator, MutableMapping
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
import typer.core

from .. import __version__
from ..exitcodes import ExitCode
from .errorlines import EXTRAS as EXTRAS
from .errorlines import F, _fail, handle_errors
from .errorlines import _emit as _emit
from .errorlines import _finish as _finish
from .errorlines import _report_left_out as _report_left_out
from .errorlines import missing_extra as missing_extra
from .errorlines import os_error_line as os_error_line
from .errorlines import say as say
from .fasthelp import DESCRIPTION
from .registry import COMMANDS


def load_command(name: str) -> Any:
    """The click command of ``name``: its module imported and its function converted by
    typer, as ``app.command(name)`` would have at start-up."""
    module_name, function, wrapped, _ = COMMANDS[name]
    module = importlib.import_module(f"{__package__}.{module_name}")
    func = _typed(getattr(module, function))
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

    def __getattr__(self, name: str) -> Any:
        # NOTE: anything else a later typer asks of its runtime parameter is typer's own
        if name in ("param", "fallback"):
            raise AttributeError(name)
        return getattr(self._typer(), name)

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
        except Exception:  # NOTE: _NotPlain, or a descriptor of another shape: typer's own coercion decides
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


def _plain_supported() -> bool:
    """Whether this typer has the private shape :class:`_PlainCoercion` was written and tested
    for (typer 0.29: a lazy ``_runtime_param`` built by ``typer._coercion.build_runtime_param``,
    whose ``coerce(value, param, ctx)`` converts). Anywhere else the shortcut stays off and
    typer's public path converts every value: slower to start, never a different result."""
    try:
        import inspect

        from typer import _coercion, core

        parameter = getattr(core, "_TyperParameter", None)
        coerce = inspect.signature(_coercion.RuntimeParam.coerce).parameters
        return (
            parameter is not None
            and callable(getattr(parameter, "get_runtime_param", None))
            and callable(_coercion.build_runtime_param)
            and list(coerce) == ["self", "value", "param", "ctx"]
        )
    except Exception:  # NOTE: any missing or renamed part: the public path
        return False


_PLAIN = _plain_supported()


def _plain_coercion(param: Any) -> None:
    """Give ``param`` a :class:`_PlainCoercion` where typer's parameter has the shape this
    was written for (typer 0.2x: ``type_descriptor`` and a lazy ``_runtime_param``)."""
    if not _PLAIN:
        return
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
        try:
            return typer.core.TyperCommand(name, help=COMMANDS[name][3], rich_markup_mode=None)
        except TypeError:  # NOTE: another typer's constructor: load the real command (slower, same text)
            return self[name]


def _exception_class(name: str) -> type[BaseException] | None:
    """click's exception class ``name``, found from typer's public ``BadParameter`` and
    ``Abort`` (typer bundles or depends on click; this needs neither import path)."""
    for public in (typer.BadParameter, typer.Abort):
        for cls in public.__mro__:
            if cls.__name__ == name:
                return cls
    return None


_USAGE_ERROR = _exception_class("UsageError")
_CLICK_EXCEPTIONS: tuple[type[BaseException], ...] = tuple(c for c in (_exception_class("ClickException"),) if c is not None)
_ABORT: tuple[type[BaseException], ...] = (typer.Abort,)


class LazyGroup(typer.core.TyperGroup):
    """The top-level group, whose commands load on first use (:class:`_Commands`)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        _plain_command(self)
        commands = _Commands()
        for name, command in self.commands.items():
            commands[name] = command
        self.commands = commands

    def main(  # type: ignore[override]  # NOTE: click's other arguments (windows_expand_args) pass through **extra
        self, args: Any = None, prog_name: Any = None, complete_var: Any = None, standalone_mode: bool = True, **extra: Any
    ) -> Any:
        """As click's, except that a usage error is one line (:func:`.usage.one_line`) and
        anything unexpected is one line and exit 2, never a traceback and exit 1 (which a CI
        gate would read as "failed")."""
        if not standalone_mode or os.environ.get("CKPTAUDIT_DEBUG"):
            return super().main(args, prog_name, complete_var, standalone_mode=standalone_mode, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _CLICK_EXCEPTIONS as exc:
            error: Any = exc
            if _USAGE_ERROR is None or not isinstance(exc, _USAGE_ERROR) or type(exc).__name__ == "NoArgsIsHelpError":
                error.show()  # NOTE: click's own (the help for a bare `ckptaudit`; a FileError)
                sys.exit(error.exit_code)
            from .usage import one_line

            typer.echo(one_line(exc), err=True)
            sys.exit(int(ExitCode.ERROR))
        except _ABORT:
            typer.echo("ckptaudit: error: interrupted", err=True)
            sys.exit(int(ExitCode.INTERRUPTED))
        except Exception as exc:  # a bug outside a command: still one line, never exit 1
            typer.echo(
                f"ckptaudit: error: internal error: {type(exc).__name__}: {exc} (set CKPTAUDIT_DEBUG=1 for the traceback)",
                err=True,
            )
            sys.exit(int(ExitCode.ERROR))
        sys.exit(result if type(result) is int else 0)

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


def _fits(annotation: Any, value: Any) -> bool:
    """Whether ``value`` has the declared ``annotation`` (the types the commands use)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(a, value) for a in get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return type(value) is bool
    if annotation is int:
        return isinstance(value, int) and type(value) is not bool
    if annotation is float:
        return isinstance(value, (int, float)) and type(value) is not bool
    if annotation in (str, Path) or (isinstance(annotation, type) and issubclass(annotation, Enum)):
        return isinstance(value, annotation)
    if origin is list:
        (item,) = get_args(annotation) or (Any,)
        return isinstance(value, (list, tuple)) and all(_fits(item, v) for v in value)
    return True


def _unsupported_typer(what: str) -> typer.Exit:
    """Fail closed (exit 2) when this typer/click pair parses the command line wrongly."""
    import importlib.metadata as metadata

    versions = []
    for dist in ("typer", "click"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    return _fail(f"{what}: {' with '.join(versions) or 'this typer'} parses options wrongly; pip install -U typer")


def _typed(func: F) -> F:
    """``func``, first checking that typer passed every parameter with its declared type."""
    hints: dict[str, Any] = {}

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not hints:
            hints.update(typing.get_type_hints(func))
        for name, value in kwargs.items():
            if name in hints and not _fits(hints[name], value):
                raise _unsupported_typer(f"--{name.replace('_', '-')} arrived as {value!r}")
        return func(*args, **kwargs)

    wrapper.checks_types = True  # type: ignore[attr-defined]  # NOTE: tests/test_cli_usage_errors.py looks for it
    return wrapper  # type: ignore[return-value]


def _version_callback(value: bool) -> None:
    # NOTE: typer calls this on every run, so it also checks that a flag parses to a bool
    # (None, falsy, prints nothing: only a truthy non-bool could pass a gate unseen)
    if value is not None and type(value) is not bool:
        raise _unsupported_typer(f"--version arrived as {value!r}")
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
