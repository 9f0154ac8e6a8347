"""The low-level writes of the run format: arrays, prediction files and run.json.

This module owns what the recorder and the importers write with: tensors as numpy arrays,
per-row input hashes, atomic JSON writes with the folder fsynced, the locked
read-modify-write of ``run.json``, the clean-up of a crashed recorder's temporary folders
and :func:`write_predictions`. :class:`ckptaudit.store.recorder.Recorder` is built on it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from .reader import (
    RUN_FILE,
)


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
    """Write JSON to ``path`` through an exclusive temporary file and a rename."""
    from .safeio import write_atomic

    write_atomic(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
    _fsync_dir(path.parent)


#: the recorder's own temporary checkpoint folders: ``.NAME.<8 hex>.tmp``
_TEMP_RE = r"\..+\.[0-9a-f]{8}\.tmp"


def update_run_json(path: Path, set_keys: Mapping[str, Any], remove: Sequence[str] = ()) -> dict[str, Any]:
    """Read-modify-write run.json under an OS lock: only the keys given change, every other
    key is what is on disk now (another writer's ``chosen`` is never lost to a stale copy).
    Returns the run.json written."""
    import fcntl

    run_file = Path(path) / RUN_FILE
    # NOTE: the lock is on the run folder itself: no lock file is left in the run
    fd = os.open(Path(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocking: an update takes milliseconds
        current: dict[str, Any] = {}
        if run_file.is_file():
            try:
                loaded = json.loads(run_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise UsageError(f"cannot update run.json: {exc}", run_file) from None
            if isinstance(loaded, dict):
                current = loaded
        merged = {**current, **set_keys}
        for key in remove:
            merged.pop(key, None)
        write_json_atomic(run_file, merged)
        return merged
    finally:
        os.close(fd)  # releases the lock


def _temp_lock(folder: Path) -> int:
    """An OS lock on a temporary checkpoint folder, held while it is written: a folder
    whose lock can be taken has no live writer (its process died)."""
    import fcntl

    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def clear_stale_temporaries(checkpoints: Path) -> list[str]:
    """Remove the recorder's own temporary folders (``.NAME.<8 hex>.tmp``, real folders)
    that no live process is writing (their lock is free); anything else, or one being
    written, is left alone. Returns the names removed."""
    import fcntl
    import re

    removed: list[str] = []
    if not checkpoints.is_dir():
        return removed
    for entry in os.scandir(checkpoints):
        if not re.fullmatch(_TEMP_RE, entry.name) or entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live writer holds it
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.name)
        finally:
            os.close(fd)
    return removed


def prediction_arrays(
    target: Any, output: Any, ids: Any = None, inputs: Any = None, input_hash: Any = None
) -> dict[str, np.ndarray]:
    """One split's arrays as they are stored: numpy, with ``id`` and ``input_hash`` when
    given (``inputs`` are hashed per row when no hash is given)."""
    arrays: dict[str, np.ndarray] = {"target": to_numpy(target), "output": to_numpy(output)}
    if ids is not None:
        arrays["id"] = to_numpy(ids)
    if input_hash is not None:
        arrays["input_hash"] = to_numpy(input_hash)
    elif inputs is not None:
        arrays["input_hash"] = hash_rows(inputs)
    return arrays


def write_predictions(
    path: Path,
    target: Any,
    output: Any,
    ids: Any = None,
    inputs: Any = None,
    input_hash: Any = None,
    groups: dict[str, np.ndarray] | None = None,
) -> None:
    """Write one split's ``.npz`` (uncompressed: loading speed matters more than size);
    ``groups`` are its group columns, already named (:func:`ckptaudit.store.groups.group_arrays`)."""
    arrays = prediction_arrays(target, output, ids, inputs, input_hash)
    arrays.update(groups or {})
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
        fh.flush()
        os.fsync(fh.fileno())
