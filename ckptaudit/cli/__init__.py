"""The ``ckptaudit`` command line: parse options, call the library, render, exit.

No scoring, auditing or deleting logic lives here. One module per command group
(:mod:`.rank`, :mod:`.audit`, :mod:`.pick`, :mod:`.prune`, :mod:`.check`, :mod:`.metrics`,
:mod:`.report`, :mod:`.inference`) over the shared app and error handling (:mod:`.app`)
and option types (:mod:`.options`). Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

from . import audit, check, inference, metrics, pick, prune, rank, report
from .app import app, handle_errors

# NOTE: registered here, in one list, because this order is the order of `ckptaudit --help`.
for _name, _command in (
    ("rank", rank.rank),
    ("audit", audit.audit),
    ("pick", pick.pick),
    ("prune", prune.prune),
    ("unpin", pick.unpin),
    ("check", check.check),
    ("explain", audit.explain),
):
    app.command(_name)(handle_errors(_command))
app.command("metrics")(metrics.list_metrics)
report.register(app)
inference.register(app)


def run() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "run"]
