"""PyTorch Lightning: a callback that records every validation epoch into a ckptaudit run.

    from ckptaudit.integrations.lightning import CkptauditCallback
    trainer = L.Trainer(callbacks=[ModelCheckpoint(monitor="val_acc", mode="max"),
                                   CkptauditCallback("runs/exp1", task="binary", output="logit")])

What it writes per epoch (``checkpoints/epoch-NNNN``, NNNN = ``trainer.current_epoch``, as
Lightning counts it in its own ``epoch=`` file names): ``val.npz`` from its own inference
pass over the validation dataloader, run with torch's RNG forked so training is unchanged;
``meta.json`` with ``trainer.callback_metrics`` and ``global_step``; and the weights, a full
Lightning ``model.ckpt`` (``weights="ckpt"``, reloads with ``LitModel.load_from_checkpoint``),
``model.pt`` (``weights="state_dict"``) or nothing (``weights=None``).

run.json ``selected_by`` mirrors the trainer's ``ModelCheckpoint`` (monitor, mode), and
``chosen`` is the epoch whose save became its ``best_model_path``, resolved when fit ends:
ModelCheckpoint saves in the same train-epoch-end hook *after* user callbacks, so the best
of epoch N is known only at epoch N+1 or at the end.

Under DDP every process predicts its shard; the shards are gathered by dataset index (the
DistributedSampler's padding rows are kept once) and global rank 0 writes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np

from ..errors import UsageError
from ..store.recorder import Recorder
from . import BatchPredictions, collect, default_predict, distributed, forked_rng, gather_by_index

WEIGHTS = ("ckpt", "state_dict", None)


class CkptauditCallback(pl.Callback):
    """Record each validation epoch of ``Trainer.fit`` into the run at ``path``.

    ``predict(pl_module, batch)`` returns ``(target, output)`` or ``(target, output, ids)``
    for one validation batch (default: ``(x, y[, ids])`` batches, ``output = pl_module(x)``).
    ``dataloader`` replaces the trainer's validation dataloader for recording. ``resume`` /
    ``fresh`` say what to do with an existing run (see :class:`ckptaudit.Recorder`); an
    existing run without either fails here, before training.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        task: str,
        output: str,
        classes: Sequence[str] | None = None,
        positive_class: int = 1,
        weights: str | None = "ckpt",
        predict: Callable[[Any, Any], BatchPredictions] | None = None,
        dataloader: Any = None,
        hash_inputs: bool = True,
        resume: bool = False,
        fresh: bool = False,
    ) -> None:
        super().__init__()
        if weights not in WEIGHTS:
            raise UsageError(f"weights must be 'ckpt', 'state_dict' or None, not {weights!r}")
        if predict is not None and not callable(predict):
            raise UsageError(f"predict must be a function (pl_module, batch) -> (target, output[, ids]), not {predict!r}")
        Recorder.existing_run(path, resume=resume, fresh=fresh)  # fail before training, read-only on every rank
        self.path = Path(path)
        self.options: dict[str, Any] = dict(
            task=task, output=output, classes=classes, positive_class=positive_class, resume=resume, fresh=fresh
        )
        self.weights = weights
        self.predict = predict
        self.dataloader = dataloader
        self.hash_inputs = hash_inputs
        self.recorder: Recorder | None = None
        self._pending: dict[str, np.ndarray] | None = None
        self._best: tuple[str, Any] | None = None
        self._best_epoch: int | None = None
        self._last_epoch: int | None = None

    # -- hooks ---------------------------------------------------------------------------

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        monitor, mode = _selection(trainer)
        if trainer.is_global_zero:
            self.recorder = Recorder(self.path, **self.options, selected_by=monitor, mode=mode)
        self._best = _best_state(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._pending = self._predict(trainer, pl_module)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._note_best(trainer, self._last_epoch)  # ModelCheckpoint saved the last epoch after our hook

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a ModelCheckpoint that saves at validation end (save_on_train_epoch_end=False) has saved this epoch
        self._note_best(trainer, trainer.current_epoch)
        if self._pending is None:
            return  # no validation this epoch
        arrays, self._pending = self._pending, None
        epoch = trainer.current_epoch
        if trainer.is_global_zero and self.recorder is not None:
            model = pl_module.state_dict() if self.weights == "state_dict" else None
            write = _write_ckpt(trainer) if self.weights == "ckpt" else None
            self.recorder.save(
                epoch,
                model,
                val_target=arrays["target"],
                val_output=arrays["output"],
                val_ids=arrays.get("id"),
                val_input_hash=arrays.get("input_hash"),
                logged=_logged(trainer),
                step=trainer.global_step,
                write=write,
            )
        self._last_epoch = epoch

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._note_best(trainer, self._last_epoch)
        if trainer.is_global_zero and self.recorder is not None and self._best_epoch is not None:
            self.recorder.choose(self._best_epoch)

    # -- helpers -------------------------------------------------------------------------

    def _note_best(self, trainer: pl.Trainer, epoch: int | None) -> None:
        """Attribute a change of ModelCheckpoint's best to the epoch that was just saved."""
        state = _best_state(trainer)
        if state != self._best and state is not None and state[0] and epoch is not None:
            self._best_epoch = epoch
        self._best = state

    def _predict(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, np.ndarray]:
        import torch

        loader = self.dataloader if self.dataloader is not None else trainer.val_dataloaders
        if isinstance(loader, (list, tuple)):
            loader = loader[0]  # NOTE: the first validation dataloader is the one recorded
        if loader is None:
            raise UsageError("no validation dataloader to record: give Trainer.fit val_dataloaders or dataloader=")
        predict = self.predict or default_predict
        was_training = pl_module.training
        pl_module.eval()
        try:
            with forked_rng(), torch.no_grad():
                batches = (pl_module.transfer_batch_to_device(b, pl_module.device, 0) for b in loader)
                local = collect(batches, lambda b: predict(pl_module, b), hash_inputs=self.hash_inputs)
                if distributed():
                    sampler = getattr(loader, "sampler", None)
                    from torch.utils.data.distributed import DistributedSampler

                    if isinstance(sampler, DistributedSampler) or hasattr(sampler, "num_replicas"):
                        indices = np.fromiter(iter(sampler), dtype=np.int64)  # type: ignore[arg-type]
                        local = gather_by_index(local, indices, len(loader.dataset))
                    # NOTE: without a distributed sampler every process saw every row: rank 0's are written.
        finally:
            pl_module.train(was_training)
        return local


def _selection(trainer: pl.Trainer) -> tuple[str | None, str | None]:
    cb = trainer.checkpoint_callback
    monitor = getattr(cb, "monitor", None)
    return (monitor, getattr(cb, "mode", None)) if monitor else (None, None)


def _best_state(trainer: pl.Trainer) -> tuple[str, Any] | None:
    cb = trainer.checkpoint_callback
    if cb is None or not getattr(cb, "monitor", None):
        return None
    score = getattr(cb, "best_model_score", None)
    return (getattr(cb, "best_model_path", ""), None if score is None else float(score))


def _logged(trainer: pl.Trainer) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in trainer.callback_metrics.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue  # a non-scalar logged value is not a metric
    return out


def _write_ckpt(trainer: pl.Trainer) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        # NOTE: dump_checkpoint, not trainer.save_checkpoint: the latter is collective under DDP,
        # and only rank 0 records. The dict is what ModelCheckpoint itself writes.
        checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
        trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, folder / "model.ckpt")

    return write
