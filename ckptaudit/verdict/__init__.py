"""The verdict: one frozen object per run, computed once, read by every view.

:func:`evaluate` (also ``ckptaudit.evaluate``) returns a :class:`Verdict` for one run;
:func:`evaluate_paths` the verdicts of a sweep. See :mod:`ckptaudit.verdict.model` for what
a verdict holds and :mod:`ckptaudit.verdict.build` for how one pass computes it.
"""

from __future__ import annotations

from typing import Any

# NOTE: names are resolved on first use: `rank` and `prune` import only the ordering rule
# (verdict.order), and must not pay for the statistics' imports at start-up.
_BUILD = ("Options", "RunPass", "Verdicts", "evaluate", "evaluate_paths", "evaluate_run")
_MODEL = ("Chosen", "MetricVerdict", "Rule", "Verdict")


def __getattr__(name: str) -> Any:
    if name in _BUILD:
        from . import build

        return getattr(build, name)
    if name in _MODEL:
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module 'ckptaudit.verdict' has no attribute {name!r}")


__all__ = sorted(_BUILD + _MODEL)
