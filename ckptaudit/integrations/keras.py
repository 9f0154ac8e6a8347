"""Keras 3: a callback that records every epoch into a ckptaudit run (any backend; tested on torch).

    from ckptaudit.integrations.keras import CkptauditKerasCallback
    mc = keras.callbacks.ModelCheckpoint("best.keras", monitor="val_auc", mode="max", save_best_only=True)
    model.fit(x, y, validation_data=(xv, yv), callbacks=[mc, CkptauditKerasCallback("runs/exp1", validation_data=(xv, yv), checkpoint=mc, task="binary", output="probability")])

Keras callbacks do not see ``fit(validation_data=...)``: give the same data to the callback
(``(x, y)`` or ``(x, y, ids)``). Each epoch it predicts it in batches by calling the model
(``training=False``; no ``predict()`` data pipeline, and torch's, numpy's and Python's random
state forked, so training is unchanged) and writes ``checkpoints/epoch-NNNN`` with
``val.npz``, ``meta.json`` (the epoch's ``logs``: ``loss`` is the training loss) and
``model.keras``. NNNN counts from 1, as Keras prints epochs and fills ``{epoch}`` in
``ModelCheckpoint`` file names (its ``on_epoch_end`` and CSVLogger count from 0).

``selected_by`` mirrors ``checkpoint`` (your ``ModelCheckpoint``): its monitor, and its
mode, resolved the way Keras resolves ``mode="auto"`` (written when training ends). With
``save_best_only=True`` Keras overwrites one file and records nothing about which epoch won;
``chosen`` is the epoch whose logs made ModelCheckpoint's ``best`` change. Keras on the torch
backend has no multi-process training: nothing is gathered.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:
    import keras  # type: ignore[import-untyped]
except ModuleNotFoundError as exc:
    # NOTE: without KERAS_BACKEND (or keras.json) Keras 3 loads tensorflow, which
    # ckptaudit[keras] does not bring: say what to set, not "No module named 'tensorflow'"
    backend = (exc.name or "").split(".")[0]
    if backend not in ("tensorflow", "jax", "torch"):
        raise
    raise ImportError(
        f"Keras could not load its backend {backend!r} (not installed; KERAS_BACKEND is "
        f"{os.environ.get('KERAS_BACKEND', 'not set')}): set KERAS_BACKEND=torch before importing keras "
        '(the [keras] extra installs torch: pip install -e ".[keras]" from the checkout)',
        name=exc.name,
    ) from exc

from ..errors import UsageError
from ..store.recorder import Recorder, hash_rows, to_numpy
from . import forked_rng


class CkptauditKerasCallback(keras.callbacks.Callback):
    """Record each epoch of ``model.fit`` into the run at ``path``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        validation_data: tuple[Any, ...],
        task: str,
        output: str,
        classes: Sequence[str] | None = None,
        positive_class: int = 1,
        checkpoint: Any = None,
        weights: bool = True,
        batch_size: int = 256,
        hash_inputs: bool = True,
        resume: bool = False,
        fresh: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise UsageError("validation_data must be (x, y) or (x, y, ids), the data given to fit(validation_data=...)")
        if checkpoint is not None and not hasattr(checkpoint, "monitor"):
            raise UsageError(f"checkpoint must be your keras.callbacks.ModelCheckpoint, not {checkpoint!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise UsageError(f"batch_size must be a positive integer, not {batch_size!r}")
        Recorder.existing_run(path, resume=resume, fresh=fresh)  # fail before training
        self.path = Path(path)
        self.options: dict[str, Any] = dict(
            task=task, output=output, classes=classes, positive_class=positive_class, resume=resume, fresh=fresh
        )
        self.x = validation_data[0]
        self.y = to_numpy(validation_data[1])
        self.ids = to_numpy(validation_data[2]) if len(validation_data) == 3 else None
        self.hashes = hash_rows(self.x) if hash_inputs and isinstance(self.x, np.ndarray) else None
        self.checkpoint = checkpoint
        self.weights = weights
        self.batch_size = batch_size
        self.recorder: Recorder | None = None
        self._best: Any = None
        self._best_epoch: int | None = None
        self._last_epoch: int | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        mode = getattr(self.checkpoint, "mode", None)
        monitor = getattr(self.checkpoint, "monitor", None)
        self.recorder = Recorder(
            self.path,
            **self.options,
            selected_by=monitor,
            mode=mode if mode in ("min", "max") else None,
        )
        self._best = getattr(self.checkpoint, "best", None)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._note_best(self._last_epoch)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        assert self.recorder is not None
        number = epoch + 1  # as Keras prints it and names files
        output = self._predict()
        model = self.model

        def write(folder: Path) -> None:
            model.save(folder / "model.keras")

        logged = {}
        for key, value in (logs or {}).items():
            try:
                logged[key] = float(value)
            except (TypeError, ValueError):
                continue
        self.recorder.save(
            number,
            val_target=self.y,
            val_output=output,
            val_ids=self.ids,
            val_input_hash=self.hashes,
            logged=logged,
            write=write if self.weights else None,
        )
        self._last_epoch = number
        self._note_best(number)  # ModelCheckpoint may have run before this callback

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._note_best(self._last_epoch)
        if self.recorder is None:
            return
        cb = self.checkpoint
        if cb is not None and getattr(cb, "monitor", None):
            op = getattr(cb, "monitor_op", None)
            mode = cb.mode if cb.mode in ("min", "max") else None
            if mode is None and op is not None:
                mode = "min" if op is keras.ops.less else "max" if op is keras.ops.greater else None
            self.recorder.select_by(cb.monitor, mode)
        if self._best_epoch is not None:
            self.recorder.choose(self._best_epoch)

    def _note_best(self, epoch: int | None) -> None:
        best = getattr(self.checkpoint, "best", None)
        if epoch is not None and best is not None and getattr(self.checkpoint, "save_best_only", False) and best != self._best:
            self._best_epoch = epoch
        self._best = best

    def _predict(self) -> np.ndarray:
        parts = []
        with forked_rng():
            for start in range(0, len(self.y), self.batch_size):
                chunk = self.model(self.x[start : start + self.batch_size], training=False)
                parts.append(np.asarray(keras.ops.convert_to_numpy(chunk)))
        return np.concatenate(parts)
