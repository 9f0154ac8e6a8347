"""The ``metrics`` command: the built-in metrics, their direction, options and aliases."""

from __future__ import annotations

from .application import _emit


def list_metrics() -> None:
    """List the built-in metrics, their direction, options and aliases."""
    from tabulate import tabulate

    from ..metrics.spec import ALIASES, BUILTINS, OPTIONS

    rows = []
    for name, (direction, family) in BUILTINS.items():
        aliases = ", ".join(sorted(a for a, n in ALIASES.items() if n == name))
        if name == "fbeta":
            aliases = ", ".join(filter(None, [aliases, "f2, f0.5, f<beta>"]))
        rows.append([name, direction, family, ", ".join(sorted(OPTIONS[name])) or "-", aliases or "-"])
    _emit(tabulate(rows, headers=["metric", "best", "needs", "options", "aliases"], tablefmt="simple") + "\n")
    _emit("\nAlso: any name training logged in meta.json (val_loss), and MODULE:FUNCTION:mode=max for your own.\n")
