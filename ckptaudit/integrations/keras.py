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

A second ``fit()`` with the same callback (a head, then fine-tuning) continues the run: its
epochs are numbered after the last recorded one, whether or not ``initial_epoch`` is given.
A new callback with ``resume=True`` needs ``fit(initial_epoch=N)`` at the last recorded epoch
(checked before the first batch). ``output_key`` picks the prediction of a model with dict (or
tuple) outputs; ``predict(model, x)`` replaces the call of the model on a batch of inputs.
Outputs under ``mixed_bfloat16`` are widened to float32. ``train_data=(x, y[, ids])`` with
``train_sample=N`` records N fixed training rows (seeded) per epoch as ``train.npz``, with input
hashes, for the leakage audit. The epoch's logged ``val_accuracy`` (or ``val_mse``/``val_mae``)
is compared with what the recorded predictions score: a warning says when they disagree (e.g.
``validation_data`` given to the callback is not what ``fit`` validated on).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
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

from ..auditing.live import check_on_finding
from ..errors import UsageError
from ..store.recorder import Recorder, hash_rows, to_numpy
from ..store.remotewrite import run_location
from . import LoggedCheck, OutputKey, Resumed, as_array, check_train_sample, fit_shapes, forked_rng, sample_rows, select_output


class CkptauditKerasCallback(keras.callbacks.Callback):
    """Record each epoch of ``model.fit`` into the run at ``path``.

    ``val_groups`` (one group label per row of ``validation_data``, or a mapping of column
    name to such arrays) is stored as the ``group`` column(s) of every ``val.npz``.
    """

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
        output_key: OutputKey = None,
        predict: Callable[[Any, Any], Any] | None = None,
        train_data: tuple[Any, ...] | None = None,
        train_sample: int | None = None,
        seed: int = 0,
        check_logged: bool = True,
        live_audit: bool = True,
        on_finding: str = "warn",
        resume: bool = False,
        fresh: bool = False,
        val_groups: Any = None,
    ) -> None:
        super().__init__()
        if predict is not None and not callable(predict):
            raise UsageError(f"predict must be a function (model, x_batch) -> output, not {predict!r}")
        self.train_sample = check_train_sample(train_sample)
        if (train_data is None) != (self.train_sample is None):
            raise UsageError("train_sample=N and train_data=(x, y[, ids]) go together")
        if train_data is not None and (not isinstance(train_data, (tuple, list)) or len(train_data) not in (2, 3)):
            raise UsageError("train_data must be (x, y) or (x, y, ids), the training data given to fit()")
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise UsageError("validation_data must be (x, y) or (x, y, ids), the data given to fit(validation_data=...)")
        if checkpoint is not None and not hasattr(checkpoint, "monitor"):
            raise UsageError(f"checkpoint must be your keras.callbacks.ModelCheckpoint, not {checkpoint!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise UsageError(f"batch_size must be a positive integer, not {batch_size!r}")
        existing = Recorder.existing_run(path, resume=resume, fresh=fresh)  # fail before training
        self.val_groups = val_groups  # slices (issue 24): validation_data's rows' group column(s)
        self.resumed = Resumed(None if fresh else existing)
        self.path = run_location(path)  # a URL stays a URL (docs/storage.md)
        self.task = task
        self.options: dict[str, Any] = dict(
            task=task, output=output, classes=classes, positive_class=positive_class, resume=resume, fresh=fresh
        )
        # the live audit (ckptaudit/auditing/live.py), reported as this framework reports
        self.options.update(live_audit=live_audit, on_finding=check_on_finding(on_finding), report=_keras_warn)
        self.x = validation_data[0]
        self.y = to_numpy(validation_data[1])
        self.ids = to_numpy(validation_data[2]) if len(validation_data) == 3 else None
        self.hashes = hash_rows(self.x) if hash_inputs and isinstance(self.x, np.ndarray) else None
        self.checkpoint = checkpoint
        self.weights = weights
        self.batch_size = batch_size
        self.output_key = output_key
        self.predict = predict
        self.logged_check = LoggedCheck(path, enabled=check_logged)
        self.train: tuple[Any, np.ndarray, np.ndarray | None, np.ndarray | None] | None = None
        if train_data is not None and self.train_sample is not None:
            y = to_numpy(train_data[1])
            rows = sample_rows(len(y), self.train_sample, seed)
            x = train_data[0][rows]
            ids = to_numpy(train_data[2])[rows] if len(train_data) == 3 else None
            self.train = (x, y[rows], ids, hash_rows(x) if hash_inputs and isinstance(x, np.ndarray) else None)
        self.recorder: Recorder | None = None
        self._best: Any = None
        self._best_epoch: int | None = None
        self._last_epoch: int | None = None
        self._offset: int | None = None  # added to Keras' epoch numbers in this fit()

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        mode = getattr(self.checkpoint, "mode", None)
        monitor = getattr(self.checkpoint, "monitor", None)
        if self.recorder is None:  # a second fit() with the same callback continues the run
            self.recorder = Recorder(
                self.path,
                **self.options,
                selected_by=monitor,
                mode=mode if mode in ("min", "max") else None,
            )
            self._best = getattr(self.checkpoint, "best", None)
        self._offset = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._offset is None:
            number = epoch + 1
            if self._last_epoch is not None:
                # same callback, another fit(): continue after this session's last epoch
                self._offset = max(0, self._last_epoch + 1 - number)
            else:
                self._offset = 0
                last = self.resumed.last
                if last is not None and number <= last.epoch:
                    raise UsageError(
                        f"fit() starts at epoch {number} but the run already holds {last.name}: "
                        f"pass initial_epoch={last.epoch} to fit() to continue it, or fresh=True to start again",
                        self.path,
                    )
        self._note_best(self._last_epoch)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        assert self.recorder is not None
        number = epoch + 1 + (self._offset or 0)  # as Keras prints it and names files
        target, output = fit_shapes(self.task, self.y, self._predict(self.x, len(self.y)))
        model = self.model

        def write(folder: Path) -> None:
            model.save(folder / "model.keras")

        logged = {}
        for key, value in (logs or {}).items():
            try:
                logged[key] = float(value)
            except (TypeError, ValueError):
                continue
        name = f"epoch-{number:04d}"
        if not self.resumed.already(name, target, output):
            self.logged_check(name, logged, target, output)
            extra: dict[str, Any] = {}
            if self.train is not None:
                x, y, ids, hashes = self.train
                t_target, t_output = fit_shapes(self.task, y, self._predict(x, len(y)))
                extra = dict(train_target=t_target, train_output=t_output, train_ids=ids, train_input_hash=hashes)
            self.recorder.save(
                number,
                val_target=target,
                val_output=output,
                val_ids=self.ids,
                val_input_hash=self.hashes,
                val_groups=self.val_groups,
                logged=logged,
                write=write if self.weights else None,
                **extra,
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

    def _predict(self, x: Any, n: int) -> np.ndarray:
        parts = []
        with forked_rng():
            for start in range(0, n, self.batch_size):
                batch = x[start : start + self.batch_size]
                out = self.predict(self.model, batch) if self.predict is not None else self.model(batch, training=False)
                out = select_output(out, self.output_key)
                parts.append(as_array(keras.ops.convert_to_numpy(out)))
        return np.concatenate(parts)


def _keras_warn(message: str) -> None:
    """A live-audit finding, as Keras callbacks report (EarlyStopping, ModelCheckpoint): a warning."""
    import warnings

    warnings.warn(message, UserWarning, stacklevel=2)
