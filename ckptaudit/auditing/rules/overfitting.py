"""The ``overfitting`` finding."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

from ...metrics.spec import parse_metric
from ..common import Rule, _best_index, _better, _r
from ..finding import CodeInfo, Finding

if TYPE_CHECKING:
    from ..engine import AuditOptions, RunAudit

INFO = CodeInfo(
    "overfitting",
    "info",
    "The validation metric worsens after some epoch while the training metric keeps improving.",
    "After the best validation epoch, the last checkpoint is worse on validation by more than --margin and "
    "better on training than at the best epoch.",
    "Later checkpoints are worse models; keeping the last one, or selecting by training metrics, loses quality.",
    "Noise in a small validation set; a learning-rate schedule that recovers later.",
    "Keep the best validation checkpoint (not the last), add regularisation or early stopping.",
)


#: (validation, training) names of logged losses, as Lightning users, Keras and HF log them
LOSS_PAIRS = (("val_loss", "train_loss"), ("val_loss", "loss"), ("eval_loss", "loss"), ("eval_loss", "train_loss"))


def detect(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    pairs = [s for s in ra.stats if s.value is not None and s.train_value is not None]
    spec = ra.spec
    if len(pairs) >= 3 and not ra.val_changed:
        vals = [cast(float, s.value) for s in pairs]
        trains = [cast(float, s.train_value) for s in pairs]
        label = spec.text
    else:
        found = None
        for val_name, train_name in LOSS_PAIRS:
            logged = [s for s in ra.stats if val_name in s.checkpoint.logged and train_name in s.checkpoint.logged]
            if len(logged) >= 3:
                found = (val_name, train_name, logged)
                break
        if found is None:
            return
        val_name, train_name, pairs = found
        vals = [s.checkpoint.logged[val_name] for s in pairs]
        trains = [s.checkpoint.logged[train_name] for s in pairs]
        spec = parse_metric(val_name, logged=[val_name])
        label = f"{val_name}/{train_name}"
    b = _best_index(spec, vals)
    if b is None or b == len(pairs) - 1:
        return
    last = len(pairs) - 1
    if not (_better(spec, vals[b], vals[last], o.margin) and spec.better(trains[last], trains[b])):  # type: ignore[arg-type]
        return
    yield Finding(
        "overfitting",
        "info",
        ra.run.name,
        pairs[b].checkpoint.name,
        f"validation {label} is best at epoch {pairs[b].checkpoint.epoch} ({vals[b]:.4f}) and worsens to {vals[last]:.4f} "
        f"by epoch {pairs[last].checkpoint.epoch}, while training improves from {trains[b]:.4f} to {trains[last]:.4f}",
        {
            "metric": label,
            "best_epoch": pairs[b].checkpoint.epoch,
            "gap_per_epoch": [
                {"epoch": s.checkpoint.epoch, "train": _r(t), "val": _r(v), "gap": _r(t - v)}
                for s, t, v in zip(pairs, trains, vals, strict=True)
            ],
        },  # type: ignore[operator]
    )


RULE = Rule(INFO, detect, order=70)
