"""``ckptaudit --help`` and ``ckptaudit --version`` without importing typer (start-up time).

The top-level help is the same text typer prints (tests/test_cli_startup.py compares the
two at many terminal widths); anything else, or a terminal too narrow for this layout to be
sure, is left to typer.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap

#: the app's description (``typer.Typer(help=...)`` in :mod:`.application` uses this same text)
DESCRIPTION = "Choose checkpoints after the fact, under any metric, and prove the choice was honest."
OPTIONS = (("--version", "Print the version and exit."), ("-h, --help", "Show this message and exit."))


def program_name() -> str:
    """The program name as click shows it (``python -m ckptaudit`` or the script's name)."""
    main = sys.modules.get("__main__")
    path = sys.argv[0]
    package = getattr(main, "__package__", None)
    if package in (None, "") or (os.name == "nt" and package == "" and not os.path.exists(path)):
        return os.path.basename(path)
    name = os.path.splitext(os.path.basename(path))[0]
    module = package if name == "__main__" else f"{package}.{name}"
    return f"python -m {module.lstrip('.')}"


def _short(text: str, limit: int) -> str:
    """click's make_default_short_help for a one-paragraph text."""
    words = text.split()
    total = 0
    for i, word in enumerate(words):
        total += len(word) + (i > 0)
        if total > limit:
            break
        if word[-1] == ".":
            return " ".join(words[: i + 1])
        if total == limit and i != len(words) - 1:
            break
    else:
        return " ".join(words)
    total += 3
    while i > 0:
        total -= len(words[i]) + (i > 0)
        if total <= limit:
            break
        i -= 1
    return " ".join(words[:i]) + "..."


def _rows(rows: list[tuple[str, str]], width: int) -> list[str] | None:
    first = max(len(name) for name, _ in rows) + 2
    if first - 2 > 30:
        return None
    text_width = max(width - first - 2, 10)
    if any(len(text) > text_width for _, text in rows):
        return None
    return [f"  {name}{' ' * (first - len(name))}{text}" for name, text in rows]


def top_help(width: int, prog: str) -> str | None:
    """The text of ``ckptaudit --help`` for a formatter ``width``, or None where this
    layout would not be exactly typer's."""
    from .registry import COMMANDS

    usage = f"Usage: {prog} [OPTIONS] COMMAND [ARGS]..."
    if width < 60 or len(usage) > width:
        return None
    limit = width - 6 - max(len(name) for name in COMMANDS)
    options = _rows(list(OPTIONS), width)
    commands = _rows([(name, _short(text, limit)) for name, (_, _, _, text) in COMMANDS.items()], width)
    if options is None or commands is None:
        return None
    description = textwrap.fill(DESCRIPTION, width, initial_indent="  ", subsequent_indent="  ")
    return "\n".join([usage, "", description, "", "Options:", *options, "", "Commands:", *commands]) + "\n"


def answer(args: list[str]) -> bool:
    """Print the answer to ``--help``/``-h``/``--version`` alone and return True; False
    for anything else (typer answers)."""
    if args == ["--version"]:
        from .. import __version__

        sys.stdout.write(f"ckptaudit {__version__}\n")
        return True
    if args not in (["--help"], ["-h"]):
        return False
    width = max(min(shutil.get_terminal_size().columns, 80) - 2, 50)
    text = top_help(width, program_name())
    if text is None:
        return False
    sys.stdout.write(text)
    return True
