"""PyTorch Lightning: a callback that records every validation into a ckptaudit run.

    from ckptaudit.integrations.lightning import CkptauditCallback
    trainer = L.Trainer(callbacks=[ModelCheckpoint(monitor="val_acc", mode="max"),
                                   CkptauditCallback("runs/exp1", task="binary", output="logit")])

Predictions are those Lightning scored: while ``validation_step`` runs, a forward hook keeps
what the module returns (one call per batch; ``output_key=`` picks ``"logits"`` out of a dict),
under the trainer's own precision (``bf16-mixed``) and with no second inference pass. Where
``validation_step`` does not call the module once per batch, or with ``predict=`` /
``dataloader=``, the callback runs its own pass instead (RNG forked, under the same
precision context), and says so once.

Each validation is a checkpoint. Once per epoch (the default): ``checkpoints/epoch-NNNN``,
NNNN = ``trainer.current_epoch`` as Lightning counts it in its own ``epoch=`` file names,
written at the train epoch's end. Several per epoch (``val_check_interval=0.25``, or an
integer interval): ``step-NNNNNNN`` by ``global_step``, written at validation end (where
ModelCheckpoint saves then). A checkpoint holds ``val.npz``, ``meta.json`` with
``trainer.callback_metrics`` and ``global_step``, optionally ``train.npz`` (``train_sample=N``
rows of the training set, a fixed seeded subset, scored at each validation in eval mode, with
their input hashes for the leakage audit) and the weights: a full Lightning ``model.ckpt``
(``weights="ckpt"``), ``model.pt`` (``weights="state_dict"``) or nothing (``weights=None``).

run.json ``selected_by`` mirrors the ``ModelCheckpoint`` that monitors a metric (a second one
that only keeps ``last`` is ignored), and ``chosen`` is the validation whose save became its
``best_model_path``: a change of best seen after a validation belongs to it (ModelCheckpoint
saves after user callbacks in the same hook). With several validation dataloaders the one the
monitor names (``val_acc/dataloader_idx_1``) is recorded, or ``val_loader=``; a warning says
which. What Lightning logged for validation accuracy is compared with the recorded
predictions (a warning when they disagree).

Under DDP every process predicts its shard; the shards are gathered by dataset index (the
DistributedSampler's padding rows are kept once) and global rank 0 writes.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np

from ..auditing.live import check_on_finding
from ..errors import UsageError
from ..store.recorder import Recorder, hash_rows
from ..store.remotewrite import run_location
from . import (
    BatchPredictions,
    LoggedCheck,
    OutputKey,
    Resumed,
    as_array,
    batch_inputs,
    check_train_sample,
    collect,
    default_predict,
    distributed,
    fit_shapes,
    forked_rng,
    gather_by_index,
    loader_of,
    sample_rows,
    select_output,
    sequence_index,
)

WEIGHTS = ("ckpt", "state_dict", None)


class CkptauditCallback(pl.Callback):
    """Record each validation of ``Trainer.fit`` into the run at ``path``.

    ``output_key`` picks the prediction out of a module that returns a dict (or a tuple, by
    position). ``predict(pl_module, batch)`` returns ``(target, output)`` or
    ``(target, output, ids)`` for one batch and makes the callback run its own pass (default:
    the outputs of ``validation_step``'s own forward call; targets and ids from ``(x, y[, ids])``
    batches or dicts with x/y/id keys). ``dataloader`` replaces the trainer's validation
    dataloader for recording (an own pass); ``val_loader`` picks one of several (index, or key
    of a dict). ``train_sample=N`` also records N fixed training rows (seeded by ``seed``) per
    validation. ``check_logged`` compares the logged validation accuracy with the recorded
    predictions. ``resume`` / ``fresh`` say what to do with an existing run (see
    :class:`ckptaudit.Recorder`); an existing run without either fails here, before training.
    ``val_groups`` (an array of one group label per validation row, in the recorded rows'
    order, or a mapping of column name to such arrays) is stored as the ``group`` column(s)
    of every ``val.npz`` (docs/slices.md).
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
        output_key: OutputKey = None,
        predict: Callable[[Any, Any], BatchPredictions] | None = None,
        dataloader: Any = None,
        val_loader: int | str | None = None,
        train_sample: int | None = None,
        seed: int = 0,
        hash_inputs: bool = True,
        check_logged: bool = True,
        live_audit: bool = True,
        on_finding: str = "warn",
        resume: bool = False,
        fresh: bool = False,
        val_groups: Any = None,
    ) -> None:
        super().__init__()
        if weights not in WEIGHTS:
            raise UsageError(f"weights must be 'ckpt', 'state_dict' or None, not {weights!r}")
        if predict is not None and not callable(predict):
            raise UsageError(f"predict must be a function (pl_module, batch) -> (target, output[, ids]), not {predict!r}")
        existing = Recorder.existing_run(path, resume=resume, fresh=fresh)  # fail before training, read-only on every rank
        self.path = run_location(path)  # a URL stays a URL (docs/storage.md)
        self.options: dict[str, Any] = dict(
            task=task, output=output, classes=classes, positive_class=positive_class, resume=resume, fresh=fresh
        )
        # the live audit (ckptaudit/auditing/live.py), reported as this framework reports
        self.options.update(live_audit=live_audit, on_finding=check_on_finding(on_finding), report=_rank_zero_warn)
        self.task = task
        self.weights = weights
        self.output_key = output_key
        self.predict = predict
        self.dataloader = dataloader
        self.val_loader = val_loader
        self.train_sample = check_train_sample(train_sample)
        self.seed = seed
        self.hash_inputs = hash_inputs
        # slices (issue 24): the validation rows' group column(s), in the recorded rows' order
        self.val_groups = val_groups
        self.resumed = Resumed(None if fresh else existing)
        self.logged_check = LoggedCheck(path, enabled=check_logged)
        self.recorder: Recorder | None = None
        self._per_step = False
        self._loader: int | str = 0
        self._loader_named = False  # the monitor names the recorded loader
        self._said_loader = False
        self._pending: tuple[str, dict[str, np.ndarray]] | None = None
        self._parts: dict[Any, dict[str, list[np.ndarray]]] = {}
        self._calls: list[Any] = []
        self._hook: Any = None
        self._own_pass = predict is not None or dataloader is not None
        self._best: tuple[str, Any] | None = None
        self._best_name: str | None = None
        self._last_validated: str | None = None

    # -- hooks ---------------------------------------------------------------------------

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        cb = _monitoring(trainer)
        monitor, mode = (cb.monitor, cb.mode) if cb is not None else (None, None)
        if trainer.is_global_zero:
            self.recorder = Recorder(self.path, **self.options, selected_by=monitor, mode=mode)
        interval = trainer.val_check_interval
        # NOTE: a float interval of 1.0 validates at each epoch's end; anything else (0.25, an
        # integer number of batches, or validation not tied to epochs) validates by step.
        self._per_step = not (isinstance(interval, float) and interval == 1.0) or trainer.check_val_every_n_epoch is None
        named = loader_of(monitor)
        self._loader_named = self.val_loader is None and named is not None
        self._loader = self.val_loader if self.val_loader is not None else (named or 0)
        self._best = _best_state(trainer)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a resume from before the last recorded validation fails here, before any training
        self.resumed.check_start(trainer.global_step, f"epoch {trainer.current_epoch}")

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._note_best(trainer)  # a save after the previous validation belongs to it
        self._parts = {}
        if not self._own_pass:
            self._hook = pl_module.register_forward_hook(lambda _m, _i, out: self._calls.append(out))

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._calls = []

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or self._own_pass or self._hook is None:
            return
        calls, self._calls = self._calls, []
        if len(calls) != 1:
            warnings.warn(
                f"ckptaudit: validation_step called the module {len(calls)} times for one batch; recording with an own "
                "inference pass instead (give predict= to say how a batch is predicted)",
                UserWarning,
                stacklevel=2,
            )
            self._own_pass = True
            return
        target, ids = _target_ids(batch)
        parts = self._parts.setdefault(dataloader_idx, {"target": [], "output": [], "id": [], "input_hash": []})
        parts["output"].append(as_array(select_output(calls[0], self.output_key)))
        parts["target"].append(as_array(target))
        if ids is not None:
            parts["id"].append(as_array(ids))
        x = batch_inputs(batch)
        if self.hash_inputs and x is not None and hasattr(x, "detach"):
            parts["input_hash"].append(hash_rows(x))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if trainer.sanity_checking:
            return
        arrays = self._predict(trainer, pl_module) if self._own_pass else self._captured(trainer)
        name = f"step-{trainer.global_step:07d}" if self._per_step else f"epoch-{trainer.current_epoch:04d}"
        self._last_validated = name
        if self._per_step:
            self._record(trainer, pl_module, name, arrays)  # ModelCheckpoint saves right after this hook
        else:
            self._pending = (name, arrays)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._note_best(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a ModelCheckpoint that saves at validation end (save_on_train_epoch_end=False) has saved this epoch
        self._note_best(trainer)
        if self._pending is None:
            return  # no validation this epoch
        (name, arrays), self._pending = self._pending, None
        self._record(trainer, pl_module, name, arrays)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._note_best(trainer)
        if trainer.is_global_zero and self.recorder is not None and self._best_name is not None:
            self.recorder.choose(self._best_name)

    # -- helpers -------------------------------------------------------------------------

    def _record(self, trainer: pl.Trainer, pl_module: pl.LightningModule, name: str, arrays: dict[str, np.ndarray]) -> None:
        if not trainer.is_global_zero or self.recorder is None:
            return
        target, output = fit_shapes(self.task, arrays["target"], arrays["output"])
        if self.resumed.already(name, target, output):
            return  # Lightning re-validated the restored checkpoint: recorded already, alike
        logged = _logged(trainer)
        slack = trainer.world_size if distributed() else 0  # the DistributedSampler's repeated rows count in the logged mean
        self.logged_check(
            name, logged, target, output, loader=self._loader if isinstance(self._loader, int) else None, slack_rows=slack
        )
        train = self._train_rows(trainer, pl_module) if self.train_sample else None
        model = pl_module.state_dict() if self.weights == "state_dict" else None
        write = _write_ckpt(trainer) if self.weights == "ckpt" else None
        extra: dict[str, Any] = {}
        if train is not None:
            t_target, t_output = fit_shapes(self.task, train["target"], train["output"])
            extra = dict(
                train_target=t_target, train_output=t_output, train_ids=train.get("id"), train_input_hash=train.get("input_hash")
            )
        self.recorder.save(
            trainer.current_epoch,
            model,
            val_target=target,
            val_output=output,
            val_ids=arrays.get("id"),
            val_input_hash=arrays.get("input_hash"),
            val_groups=self.val_groups,
            logged=logged,
            step=trainer.global_step,
            name=name,
            write=write,
            **extra,
        )

    def _note_best(self, trainer: pl.Trainer) -> None:
        """Attribute a change of ModelCheckpoint's best to the validation that preceded it."""
        state = _best_state(trainer)
        if state != self._best and state is not None and state[0] and self._last_validated is not None:
            self._best_name = self._last_validated
        self._best = state

    def _validation_loader(self, trainer: pl.Trainer) -> Any:
        loaders = trainer.val_dataloaders
        if isinstance(loaders, (list, tuple, dict)):
            if len(loaders) > 1 and not self._said_loader:
                self._said_loader = True
                keys = list(loaders) if isinstance(loaders, dict) else list(range(len(loaders)))
                which = self._loader if isinstance(self._loader, str) else keys[int(self._loader)]
                warnings.warn(
                    f"ckptaudit: {len(loaders)} validation dataloaders; recording dataloader {which!r} only"
                    + (" (the one the monitored metric is computed on)" if self._loader_named else "")
                    + "; give val_loader= to record another",
                    UserWarning,
                    stacklevel=3,
                )
            return sequence_index(loaders, self._loader)
        return loaders

    def _captured(self, trainer: pl.Trainer) -> dict[str, np.ndarray]:
        loader = self._validation_loader(trainer)
        index = self._loader
        if isinstance(index, str):
            index = list(trainer.val_dataloaders or {}).index(index)
        parts = self._parts.get(int(index))
        if not parts or not parts["target"]:
            raise UsageError(f"validation dataloader {self._loader!r} produced no batches to record")
        n = len(parts["target"])
        local = {k: np.concatenate(v) for k, v in parts.items() if v and len(v) == n}
        return self._gathered(local, loader)

    def _gathered(self, local: dict[str, np.ndarray], loader: Any) -> dict[str, np.ndarray]:
        if distributed():
            sampler = getattr(loader, "sampler", None)
            from torch.utils.data.distributed import DistributedSampler

            if isinstance(sampler, DistributedSampler) or hasattr(sampler, "num_replicas"):
                indices = np.fromiter(iter(sampler), dtype=np.int64)  # type: ignore[arg-type]
                local = gather_by_index(local, indices, len(loader.dataset))
            # NOTE: without a distributed sampler every process saw every row: rank 0's are written.
        return local

    def _predict(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, np.ndarray]:
        import torch

        loader = self.dataloader if self.dataloader is not None else self._validation_loader(trainer)
        if loader is None:
            raise UsageError("no validation dataloader to record: give Trainer.fit val_dataloaders or dataloader=")
        predict = self.predict or self._default_predict
        was_training = pl_module.training
        pl_module.eval()
        try:
            with forked_rng(), torch.no_grad(), trainer.precision_plugin.forward_context():
                batches = (pl_module.transfer_batch_to_device(b, pl_module.device, 0) for b in loader)
                local = collect(batches, lambda b: predict(pl_module, b), hash_inputs=self.hash_inputs)
            local = {k: as_array(v) for k, v in local.items()}
            local = self._gathered(local, loader)
        finally:
            pl_module.train(was_training)
        return local

    def _default_predict(self, pl_module: Any, batch: Any) -> BatchPredictions:
        target, out, ids = default_predict(pl_module, batch)
        return (target, select_output(out, self.output_key), ids)

    def _train_rows(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, np.ndarray]:
        """``train_sample`` fixed rows of the training set, predicted in eval mode (RNG forked,
        the trainer's precision); batches are collated by hand, so no DataLoader draws a seed."""
        import torch

        loader: Any = trainer.train_dataloader
        if isinstance(loader, (list, tuple, dict)):
            loader = sequence_index(loader, 0)
        dataset = getattr(loader, "dataset", None)
        if dataset is None or not hasattr(dataset, "__len__"):
            raise UsageError("train_sample= needs a training DataLoader over a dataset with a length")
        assert self.train_sample is not None
        rows = sample_rows(len(dataset), self.train_sample, self.seed)
        collate = loader.collate_fn
        size = loader.batch_size or 256
        predict = self.predict or self._default_predict
        was_training = pl_module.training
        pl_module.eval()
        try:
            with forked_rng(), torch.no_grad(), trainer.precision_plugin.forward_context():
                batches = (
                    pl_module.transfer_batch_to_device(
                        collate([dataset[int(i)] for i in rows[s : s + size]]), pl_module.device, 0
                    )
                    for s in range(0, len(rows), size)
                )
                got = collect(batches, lambda b: predict(pl_module, b), hash_inputs=self.hash_inputs)
        finally:
            pl_module.train(was_training)
        return {k: as_array(v) for k, v in got.items()}


def _target_ids(batch: Any) -> tuple[Any, Any]:
    """Target and ids of an ``(x, y[, ids])`` batch or a dict with y/target/labels and id keys."""
    if isinstance(batch, dict):
        target = next((batch[k] for k in ("y", "target", "labels", "label") if k in batch), None)
        if target is None:
            raise UsageError(f"a validation batch dict has no y/target/labels key (keys: {sorted(batch)}): give predict=")
        return target, batch.get("id")
    return batch[1], (batch[2] if len(batch) > 2 else None)


def _monitoring(trainer: pl.Trainer) -> Any:
    """The ModelCheckpoint that selects by a metric: with a ``last``-only one beside a
    ``best`` one, the latter (the first that monitors, when several do)."""
    callbacks = list(getattr(trainer, "checkpoint_callbacks", None) or [])
    return next((cb for cb in callbacks if getattr(cb, "monitor", None)), None)


def _best_state(trainer: pl.Trainer) -> tuple[str, Any] | None:
    cb = _monitoring(trainer)
    if cb is None:
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


def _rank_zero_warn(message: str) -> None:
    """A live-audit finding, as Lightning warns (on global rank 0, where the run is written)."""
    from lightning.pytorch.utilities import rank_zero_warn

    rank_zero_warn(message, category=UserWarning)
