"""The recorder: what a training loop calls once per epoch to write the run format.

Usage in a plain PyTorch loop::

    rec = ckptaudit.Recorder("runs/exp1", task="binary", output="logit", classes=["legit", "fraud"])
    for epoch in range(epochs):
        ...train...
        rec.save(epoch, model, val_target=y_val, val_output=val_logits,
                 train_target=y_tr, train_output=train_logits, logged={"val_loss": vl})

Every array is checked at ``save`` time by the reader's own checks
(:func:`ckptaudit.runs.check_arrays` and :class:`ckptaudit.runs.ValSetGuard`), so a misuse
fails at the first epoch with the message ``rank`` would print after training.

Every write is atomic: a checkpoint is written into a hidden temporary folder (which
every ckptaudit command ignores) and renamed into place, so a crash or a concurrent
``rank`` never sees half a checkpoint. torch is imported only to save weights; arrays may
be torch tensors or numpy arrays. The low-level writes (prediction files, run.json, input
hashes) live in :mod:`~ckptaudit.store.runwriter` and are re-exported here.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunFormatError, UsageError
from .reader import (
    CHECKPOINTS_DIR,
    FORMAT,
    META_FILE,
    OUTPUTS,
    RUN_FILE,
    TASKS,
    Checkpoint,
    Predictions,
    Run,
    ValSetGuard,
    check_arrays,
    is_in_progress,
    read_predictions,
    read_run,
)
from .remote import is_remote
from .runwriter import (
    _fsync_dir as _fsync_dir,
)
from .runwriter import (
    _temp_lock as _temp_lock,
)
from .runwriter import (
    clear_stale_temporaries as clear_stale_temporaries,
)
from .runwriter import (
    hash_rows as hash_rows,
)
from .runwriter import (
    prediction_arrays,
)
from .runwriter import (
    to_numpy as to_numpy,
)
from .runwriter import (
    update_run_json as update_run_json,
)
from .runwriter import (
    write_json_atomic as write_json_atomic,
)
from .runwriter import (
    write_predictions as write_predictions,
)

WriteHook = Callable[[Path], None]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _arrays(split: str, target: Any, output: Any, ids: Any, inputs: Any, input_hash: Any) -> dict[str, np.ndarray]:
    """One split's arrays as they will be stored (numpy; inputs hashed per row)."""
    if target is None or output is None:
        raise UsageError(f"{split}_target and {split}_output must be given together")
    arrays = prediction_arrays(target, output, ids, inputs, input_hash)
    for key, arr in arrays.items():
        if arr.dtype == object:
            raise UsageError(
                f"{split} {key!r} holds Python objects ({arr.dtype}); give numbers or strings (files are read without pickle)"
            )
    return arrays


def _group_columns(path: Path, groups: Any, n: int) -> dict[str, np.ndarray]:
    """A split's group columns as stored, checked with the reader's own checks."""
    from .groups import check_groups, group_arrays

    columns = group_arrays(groups, to_numpy)
    check_groups(path, columns, n)
    return columns


#: the run.json keys a recorder sets when it is built
_RECORDER_KEYS = ("format", "task", "output", "classes", "num_classes", "positive_class", "selected_by")


class Recorder:
    """Writes one run in the ``ckptaudit/1`` format (see docs/format.md).

    ``selected_by`` names the metric training picks its best checkpoint by, and ``mode``
    its direction (``"min"``/``"max"``), as plain keywords (a ``{"metric", "mode"}`` mapping
    is accepted too). When ``path`` already holds checkpoints, say what to do with them:
    ``resume=True`` continues after the last recorded epoch (saving an epoch already recorded
    is an error); ``fresh=True`` moves the earlier run into ``PATH/.replaced-<UTC time>/``
    (ignored by every command; nothing is deleted) and starts again. Neither is an error
    here, before training starts.

    ``live_audit`` (default on) runs the cheap findings at every save
    (:mod:`ckptaudit.auditing.live`: leakage, accuracy paradox, non-finite outputs,
    logged-metric mismatch), reported through ``report`` (Python warnings by default); with
    ``on_finding="raise"`` an error-severity finding raises
    :class:`~ckptaudit.auditing.live.LiveAuditError` once its checkpoint is written.

    ``path`` may be a URL (``s3://bucket/runs/exp1``, ``memory://...``): the run is then
    written to object storage (:mod:`ckptaudit.store.remoterecorder`, docs/storage.md).
    """

    def __new__(cls, path: Any = None, *args: Any, **kwargs: Any) -> Recorder:
        path = kwargs.get("path", path)
        if cls is Recorder and isinstance(path, str) and is_remote(path):
            from .remoterecorder import RemoteRecorder

            cls = RemoteRecorder
        return super().__new__(cls)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        task: str,
        output: str,
        classes: Sequence[str] | None = None,
        positive_class: int = 1,
        selected_by: str | Mapping[str, str] | None = None,
        mode: str | None = None,
        resume: bool = False,
        fresh: bool = False,
        num_classes: int | None = None,
        live_audit: bool = True,
        on_finding: str = "warn",
        report: Callable[[str], None] | None = None,
    ) -> None:
        if on_finding not in ("warn", "raise"):
            raise UsageError(f"on_finding must be 'warn' or 'raise', not {on_finding!r}")
        if not isinstance(path, (str, os.PathLike)):
            raise UsageError(f"path must be a folder path (str or pathlib.Path), not {type(path).__name__}")
        if task not in TASKS:
            raise UsageError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
        if output not in OUTPUTS:
            raise UsageError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
        if task == "multiclass" and output == "label" and classes is None and num_classes is None:
            # NOTE: hard labels cannot tell how many classes exist (docs/format.md).
            raise UsageError("a multiclass run of hard labels needs classes=[...] or num_classes=N")
        if classes is not None and (isinstance(classes, str) or not all(isinstance(c, str) for c in classes)):
            raise UsageError(f"classes must be a list of class names (strings), not {classes!r}")
        if resume and fresh:
            raise UsageError("resume=True and fresh=True contradict each other: choose one")
        if isinstance(selected_by, Mapping):
            if mode is not None:
                raise UsageError("give the mode inside selected_by or as mode=, not both")
            mode = selected_by.get("mode")
            selected_by = selected_by.get("metric")
        if selected_by is not None and (not isinstance(selected_by, str) or not selected_by):
            raise UsageError(f"selected_by must be a metric name such as 'val_loss', not {selected_by!r}")
        if mode is not None and mode not in ("min", "max"):
            raise UsageError(f"mode must be 'min' or 'max', not {mode!r}")
        if mode is not None and selected_by is None:
            raise UsageError("mode= is the direction of selected_by=: give the metric name too")
        self.path = Path(path)
        self.checkpoints = self.path / CHECKPOINTS_DIR
        run: dict[str, Any] = {"format": FORMAT, "task": task, "output": output}
        if classes is not None:
            run["classes"] = list(classes)
        if num_classes is not None:
            run["num_classes"] = int(num_classes)
        if task == "binary":
            run["positive_class"] = positive_class
        if selected_by is not None:
            run["selected_by"] = {"metric": selected_by} if mode is None else {"metric": selected_by, "mode": mode}
        run_file = self.path / RUN_FILE
        existing = self.existing_run(self.path, resume=resume, fresh=fresh)
        if existing and fresh:
            self._move_aside()
            existing = None
        elif existing and resume:
            for key in ("task", "output"):
                if existing.raw.get(key) != run[key]:
                    raise UsageError(
                        f"run.json says {key}={existing.raw.get(key)!r}, the recorder was given {run[key]!r}", run_file
                    )
            # NOTE: a resumed run keeps its 'chosen'; what was given now overrides the rest.
            run = {**existing.raw, **run}
        self._run = self._validated(run)
        self.run = run
        self._guard = ValSetGuard(self._run)
        self.last_epoch: int | None = None
        self._recorded: dict[str, int] = {}
        if existing:
            self.last_epoch = existing.checkpoints[-1].epoch
            self._recorded = {c.name: c.epoch for c in existing.checkpoints}
            first = existing.checkpoints[0]
            if first.has_split("val"):
                self._guard.check(first, read_predictions(self._run, first))
        self._resumed_after = self.last_epoch  # epochs up to here belong to the earlier session
        self._resumed_step = existing.checkpoints[-1].step if existing else None
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        # NOTE: a temporary left by a killed save() holds a checkpoint's weights that nothing
        # else would ever remove; one another live recorder is writing is locked, and kept.
        clear_stale_temporaries(self.checkpoints)
        # only the keys this recorder sets change: another writer's keys (chosen) stay
        self.run = update_run_json(self.path, {k: v for k, v in run.items() if k in _RECORDER_KEYS})
        # -- live audit (ckptaudit/auditing/live.py) --
        self.live: Any = None
        if live_audit:
            # NOTE: the audit reads the run format, so the store never imports it: the package root
            # (the composition root every room may ask) builds the observer.
            from .. import _live_audit

            self.live = _live_audit(self._run, on_finding=on_finding, report=report)

    @staticmethod
    def existing_run(path: str | os.PathLike[str], *, resume: bool = False, fresh: bool = False) -> Run | None:
        """The run already at ``path`` when it holds checkpoints, else None; a
        :class:`UsageError` when it does and neither ``resume`` nor ``fresh`` is asked for.
        Reads only: the framework callbacks call it when they are built, before training."""
        if resume and fresh:
            raise UsageError("resume=True and fresh=True contradict each other: choose one")
        shown, remote = path, isinstance(path, str) and is_remote(path)
        if remote:
            from .remoterecorder import existing_remote_run

            mirror = existing_remote_run(path)  # a local mirror: the checks below, as for a folder
            if mirror is None:
                return None
            path = mirror
        path = Path(path)
        if not (path / RUN_FILE).is_file():
            return None
        try:
            run = read_run(path)
        except RunFormatError as exc:
            raise UsageError(f"cannot resume or replace the existing run: {exc.problem if remote else exc}", shown) from None
        if run.checkpoints and not (resume or fresh):
            raise UsageError(
                f"the run already holds {len(run.checkpoints)} checkpoint(s), up to epoch {run.checkpoints[-1].epoch}: pass "
                "resume=True to continue after it, or fresh=True to move it aside and start again",
                shown,
            )
        return run if run.checkpoints else None

    def select_by(self, metric: str | None, mode: str | None = None) -> None:
        """Set run.json ``selected_by`` once it is known (a framework's checkpoint callback is
        found only when training starts); None removes it."""
        if metric is not None and (not isinstance(metric, str) or not metric):
            raise UsageError(f"selected_by must be a metric name such as 'val_loss', not {metric!r}")
        if mode is not None and mode not in ("min", "max"):
            raise UsageError(f"mode must be 'min' or 'max', not {mode!r}")
        if metric is None:
            self.run = update_run_json(self.path, {}, remove=("selected_by",))
        else:
            value = {"metric": metric} if mode is None else {"metric": metric, "mode": mode}
            self.run = update_run_json(self.path, {"selected_by": value})

    def _move_aside(self) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        aside = self.path / f".replaced-{stamp}"
        aside.mkdir()
        for name in (RUN_FILE, CHECKPOINTS_DIR):
            if (self.path / name).exists():
                os.rename(self.path / name, aside / name)
        _fsync_dir(self.path)

    def _validated(self, run: dict[str, Any]) -> Run:
        """run.json as the reader reads it, so its own checks judge it before training."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="ckptaudit-run-") as scratch:
            (Path(scratch) / RUN_FILE).write_text(json.dumps(run), encoding="utf-8")
            try:
                parsed = read_run(scratch)
            except RunFormatError as exc:
                raise UsageError(f"run.json would be unreadable: {exc.problem}", self.path) from None
        return Run(**{**parsed.__dict__, "path": self.path, "name": str(self.path)})

    @property
    def next_epoch(self) -> int:
        """The first epoch not yet recorded (0 for a new run)."""
        return 0 if self.last_epoch is None else self.last_epoch + 1

    def save(
        self,
        epoch: int,
        model: Any = None,
        *,
        val_target: Any,
        val_output: Any,
        val_ids: Any = None,
        val_inputs: Any = None,
        val_input_hash: Any = None,
        val_groups: Any = None,
        train_target: Any = None,
        train_output: Any = None,
        train_ids: Any = None,
        train_inputs: Any = None,
        train_input_hash: Any = None,
        train_groups: Any = None,
        logged: Mapping[str, float] | None = None,
        step: int | None = None,
        optimizer: Any = None,
        scheduler: Any = None,
        name: str | None = None,
        write: WriteHook | None = None,
    ) -> Path:
        """Write one checkpoint atomically and return its folder.

        ``model`` may be an ``nn.Module`` (its state_dict is saved to model.pt), a
        state_dict, or None (predictions only). ``*_inputs`` are hashed per row into
        ``input_hash`` (or give ``*_input_hash`` already computed); the inputs themselves are
        not stored. ``*_groups`` are the rows' group columns (one array, stored as ``group``,
        or a mapping of column name to array; docs/format.md). ``write(folder)`` writes the framework's own files (a Lightning .ckpt,
        model.safetensors, model.keras) into the temporary folder before it is renamed into
        place. The arrays are checked with the reader's own checks first: a problem raises
        :class:`RunFormatError` and writes nothing.
        """
        # NOTE: the reader refuses epochs and steps outside [0, 2**63-1] (docs/format.md).
        if not _is_int(epoch) or not 0 <= epoch <= 2**63 - 1:
            raise UsageError(f"epoch must be an integer from 0 to 2**63-1, not {epoch!r}")
        if step is not None and (not _is_int(step) or not 0 <= step <= 2**63 - 1):
            raise UsageError(f"step must be an integer from 0 to 2**63-1, not {step!r}")
        if write is not None and not callable(write):
            raise UsageError(f"write must be a function of the checkpoint folder, not {write!r}")
        name = f"epoch-{int(epoch):04d}" if name is None else name
        if not isinstance(name, str) or not name or "/" in name or os.sep in name or is_in_progress(name) or name in ("..",):
            raise UsageError(
                f"name must be a plain folder name (no '/', not starting with '.' or ending in '.tmp'), not {name!r}"
            )
        # NOTE: within one session an epoch may hold several checkpoints (evaluations every N steps).
        # NOTE: a resume in the middle of an epoch (evaluations by step) continues in its last recorded epoch.
        later_step = step is not None and self._resumed_step is not None and step > self._resumed_step
        if (
            self._resumed_after is not None
            and epoch <= self._resumed_after
            and name not in self._recorded
            and not (later_step and epoch == self._resumed_after)
        ):
            raise UsageError(
                f"epoch {epoch} is not after the last recorded epoch {self._resumed_after} (resume continues after it)", self.path
            )
        metrics: dict[str, float] = {}
        for key, value in (logged or {}).items():
            value = value.item() if hasattr(value, "item") else value
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise UsageError(f"logged {key!r} must be a number, not {value!r}")
            metrics[str(key)] = float(value)
        final = self.checkpoints / name
        if final.exists() or name in self._recorded:
            raise UsageError("checkpoint already exists", final)
        val = _arrays("val", val_target, val_output, val_ids, val_inputs, val_input_hash)
        train = None
        if train_target is not None or train_output is not None:
            train = _arrays("train", train_target, train_output, train_ids, train_inputs, train_input_hash)
        # The reader's checks, before anything is written: a misuse fails at epoch 0, not at `rank`.
        check_arrays(self._run, final / "val.npz", val["target"], val["output"], val.get("id"), val.get("input_hash"))
        if train is not None:
            check_arrays(
                self._run, final / "train.npz", train["target"], train["output"], train.get("id"), train.get("input_hash")
            )
        # NOTE: group columns (slices, issue 24): checked like the other arrays before writing
        val_group_cols = _group_columns(final / "val.npz", val_groups, val["target"].shape[0])
        train_group_cols = None if train is None else _group_columns(final / "train.npz", train_groups, train["target"].shape[0])
        ckpt = Checkpoint(path=final, name=name, epoch=int(epoch), step=step, logged=metrics)
        preds = Predictions(path=final / "val.npz", target=val["target"], output=val["output"], ids=val.get("id"))
        problem = self._guard.problem(ckpt, preds)
        if problem:
            raise RunFormatError(problem, self.path)
        tmp = self.checkpoints / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.mkdir()
        lock = _temp_lock(tmp)  # held until renamed: a cleaner never removes a live temporary
        try:
            write_predictions(
                tmp / "val.npz",
                val["target"],
                val["output"],
                val.get("id"),
                input_hash=val.get("input_hash"),
                groups=val_group_cols,
            )
            if train is not None:
                write_predictions(
                    tmp / "train.npz",
                    train["target"],
                    train["output"],
                    train.get("id"),
                    input_hash=train.get("input_hash"),
                    groups=train_group_cols,
                )
            weights: dict[str, Any] = {}
            if model is not None or optimizer is not None or scheduler is not None:
                import torch

                from .weights import describe_file

                saved = {
                    "model.pt": None if model is None else (model.state_dict() if hasattr(model, "state_dict") else model),
                    "optimizer.pt": None if optimizer is None else optimizer.state_dict(),
                    "scheduler.pt": None if scheduler is None else scheduler.state_dict(),
                }
                for file_name, state in saved.items():
                    if state is not None:
                        torch.save(state, tmp / file_name)
                        # NOTE: size, sha256 and tensor-content fingerprint, so the gate can
                        # identify a re-saved copy without loading every checkpoint.
                        weights[file_name] = describe_file(tmp / file_name, state)
            if write is not None:
                write(tmp)
            meta: dict[str, Any] = {"epoch": int(epoch)}
            if step is not None:
                meta["step"] = int(step)
            if metrics:
                meta["logged"] = metrics
            if weights:
                meta["weights"] = weights
            with open(tmp / META_FILE, "w", encoding="utf-8") as fh:
                json.dump(meta, fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            _fsync_dir(tmp)
            os.rename(tmp, final)
            _fsync_dir(self.checkpoints)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            os.close(lock)
        self._committed(final)
        self._recorded[name] = int(epoch)
        self.last_epoch = int(epoch) if self.last_epoch is None else max(self.last_epoch, int(epoch))
        if self.live is not None:
            # the arrays in memory, not the files: the live audit costs no read of val.npz
            self.live.observe(ckpt, replace(preds, input_hash=val.get("input_hash")))
        return final

    def _committed(self, folder: Path) -> None:
        """A checkpoint was just renamed into place (a remote recorder publishes it here)."""

    def choose(self, which: int | str) -> str:
        """Record the checkpoint training picked as its best (run.json ``chosen``): an epoch
        number or a checkpoint name. Returns the checkpoint's name."""
        if _is_int(which):
            names = [n for n, e in self._recorded.items() if e == int(which)]
            if len(names) != 1:
                found = "no checkpoint" if not names else f"{len(names)} checkpoints ({', '.join(sorted(names))})"
                raise UsageError(f"{found} recorded for epoch {which}; give the checkpoint name", self.checkpoints)
            name = names[0]
        elif isinstance(which, str):
            name = which
        else:
            raise UsageError(f"choose() takes an epoch number or a checkpoint name, not {which!r}")
        if not (self.checkpoints / name).is_dir() or is_in_progress(name):
            raise UsageError(f"no checkpoint named {name!r}", self.checkpoints)
        self.run = update_run_json(self.path, {"chosen": name})
        return name
