"""The live audit: the cheap findings while training runs, at every save.

:class:`LiveAudit` is fed each checkpoint as it is written (by the
:class:`~ckptaudit.store.recorder.Recorder`, hence by every framework callback) and keeps the
audit's own pass (:class:`~ckptaudit.auditing.engine._Collector`, without the per-row data the
selection statistics need) one checkpoint further: one prepared view of the arrays already in
memory, one confusion matrix, the logged metrics re-scored, the train ids at the first
checkpoint that has them. The findings come from the very rule modules ``audit`` runs, on the
statistics gathered so far, so what the live audit says at the last save is what ``audit``
says afterwards. Only the cheap findings run (:data:`LIVE_CODES`); the statistics of noise,
overfitting and the like need the whole run and stay with ``audit``.

A new finding is reported once through ``report`` (a framework's own warning or log; Python
warnings by default); with ``on_finding="raise"`` an error-severity one raises
:class:`LiveAuditError` after the checkpoint is written, which stops the training loop.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace

from ..errors import UsageError
from ..store.reader import Checkpoint, Predictions, Run
from .common import _best_index
from .engine import AuditOptions, RunAudit, _Collector, _finite, audit_spec
from .finding import Finding, severity_rank
from .rules import CODES, RULES

#: the findings the live audit runs, each O(one checkpoint) per save
LIVE_CODES = ("train-val-overlap", "accuracy-paradox", "val-set-changed", "non-finite-outputs", "logged-metric-mismatch")
ON_FINDING = ("warn", "raise")

Report = Callable[[str], None]


class LiveAuditError(RuntimeError):
    """An error-severity finding of the live audit under ``on_finding="raise"``."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(f"ckptaudit live audit stopped training: {format_finding(finding)}")
        self.finding = finding


def format_finding(f: Finding) -> str:
    """One line: severity, code, checkpoint and message."""
    where = f" at {f.checkpoint}" if f.checkpoint else ""
    return f"{f.severity} {f.code}{where}: {f.message} (ckptaudit explain {f.code})"


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=4)


def check_on_finding(on_finding: str) -> str:
    """``on_finding=`` validated."""
    if on_finding not in ON_FINDING:
        raise UsageError(f"on_finding must be 'warn' or 'raise', not {on_finding!r}")
    return on_finding


class LiveAudit:
    """The live findings of one run, one checkpoint at a time (see the module)."""

    def __init__(
        self,
        run: Run,
        options: AuditOptions = AuditOptions(noise=False),
        *,
        on_finding: str = "warn",
        report: Report | None = None,
    ) -> None:
        self.run = replace(run, checkpoints=())
        self.options = replace(options, noise=False)
        self.on_finding = check_on_finding(on_finding)
        self.report = report or _warn
        self.findings: list[Finding] = []  #: the live findings as of the last save
        self._collector: _Collector | None = None
        self._said: set[tuple[str, object]] = set()
        self._detectors = [r.detect for r in RULES if r.info.code in LIVE_CODES and r.detect is not None]

    def observe(self, ckpt: Checkpoint, val: Predictions) -> list[Finding]:
        """Take in one written checkpoint (its val predictions, in memory; train.npz, where
        written, is read at the first checkpoint that has it) and return the findings new at
        it, after reporting them (and raising under ``on_finding="raise"``)."""
        from ..metrics.evaluation import prepare_predictions

        self.run = replace(self.run, checkpoints=(*self.run.checkpoints, ckpt))
        collector = self._collector
        if collector is None:
            collector = self._collector = _Collector(self.run, audit_spec(self.run, self.options), keep_rows=False)
        collector.result.run = self.run
        if collector.overlap_at is None and ckpt.has_split("train"):
            collector.overlap_at = ckpt  # the audit's rule: the first checkpoint with both splits
        prep = prepare_predictions(self.run, val) if _finite(val) else None
        collector(ckpt, val, prep, None, None)
        ra = collector.result
        self.findings = self._findings(ra)
        new = [f for f in self.findings if _key(f) not in self._said]
        for f in new:
            self._said.add(_key(f))
            self.report(f"ckptaudit live audit: {format_finding(f)}")
        if self.on_finding == "raise":
            error = next((f for f in new if f.severity == "error"), None)
            if error is not None:
                raise LiveAuditError(error)
        return new

    def _findings(self, ra: RunAudit) -> list[Finding]:
        """The live rules on the statistics so far, sorted as ``audit`` sorts them."""
        best = _best_index(ra.spec, [s.value for s in ra.stats])
        snapshot = replace(ra, winner=None if best is None else ra.stats[best].checkpoint, findings=list(ra.findings))
        found = [f for f in snapshot.findings if f.code in LIVE_CODES]
        for detect in self._detectors:
            found.extend(detect(snapshot, self.options))
        o = self.options
        keep = [f for f in found if (not o.select or f.code in o.select) and f.code not in o.ignore]
        return sorted(keep, key=lambda f: (-severity_rank(f.severity), list(CODES).index(f.code)))


def _key(f: Finding) -> tuple[str, object]:
    """A finding is said once: per code, and per logged metric for a mismatch."""
    return (f.code, f.evidence.get("logged_name"))
