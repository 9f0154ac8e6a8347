"""The recorder: what a training loop calls once per epoch to write the run format.

Usage in a plain PyTorch loop::

    rec = ckptaudit.Recorder("runs/exp1", task="binary", output="logit", classes=["legit", "fraud"])
    for epoch in range(epochs):
        ...train...
        rec.save(epoch, model, val_target=y_val, val_output=val_logits,
                 train_target=y_tr, train_output=train_logits, logged={"val_loss": vl})

Every write is atomic: a checkpoint is written into a hidden temporary folder (which
every ckptaudit command ignores) and renamed into place, so a crash or a concurrent
``rank`` never sees half a checkpoint. torch is imported only to save weights; arrays may
be torch tensors or numpy arrays.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError
from .runs import CHECKPOINTS_DIR, FORMAT, META_FILE, OUTPUTS, RUN_FILE, TASKS


def to_numpy(value: Any) -> np.ndarray:
    """A tensor (any device) or array-like as a numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(getattr(value, "dtype", "")) == "torch.bfloat16":
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def hash_rows(inputs: Any) -> np.ndarray:
    """A 64-bit content hash per row of ``inputs`` (first axis), as a uint64 array.

    Two rows hash alike exactly when their bytes (dtype and values) are alike, which is
    how the leakage audit finds validation rows copied from training under new ids.
    """
    arr = np.ascontiguousarray(to_numpy(inputs))
    n = arr.shape[0]
    flat = arr.reshape(n, -1)
    prefix = str(arr.dtype).encode()
    digests = b"".join(hashlib.blake2b(prefix + row.tobytes(), digest_size=8).digest() for row in flat)
    return np.frombuffer(digests, dtype="<u8").copy() if n else np.zeros(0, dtype="<u8")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def write_predictions(path: Path, target: Any, output: Any, ids: Any = None, inputs: Any = None, input_hash: Any = None) -> None:
    """Write one split's ``.npz`` (uncompressed: loading speed matters more than size)."""
    arrays: dict[str, np.ndarray] = {"target": to_numpy(target), "output": to_numpy(output)}
    if ids is not None:
        arrays["id"] = to_numpy(ids)
    if input_hash is not None:
        arrays["input_hash"] = to_numpy(input_hash)
    elif inputs is not None:
        arrays["input_hash"] = hash_rows(inputs)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
        fh.flush()
        os.fsync(fh.fileno())


class Recorder:
    """Writes one run in the ``ckptaudit/1`` format (see docs/format.md)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        task: str,
        output: str,
        classes: Sequence[str] | None = None,
        positive_class: int = 1,
        selected_by: Mapping[str, str] | None = None,
    ) -> None:
        if task not in TASKS:
            raise UsageError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
        if output not in OUTPUTS:
            raise UsageError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
        self.path = Path(path)
        self.checkpoints = self.path / CHECKPOINTS_DIR
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        run: dict[str, Any] = {"format": FORMAT, "task": task, "output": output}
        if classes is not None:
            run["classes"] = list(classes)
        if task == "binary":
            run["positive_class"] = positive_class
        if selected_by is not None:
            run["selected_by"] = dict(selected_by)
        run_file = self.path / RUN_FILE
        if run_file.exists():
            # NOTE: a resumed run keeps its file (and its 'chosen'), but must describe the
            # same predictions, or earlier checkpoints would be scored wrongly.
            existing = json.loads(run_file.read_text(encoding="utf-8"))
            for key in ("task", "output"):
                if existing.get(key) != run[key]:
                    raise UsageError(f"run.json says {key}={existing.get(key)!r}, the recorder was given {run[key]!r}", run_file)
            run = {**existing, **run}
        self.run = run
        write_json_atomic(run_file, run)

    def save(
        self,
        epoch: int,
        model: Any = None,
        *,
        val_target: Any,
        val_output: Any,
        val_ids: Any = None,
        val_inputs: Any = None,
        train_target: Any = None,
        train_output: Any = None,
        train_ids: Any = None,
        train_inputs: Any = None,
        logged: Mapping[str, float] | None = None,
        step: int | None = None,
        optimizer: Any = None,
        scheduler: Any = None,
        name: str | None = None,
    ) -> Path:
        """Write one checkpoint atomically and return its folder.

        ``model`` may be an ``nn.Module`` (its state_dict is saved to model.pt), a
        state_dict, or None (predictions only). ``*_inputs`` are hashed per row into
        ``input_hash``; the inputs themselves are not stored.
        """
        if not 0 <= int(epoch) <= 2**63 - 1 or step is not None and not 0 <= int(step) <= 2**63 - 1:
            raise UsageError(f"epoch and step must be from 0 to 2**63-1 (docs/format.md), got epoch={epoch}, step={step}")
        name = name or f"epoch-{epoch:04d}"
        final = self.checkpoints / name
        if final.exists():
            raise UsageError("checkpoint already exists", final)
        tmp = self.checkpoints / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.mkdir()
        try:
            write_predictions(tmp / "val.npz", val_target, val_output, val_ids, val_inputs)
            if train_target is not None and train_output is not None:
                write_predictions(tmp / "train.npz", train_target, train_output, train_ids, train_inputs)
            if model is not None or optimizer is not None or scheduler is not None:
                import torch

                if model is not None:
                    state = model.state_dict() if hasattr(model, "state_dict") else model
                    torch.save(state, tmp / "model.pt")
                if optimizer is not None:
                    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
                if scheduler is not None:
                    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            meta: dict[str, Any] = {"epoch": int(epoch)}
            if step is not None:
                meta["step"] = int(step)
            if logged:
                meta["logged"] = {k: float(v) for k, v in logged.items()}
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
        return final

    def choose(self, name: str) -> None:
        """Record the checkpoint training picked as its best (run.json ``chosen``)."""
        if not (self.checkpoints / name).is_dir():
            raise UsageError(f"no checkpoint named {name!r}", self.checkpoints)
        self.run["chosen"] = name
        write_json_atomic(self.path / RUN_FILE, self.run)
