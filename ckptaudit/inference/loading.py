"""Safe loading of saved weights: data only, never code.

``torch.load(..., weights_only=True)`` refuses any pickle that would import a class or
call a function outside torch's allow-list; safetensors files are plain tensors; a
``.keras`` file is a zip whose ``model.weights.h5`` member is read as HDF5 data (its
``config.json``, which may hold serialized code such as Lambda layers, is never
deserialized). A file that needs code to load raises :class:`UnsafeCheckpointError`,
whose message names ``--trust-pickle``: passing it runs whatever code the file holds.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

from ..errors import CkptauditError
from ..store.weights import WeightsError, open_regular

#: suffixes of files that hold weights, in order of preference within one checkpoint folder
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin", ".keras", ".h5")
#: files in a checkpoint that hold training state, not the model
NOT_MODEL_FILES = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin", "optimizer.bin", "scaler.pt"}


class UnsafeCheckpointError(CkptauditError):
    """A weights file that can only be loaded by running code from it (a pickle)."""


def _require_regular(path: Path) -> None:
    """Refuse a FIFO, device or socket before a loader opens it (it would block or never
    end), through the store's one opener, as the gate's fingerprinting does."""
    try:
        open_regular(path).close()
    except WeightsError as exc:
        raise CkptauditError(exc.problem, path) from None


def _refuse(path: Path, exc: BaseException) -> UnsafeCheckpointError:
    first = str(exc).strip().splitlines()
    detail = next(
        (line for line in first if "GLOBAL" in line or "Unsupported" in line), first[0] if first else type(exc).__name__
    )
    return UnsafeCheckpointError(
        f"loading needs code from the file (a pickle beyond plain tensors: {detail.strip()[:160]}); refused. "
        "Pass --trust-pickle only if you trust this file: it RUNS code stored in it",
        path,
    )


def torch_load(path: str | Path, *, trust_pickle: bool = False, mmap: bool = False) -> Any:
    """``torch.load`` on CPU with ``weights_only=True`` unless ``trust_pickle``.

    Raises :class:`UnsafeCheckpointError` when the file needs code to load.
    """
    import torch

    path = Path(path)
    _require_regular(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise _refuse(path, exc) from None
    except RuntimeError as exc:
        # NOTE: mmap needs the zip format; an old-format (legacy) file is retried without it.
        if mmap and "mmap" in str(exc):
            return torch_load(path, trust_pickle=trust_pickle, mmap=False)
        if "weights_only" in str(exc) or "Weights only load failed" in str(exc):
            raise _refuse(path, exc) from None
        raise CkptauditError(f"cannot load: {exc}".splitlines()[0], path) from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise CkptauditError(f"cannot load (truncated or corrupt): {type(exc).__name__}: {exc}", path) from None


def _keras_weights_h5(path: Path) -> dict[str, Any]:
    import io

    import h5py
    import numpy as np

    try:
        with zipfile.ZipFile(path) as zf:
            data = zf.read("model.weights.h5")
    except KeyError:
        raise CkptauditError("not a Keras 3 file: no model.weights.h5 member", path) from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise CkptauditError(f"cannot read the .keras zip: {exc}", path) from None
    out: dict[str, Any] = {}
    with h5py.File(io.BytesIO(data), "r") as h5:

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                out[name] = np.asarray(obj[()])

        h5.visititems(visit)
    return out


def load_state(path: str | Path, *, trust_pickle: bool = False) -> dict[str, Any]:
    """The tensors of a weights file as a flat ``{name: tensor or array}`` mapping.

    A Lightning ``.ckpt`` yields its ``state_dict``; a Keras ``.keras`` file yields the
    arrays of its ``model.weights.h5`` keyed by HDF5 path. Never runs code from the file
    unless ``trust_pickle``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        _require_regular(path)
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as exc:  # safetensors raises its own SafetensorError
            raise CkptauditError(f"cannot read safetensors: {exc}", path) from None
    if suffix == ".keras":
        _require_regular(path)
        return _keras_weights_h5(path)
    obj = torch_load(path, trust_pickle=trust_pickle)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and isinstance(obj.get("model_state_dict"), dict):
        obj = obj["model_state_dict"]
    if hasattr(obj, "state_dict") and not isinstance(obj, dict):
        obj = obj.state_dict()  # only reachable with trust_pickle: a whole pickled module
    if not isinstance(obj, dict):
        raise CkptauditError(f"holds a {type(obj).__name__}, not a state_dict of tensors", path)
    return dict(obj)


def check_loadable(path: str | Path, *, trust_pickle: bool = False) -> None:
    """Raise unless ``path`` loads as data (cheap: torch files are memory-mapped)."""
    path = Path(path)
    if path.suffix.lower() in (".safetensors", ".keras"):
        load_state(path)
        return
    torch_load(path, trust_pickle=trust_pickle, mmap=True)


def find_weights(folder: Path) -> Path | None:
    """The model weights file of a checkpoint folder (not optimizer or scheduler state)."""
    if not folder.is_dir():
        return None
    candidates = [
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES and p.name not in NOT_MODEL_FILES
    ]
    if not candidates:
        return None
    candidates.sort(key=lambda p: (WEIGHT_SUFFIXES.index(p.suffix.lower()), p.name != "model" + p.suffix, p.name))
    return candidates[0]
