"""The ``ckptaudit`` command line: parse options, call the library, render, exit.

No scoring, auditing or deleting logic lives here. One module per command group
(:mod:`.rank`, :mod:`.audit`, :mod:`.pick`, :mod:`.prune`, :mod:`.check`, :mod:`.metrics`,
:mod:`.report`, :mod:`.inference`) over the shared app and error handling (:mod:`.app`)
and option types (:mod:`.options`). Nothing heavy is imported until a command runs: the
commands are listed in one place, ``registry.COMMANDS``, in the order of ``ckptaudit --help``,
and each command's module is imported only when that command runs. ``ckptaudit --help``
and ``--version`` are answered by :mod:`.fasthelp` without importing typer at all.
"""

from __future__ import annotations

import sys
from typing import Any


def run() -> None:
    """Console-script entry point."""
    from .fasthelp import answer

    if answer(sys.argv[1:]):
        return
    from ..allocator import keep_freed_memory

    keep_freed_memory()
    try:
        from .application import app
    except ImportError as exc:  # NOTE: a broken install is exit 2 and one line, never a traceback and exit 1
        sys.stderr.write(
            f"ckptaudit: error: cannot start the command line: {exc} (reinstall ckptaudit: pip install -U ckptaudit)\n"
        )
        raise SystemExit(2) from None
    app()


def __getattr__(name: str) -> Any:
    # NOTE: `from ckptaudit.cli import app` imports typer and the app on first use only.
    if name in ("app", "handle_errors", "COMMANDS"):
        import importlib

        return getattr(importlib.import_module(f"{__name__}.application"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["COMMANDS", "app", "handle_errors", "run"]
