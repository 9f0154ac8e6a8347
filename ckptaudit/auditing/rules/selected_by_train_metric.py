"""The ``selected-by-train-metric`` finding."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..common import Rule, _best_index
from ..finding import CodeInfo, Finding

if TYPE_CHECKING:
    from ...store.reader import Checkpoint
    from ..engine import AuditOptions, RunAudit

INFO = CodeInfo(
    "selected-by-train-metric",
    "error",
    "The checkpoint was picked by a training metric.",
    "run.json selected_by names a training metric or loss, or the chosen checkpoint is the best by the "
    "training split but not by the validation split.",
    "Training metrics keep improving as a model overfits; picking by them picks the most overfit checkpoint.",
    "None when validation data exists; without a validation set there is nothing better to select by.",
    "Select by a validation metric: `ckptaudit pick --metric ...`, and set selected_by accordingly.",
)


def _is_train_name(name: str) -> bool:
    n = name.lower()
    # NOTE: Keras and the HF Trainer log the training loss as plain `loss`.
    return n == "loss" or n.startswith("train") or "_train" in n or "training" in n


def _value(ra: RunAudit, ckpt: Checkpoint) -> float:
    return next(s.value for s in ra.stats if s.checkpoint is ckpt)  # type: ignore[return-value]


def detect(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    run = ra.run
    if run.selected_by is not None and _is_train_name(run.selected_by.metric):
        yield Finding(
            "selected-by-train-metric",
            "error",
            run.name,
            run.chosen,
            f"run.json selected_by names a training metric ({run.selected_by.metric}); "
            f"the best checkpoint by validation {ra.spec.text} is {ra.winner.name if ra.winner else '-'}",
            {"selected_by": run.selected_by.metric, "chosen": run.chosen, "val_winner": ra.winner.name if ra.winner else None},
        )
        return
    if run.chosen is None or ra.winner is None:
        return
    train_values = [s.train_value for s in ra.stats]
    best_train = _best_index(ra.spec, train_values)
    if best_train is None:
        return
    chosen_stats = next((s for s in ra.stats if s.checkpoint.name == run.chosen), None)
    if chosen_stats is None or ra.stats[best_train] is not chosen_stats or chosen_stats.checkpoint is ra.winner:
        return
    if run.chosen in ra.tied_with_winner():
        return  # chosen cannot be told apart from the validation winner: no harm done
    yield Finding(
        "selected-by-train-metric",
        "error",
        run.name,
        run.chosen,
        f"chosen {run.chosen} is the best by training {ra.spec.text} ({chosen_stats.train_value:.4f}) but not by "
        f"validation: {ra.winner.name} scores {_value(ra, ra.winner):.4f} vs {chosen_stats.value:.4f}",
        {"chosen": run.chosen, "val_winner": ra.winner.name, "metric": ra.spec.text},
    )


RULE = Rule(INFO, detect, order=60)
