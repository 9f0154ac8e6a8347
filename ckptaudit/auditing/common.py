"""What the engine and the finding rules share: the rule record and the comparisons
("better by a margin", "the best of a series") every check measures with."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .finding import CodeInfo, Finding

if TYPE_CHECKING:
    from ..metrics.spec import MetricSpec
    from .engine import AuditOptions, RunAudit

#: a rule's detector: the findings of one audited run under the audit's options
Detector = Callable[["RunAudit", "AuditOptions"], Iterator[Finding]]

_UNBOUNDED = {"log_loss", "mse", "rmse", "mae"}


@dataclass(frozen=True)
class Rule:
    """One finding: its documentation (``ckptaudit explain``) and its detector.

    ``detect`` is None for a finding the engine raises itself while it reads the files
    (val-set-changed). ``order`` places the code in ``CODES``, which is the order of
    ``explain``'s list and the tie-break of the findings' sort, so it never changes.
    """

    info: CodeInfo
    detect: Detector | None
    order: int


def _better(spec: MetricSpec, a: float, b: float, margin: float) -> bool:
    """``a`` beats ``b`` by more than ``margin`` (relative for unbounded metrics)."""
    if spec.name in _UNBOUNDED or spec.source != "builtin":
        scale = max(abs(b), 1e-12)
        gain = (a - b) / scale if spec.maximize else (b - a) / scale
    else:
        gain = a - b if spec.maximize else b - a
    return gain > margin


def _best_index(spec: MetricSpec, values: Sequence[float | None]) -> int | None:
    best = None
    for i, v in enumerate(values):
        if v is not None and (best is None or spec.better(v, values[best])):  # type: ignore[arg-type]
            best = i
    return best


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)
