"""The prediction files of a checkpoint: where its weights are (a file in its folder, or the
original an import referenced), the data fingerprint a ``SPLIT.npz`` was written with, the
atomic write, and the reader's own checks of the arrays before they are written.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np

from ..errors import CkptauditError
from ..store.reader import META_FILE, Checkpoint, Run
from ..store.safeio import read_json
from .loading import find_weights
from .predictor import Job, PredictData

FINGERPRINT_KEY = "predict_fingerprint"


# --------------------------------------------------------------------------- run bookkeeping


def weights_of(checkpoint: Checkpoint) -> Path | None:
    """The checkpoint's weights: a file in its folder, else the original it references."""
    return weights_in(checkpoint.path)


def weights_in(folder: Path) -> Path | None:
    """The weights of the checkpoint in ``folder``: a file in it, else the original it references."""
    found = find_weights(folder)
    if found is not None:
        return found
    try:
        meta = read_json(folder / META_FILE)  # a regular file of bounded size only
    except (OSError, CkptauditError):
        return None
    source = meta.get("source") if isinstance(meta, dict) else None
    if isinstance(source, dict) and source.get("weights") == "reference":
        listed = source.get("files")
        files = [Path(f) for f in listed if isinstance(f, str) and f and "\0" not in f] if isinstance(listed, list) else []
        for f in files:
            if f.name not in ("config.json",) and f.is_file():
                return f
    return None


def stored_fingerprint(path: Path) -> str | None:
    """The data fingerprint a prediction file was written with ("" when the file has none,
    as when the recorder wrote it during training; None when the file is missing)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            return str(npz[FINGERPRINT_KEY]) if FINGERPRINT_KEY in npz.files else ""
    except Exception:
        return "unreadable"


def write_split(folder: Path, split: str, data: PredictData, output: np.ndarray) -> Path:
    """Write ``SPLIT.npz`` atomically: a hidden temporary file, fsync, rename."""
    final = folder / f"{split}.npz"
    tmp = folder / f".{split}.npz.{uuid.uuid4().hex[:8]}.tmp"
    arrays: dict[str, np.ndarray] = {"target": data.target, "output": output}
    if data.ids is not None:
        arrays["id"] = data.ids
    if data.input_hash is not None:
        arrays["input_hash"] = data.input_hash
    arrays.update(data.groups or {})
    arrays[FINGERPRINT_KEY] = np.array(data.fingerprint)
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def _check_fits(run: Run, job: Job, split: str, data: PredictData, output: np.ndarray) -> None:
    """The reader's own checks of the arrays, before the file is written: a model whose
    outputs do not fit the run's task fails here, not at ``rank``."""
    from ..store.reader import check_arrays

    try:
        check_arrays(run, job.folder / f"{split}.npz", data.target, output, data.ids, data.input_hash)
        if data.groups:
            from ..store.groups import check_groups

            check_groups(job.folder / f"{split}.npz", data.groups, data.target.shape[0])
    except CkptauditError as exc:
        raise CkptauditError(f"outputs do not fit the run's task {run.task!r} ({run.output}): {exc.args[0]}") from None
