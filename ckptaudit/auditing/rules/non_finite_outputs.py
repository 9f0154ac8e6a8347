"""The ``non-finite-outputs`` finding."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..common import Rule
from ..finding import CodeInfo, Finding

if TYPE_CHECKING:
    from ..engine import AuditOptions, RunAudit

INFO = CodeInfo(
    "non-finite-outputs",
    "warning/error",
    "Validation outputs hold NaN or infinite values.",
    "A checkpoint's val.npz 'output' holds NaN or +/-inf (the model diverged, or a half-precision overflow). "
    "Such a checkpoint is scored by no metric and left out of the ranking. Severity is error when the "
    "checkpoint that matters (the one being shipped, else run.json 'chosen') is one of them, warning otherwise.",
    "Training that diverged keeps going (and keeps being paid for); a NaN checkpoint that is shipped predicts nothing.",
    "A deliberately corrupted checkpoint in a test; none in training.",
    "Lower the learning rate, clip gradients, use bf16 instead of fp16 or a loss scaler; restart from the last "
    "finite checkpoint (`ckptaudit rank` lists them).",
)


def detect(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    bad = [st for st in ra.stats if st.nonfinite]
    if not bad:
        return
    focus = o.focus or ra.run.chosen
    severity = "error" if focus is not None and any(st.checkpoint.name == focus for st in bad) else "warning"
    first = bad[0]
    yield Finding(
        "non-finite-outputs",
        severity,
        ra.run.name,
        first.checkpoint.name,
        f"{first.nonfinite} non-finite validation output value(s) (NaN/inf) at epoch {first.checkpoint.epoch}; "
        f"{len(bad)} of {len(ra.stats)} checkpoint(s) hold some and are not scored",
        {
            "first_epoch": first.checkpoint.epoch,
            "values": first.nonfinite,
            "checkpoints": [st.checkpoint.name for st in bad],
            "focus": focus,
        },
    )


RULE = Rule(INFO, detect, order=140)
