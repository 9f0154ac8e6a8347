"""Replay reproduces the HF Trainer's EarlyStoppingCallback, save_total_limit rotation and
load_best_model_at_end on the same sequence.

A tiny real ``Trainer`` whose ``evaluate`` reports a scripted ``eval_score`` (and calls the
callbacks' ``on_evaluate`` as the Trainer's own does) runs one step per epoch; the Trainer's
own code then updates ``best_metric``, saves, rotates checkpoints and stops.
"""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")
import torch  # noqa: E402
from replay_runs import SEQUENCES, epochs_of, replayed, write_sequence_run  # noqa: E402
from torch import nn  # noqa: E402
from transformers import EarlyStoppingCallback, Trainer, TrainingArguments  # noqa: E402


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)

    def forward(self, x, labels=None):
        out = self.layer(x).squeeze(-1)
        return {"loss": nn.functional.mse_loss(out, labels), "logits": out}


class Rows(torch.utils.data.Dataset):
    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(4, 2, generator=g)
        self.y = torch.randn(4, generator=g)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


class Scripted(Trainer):
    """A Trainer whose evaluation reports the next value of a scripted sequence."""

    def __init__(self, sequence, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sequence = sequence
        self.evaluated = 0

    def evaluate(self, *args, **kwargs):
        metrics = {"eval_score": float(self.sequence[self.evaluated])}
        self.evaluated += 1
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


def _train(tmp_path, sequence, *, patience=None, threshold=0.0, limit=None, load_best=False):
    out = tmp_path / "hf"
    args = TrainingArguments(
        output_dir=str(out),
        num_train_epochs=len(sequence),
        per_device_train_batch_size=4,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=limit,
        load_best_model_at_end=load_best,
        metric_for_best_model="score" if (load_best or patience is not None) else None,
        greater_is_better=False,
        save_only_model=True,
        report_to="none",
        use_cpu=True,
        logging_strategy="no",
        disable_tqdm=True,
    )
    callbacks = [] if patience is None else [EarlyStoppingCallback(patience, threshold)]
    trainer = Scripted(sequence, model=Tiny(), args=args, train_dataset=Rows(), eval_dataset=Rows(), callbacks=callbacks)
    trainer.train()
    kept = {int(p.name.split("-")[1]) - 1 for p in out.glob("checkpoint-*")}  # one step per epoch
    best = trainer.state.best_model_checkpoint
    return trainer, kept, None if best is None else int(best.rsplit("-", 1)[1]) - 1


@pytest.mark.parametrize("seq", range(len(SEQUENCES)))
@pytest.mark.parametrize(("patience", "threshold"), [(1, 0.0), (2, 0.0), (2, 0.005), (3, 0.02)])
def test_early_stopping_callback_matches_hf(tmp_path, seq, patience, threshold):
    sequence = SEQUENCES[seq]
    trainer, kept, best = _train(tmp_path, sequence, patience=patience, threshold=threshold, load_best=True)
    result = replayed(
        write_sequence_run(tmp_path / "run", sequence, name="eval_score"),
        f"hf:patience={patience},threshold={threshold},monitor=eval_score,mode=min,load_best_model_at_end",
    )
    assert result.stop_epoch == trainer.evaluated - 1
    assert epochs_of(result.kept) == kept
    assert result.shipped == f"epoch-{best:04d}"


@pytest.mark.parametrize("seq", range(len(SEQUENCES)))
@pytest.mark.parametrize(
    ("limit", "load_best", "patience"), [(1, True, None), (2, True, None), (3, True, 2), (2, False, None), (1, False, 1)]
)
def test_save_total_limit_rotation_matches_hf(tmp_path, seq, limit, load_best, patience):
    sequence = SEQUENCES[seq]
    trainer, kept, best = _train(tmp_path, sequence, patience=patience, limit=limit, load_best=load_best)
    rule = f"hf:save_total_limit={limit},monitor=eval_score,mode=min"
    rule += ",load_best_model_at_end" if load_best else ""
    rule += f",patience={patience}" if patience is not None else ""
    result = replayed(write_sequence_run(tmp_path / "run", sequence, name="eval_score"), rule)
    assert result.stop_epoch == trainer.evaluated - 1
    assert epochs_of(result.kept) == kept
    if load_best:
        assert result.shipped == f"epoch-{best:04d}"
