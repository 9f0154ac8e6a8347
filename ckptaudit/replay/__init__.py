"""Replaying stopping and retention rules on recorded runs (``ckptaudit replay``).

:mod:`.grammar` parses a rule text, :mod:`.rules` holds one unit per family with its
framework's exact semantics, :mod:`.engine` iterates rules over runs and reads the target
metric from the run's verdict, :mod:`.sweep` says which rule loses least over many runs.
See docs/replay.md.
"""

from __future__ import annotations

from .engine import ReplayReport, RuleResult, replay, replay_run
from .grammar import RuleSpec, parse_rule

__all__ = ["ReplayReport", "RuleResult", "RuleSpec", "parse_rule", "replay", "replay_run"]
