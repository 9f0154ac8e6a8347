"""The findings, one module each: its ``explain`` text (``INFO``) beside its detector.

Each module here defines ``RULE`` (:class:`~ckptaudit.auditing.common.Rule`); this package
finds them, so adding a finding is adding one module. ``CODES`` (code -> documentation) is
in ``RULE.order``, the order ``explain`` lists them and findings of one severity are sorted.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..common import Detector, Rule
from ..finding import CodeInfo


def _discover() -> tuple[Rule, ...]:
    rules = []
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            rules.append(importlib.import_module(f"{__name__}.{module.name}").RULE)
    return tuple(sorted(rules, key=lambda rule: rule.order))


RULES: tuple[Rule, ...] = _discover()
CODES: dict[str, CodeInfo] = {rule.info.code: rule.info for rule in RULES}
#: the detectors the engine runs on each audited run, in code order
CHECKS: tuple[Detector, ...] = tuple(rule.detect for rule in RULES if rule.detect is not None)

__all__ = ["CHECKS", "CODES", "RULES"]
