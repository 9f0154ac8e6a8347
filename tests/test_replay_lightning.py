"""Replay reproduces Lightning's own EarlyStopping and ModelCheckpoint on the same logged sequence.

A tiny real Trainer logs a scripted ``val_loss`` at each validation; its callbacks decide
when to stop and which files stay. The same sequence, recorded as a run, is replayed and
must give the same stop epoch, kept set and best checkpoint.
"""

from __future__ import annotations

import pytest

pytest.importorskip("lightning")
import lightning.pytorch as L  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint  # noqa: E402
from replay_runs import SEQUENCES, epochs_of, replayed, write_sequence_run  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402


class Scripted(L.LightningModule):
    """Trains a linear layer; logs the scripted sequence as ``val_loss``."""

    def __init__(self, sequence: list[float]) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)
        self.sequence = sequence
        self.validated: list[int] = []

    def training_step(self, batch, _):
        x, y = batch
        return nn.functional.mse_loss(self.layer(x).squeeze(-1), y)

    def validation_step(self, batch, _):
        self.validated.append(self.current_epoch)
        self.log("val_loss", float(self.sequence[self.current_epoch]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _loader() -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(4, 2), torch.randn(4)), batch_size=4)


def _fit(tmp_path, sequence, callbacks):
    model = Scripted(sequence)
    trainer = L.Trainer(
        max_epochs=len(sequence),
        accelerator="cpu",
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
    )
    trainer.fit(model, _loader(), _loader())
    return model, trainer


def _saved_epochs(folder) -> tuple[set[int], int | None]:
    """Epochs of the top-k files (named e<epoch>.ckpt) and the epoch last.ckpt holds."""
    kept = {int(p.stem[1:]) for p in folder.glob("e*.ckpt")}
    last = folder / "last.ckpt"
    held = None
    if last.exists():
        held = int(torch.load(last, map_location="cpu", weights_only=True)["epoch"])
    return kept, held


@pytest.mark.parametrize("seq", range(len(SEQUENCES)))
@pytest.mark.parametrize(("patience", "min_delta"), [(1, 0.0), (2, 0.0), (2, 0.005), (3, 0.02)])
def test_early_stopping_stop_epoch_matches_lightning(tmp_path, seq, patience, min_delta):
    sequence = SEQUENCES[seq]
    es = EarlyStopping("val_loss", patience=patience, min_delta=min_delta, mode="min")
    model, _ = _fit(tmp_path / "pl", sequence, [es])
    run = write_sequence_run(tmp_path / "run", sequence)
    result = replayed(run, f"patience={patience},min_delta={min_delta},mode=min,monitor=val_loss")
    assert result.stop_epoch == model.validated[-1]
    assert es.stopped_epoch == (result.stop_epoch if result.stopped else 0)


@pytest.mark.parametrize("seq", range(len(SEQUENCES)))
@pytest.mark.parametrize(
    ("top_k", "every_n", "save_last"), [(1, 1, False), (2, 1, True), (3, 2, True), (-1, 3, False), (2, 1, False)]
)
def test_model_checkpoint_kept_set_matches_lightning(tmp_path, seq, top_k, every_n, save_last):
    sequence = SEQUENCES[seq]
    folder = tmp_path / "ckpts"
    mc = ModelCheckpoint(
        dirpath=folder,
        filename="e{epoch}",
        auto_insert_metric_name=False,
        monitor="val_loss",
        mode="min",
        save_top_k=top_k,
        every_n_epochs=every_n,
        save_last=save_last,
    )
    _fit(tmp_path / "pl", sequence, [mc])
    kept, last = _saved_epochs(folder)
    run = write_sequence_run(tmp_path / "run", sequence)
    rule = f"save_top_k={top_k},every_n_epochs={every_n}" + (",save_last" if save_last else "")
    result = replayed(run, rule)
    assert epochs_of(result.kept) == kept | ({last} if last is not None else set())
    assert result.shipped == (f"epoch-{int(mc.best_model_path.split('/e')[-1][:-5]):04d}" if mc.best_model_path else None)


@pytest.mark.parametrize("seq", range(len(SEQUENCES)))
def test_early_stopping_with_top_k_matches_lightning(tmp_path, seq):
    sequence = SEQUENCES[seq]
    folder = tmp_path / "ckpts"
    mc = ModelCheckpoint(dirpath=folder, filename="e{epoch}", auto_insert_metric_name=False, monitor="val_loss", save_top_k=2)
    model, _ = _fit(tmp_path / "pl", sequence, [EarlyStopping("val_loss", patience=2), mc])
    run = write_sequence_run(tmp_path / "run", sequence)
    result = replayed(run, "patience=2,save_top_k=2")
    assert result.stop_epoch == model.validated[-1]
    assert epochs_of(result.kept) == _saved_epochs(folder)[0]
