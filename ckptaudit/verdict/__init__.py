"""The verdict: one frozen object per run, computed once, read by every view.

:func:`evaluate` (also ``ckptaudit.evaluate``) returns a :class:`Verdict` for one run;
:func:`evaluate_paths` the verdicts of a sweep. See :mod:`ckptaudit.verdict.model` for what
a verdict holds and :mod:`ckptaudit.verdict.build` for how one pass computes it.
"""

from .build import Options, RunPass, Verdicts, evaluate, evaluate_paths, evaluate_run
from .model import Chosen, MetricVerdict, Rule, Verdict

__all__ = [
    "Chosen",
    "MetricVerdict",
    "Options",
    "Rule",
    "RunPass",
    "Verdict",
    "Verdicts",
    "evaluate",
    "evaluate_paths",
    "evaluate_run",
]
