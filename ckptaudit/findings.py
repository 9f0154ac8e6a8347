"""Findings: what the audit reports, and the stable codes that name them.

A :class:`Finding` is plain data (code, severity, run, checkpoint, message, evidence); the
codes below are a contract that `audit --select/--ignore`, the `check` gate and CI
configurations rely on, so a code is never renamed. ``ckptaudit explain CODE`` prints each
code's entry: what it means, why it matters, its benign causes and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError

SEVERITIES = ("info", "warning", "error")


def severity_rank(severity: str) -> int:
    """0 info, 1 warning, 2 error."""
    return SEVERITIES.index(severity)


@dataclass(frozen=True)
class Finding:
    """One audit result with the numbers behind it."""

    code: str
    severity: str
    run: str
    checkpoint: str | None
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape: code, severity, run, checkpoint, message, evidence."""
        return {
            "code": self.code,
            "severity": self.severity,
            "run": self.run,
            "checkpoint": self.checkpoint,
            "message": self.message,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class CodeInfo:
    """The documentation of one finding code."""

    code: str
    severity: str
    summary: str
    meaning: str
    why: str
    benign: str
    action: str


CODES: dict[str, CodeInfo] = {
    c.code: c
    for c in (
        CodeInfo(
            "accuracy-paradox",
            "warning/error",
            "High accuracy on imbalanced data that mostly reflects the majority class.",
            "The validation set is imbalanced (the majority class is at least --imbalance of it), the checkpoint "
            "that matters (the one being shipped, else run.json 'chosen', else the audit winner) has accuracy at or "
            "above the majority-class baseline, and it either removes less than --paradox-lift of the errors of "
            "always predicting the majority class, or recalls less than --paradox-recall of the rarest class.",
            "Accuracy rewards predicting the majority class: a fraud model at 98% accuracy can catch 12% of fraud. "
            "A checkpoint chosen by accuracy is then chosen for the wrong reason. Severity is error when the run's "
            "selected_by names accuracy, warning otherwise.",
            "A task where the majority class really is what matters, or a rare class that is deliberately ignored.",
            "Select by a metric that sees the rare class: recall:class=NAME, balanced_accuracy, f1, average_precision; "
            "re-pick with `ckptaudit pick --metric ...`.",
        ),
        CodeInfo(
            "train-val-overlap",
            "error",
            "Validation rows also appear in the training predictions.",
            "Sample ids (array 'id') or input content hashes (array 'input_hash') present in both train.npz and val.npz.",
            "Rows the model trained on score better than unseen rows, so validation metrics are inflated and the "
            "checkpoint that memorised most looks best.",
            "Ids that are per-split row numbers rather than global sample ids (both splits then start at 0); exact "
            "duplicate inputs that occur naturally in the data.",
            "De-duplicate the split (group-aware splitting for near-duplicates), record global ids, and re-run.",
        ),
        CodeInfo(
            "val-set-changed",
            "error",
            "Validation targets or ids differ between checkpoints of one run.",
            "A later checkpoint's val.npz holds other targets, other ids or another number of rows than the first.",
            "Scores on different validation sets cannot be compared: the ranking is meaningless.",
            "None for a single run; split runs that really used different validation sets into separate runs.",
            "Fix the data loader (shuffling or augmentation on the validation set) and re-evaluate the checkpoints.",
        ),
        CodeInfo(
            "val-beats-train",
            "warning",
            "The validation metric beats the training metric on most checkpoints.",
            "On more than half of the checkpoints with train.npz, the validation value is better than the training "
            "value by more than --margin.",
            "A model is normally at least as good on the data it trained on; the reverse often means leakage or an "
            "evaluation bug (validation rows in training, a different preprocessing path).",
            "Dropout, augmentation or other regularisation active when the training predictions were recorded; a "
            "training metric averaged over the epoch while the model was still improving; an easier validation set.",
            "Record training predictions in eval mode on a fixed training subset, and check the split for leakage.",
        ),
        CodeInfo(
            "suspicious-perfect",
            "warning",
            "Near-perfect validation scores.",
            "Validation accuracy >= --perfect, ROC AUC of exactly 1 (every positive outscores every negative), R2 >= --perfect, or a logged validation loss "
            "<= 1e-6, most suspicious in the first epochs.",
            "Real tasks are rarely solved perfectly; a perfect score early in training usually means the label "
            "leaked into the inputs or the validation rows are training rows.",
            "A genuinely easy task (a toy data set), or a validation set too small to show errors.",
            "Look for target leakage in the features and overlap between splits; confirm on a fresh held-out set.",
        ),
        CodeInfo(
            "selected-by-train-metric",
            "error",
            "The checkpoint was picked by a training metric.",
            "run.json selected_by names a training metric or loss, or the chosen checkpoint is the best by the "
            "training split but not by the validation split.",
            "Training metrics keep improving as a model overfits; picking by them picks the most overfit checkpoint.",
            "None when validation data exists; without a validation set there is nothing better to select by.",
            "Select by a validation metric: `ckptaudit pick --metric ...`, and set selected_by accordingly.",
        ),
        CodeInfo(
            "overfitting",
            "info",
            "The validation metric worsens after some epoch while the training metric keeps improving.",
            "After the best validation epoch, the last checkpoint is worse on validation by more than --margin and "
            "better on training than at the best epoch.",
            "Later checkpoints are worse models; keeping the last one, or selecting by training metrics, loses quality.",
            "Noise in a small validation set; a learning-rate schedule that recovers later.",
            "Keep the best validation checkpoint (not the last), add regularisation or early stopping.",
        ),
        CodeInfo(
            "best-is-last",
            "info",
            "The best checkpoint is the last one.",
            "The audit winner is the run's final checkpoint.",
            "The metric was still improving when training stopped: more epochs may help, and the run may not have converged.",
            "Training deliberately stopped at a fixed budget; a schedule that anneals to the end.",
            "Train longer, or confirm that the improvement has levelled off.",
        ),
        CodeInfo(
            "winner-within-noise",
            "info/warning",
            "Other checkpoints cannot be told apart from the best on this validation set.",
            "A 95% model confidence set (Hansen, Lunde & Nason 2011; bootstrap over validation rows, --resamples, "
            "seeded) keeps every checkpoint the validation set cannot tell apart from the best, with family-wise "
            "control: a run of truly equal checkpoints reports one as worse at most ~5% of the time. The message also "
            "gives the winner's value expected on new data (the whole selection bootstrapped: best on in-bag rows, "
            "scored on out-of-bag rows) and the optimism of its raw value. Warning when at least --tie-fraction of "
            "the run's checkpoints are in the set, info when only a few are (normal near convergence).",
            "Choosing among tied checkpoints is choosing by noise: the 'best' may be worse on new data.",
            "Converged training, where neighbouring epochs are nearly the same model.",
            "Use a larger validation set, average the tied checkpoints, or prefer the earliest tied one.",
        ),
        CodeInfo(
            "small-val-set",
            "warning",
            "The validation set, or its rarest class, is too small to separate checkpoints.",
            "Fewer than --min-rows validation rows, or fewer than --min-class-rows rows of the rarest class.",
            "With few rows one sample changes a metric by a large step, so differences between checkpoints are mostly noise.",
            "A deliberately small smoke-test run.",
            "Validate on more rows (or more of the rare class); use `rank --ci` to see the intervals.",
        ),
    )
}


def check_codes(codes: list[str] | None, option: str) -> list[str]:
    """Validate a --select/--ignore list (comma-separated values allowed)."""
    if not codes:
        return []
    flat = [c.strip() for item in codes for c in item.split(",") if c.strip()]
    unknown = [c for c in flat if c not in CODES]
    if unknown:
        raise UsageError(f"{option}: unknown finding code {', '.join(unknown)} (known: {', '.join(CODES)})")
    return flat


def explain(code: str) -> str:
    """The text `ckptaudit explain CODE` prints."""
    info = CODES.get(code)
    if info is None:
        import difflib

        close = difflib.get_close_matches(code, list(CODES), n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known codes: {', '.join(CODES)}"
        raise UsageError(f"unknown finding code {code!r}{hint}")
    return (
        f"{info.code} ({info.severity})\n  {info.summary}\n\n"
        f"What it means:\n  {info.meaning}\n\nWhy it matters:\n  {info.why}\n\n"
        f"Benign causes:\n  {info.benign}\n\nWhat to do:\n  {info.action}\n"
    )
