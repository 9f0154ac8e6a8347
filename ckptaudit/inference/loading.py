"""Safe loading of saved weights: data only, never code.

``torch.load(..., weights_only=True)`` refuses any pickle that would import a class or
call a function outside torch's allow-list; safetensors files are plain tensors; a
``.keras`` file is a zip whose ``model.weights.h5`` member is read as HDF5 data (its
``config.json``, which may hold serialized code such as Lambda layers, is never
deserialized). A file that needs code to load raises :class:`UnsafeCheckpointError`,
whose message names ``--trust-pickle``: passing it runs whatever code the file holds.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

from ..errors import CkptauditError
from ..store.weights import (
    WeightsError,
    check_inflation,
    check_zip_inflation,
    is_training_state,
    one_line,
    open_regular,
    sniff_format,
)

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


_FORMATS = {"safetensors": "a safetensors file", "keras": "a .keras file", "hdf5": "an HDF5 file"}


def _needed_global(exc: BaseException) -> str | None:
    """The global a valid pickle needed that ``weights_only`` refused (torch names it
    ``GLOBAL module.name``), else None: a refused operand or a broken stream is corruption,
    not code."""
    match = re.search(r"GLOBAL ([\w.]+)", str(exc))
    return match.group(1) if match else None


def _load_failure(path: Path, exc: BaseException, trust_pickle: bool) -> CkptauditError:
    """One line for a failed ``torch.load``. Only a well-formed torch file whose pickle
    needs a global beyond plain tensors is "needs code" (with the --trust-pickle advice,
    never when it is given); anything else, random bytes, a ``.npy``, an HDF5 file, a
    truncated zip, is said to be no torch file or a corrupt one, and the flag that runs code
    is never suggested for it."""
    try:
        kind = sniff_format(path)
    except WeightsError as err:
        return CkptauditError(err.problem, path)
    if kind != "torch":
        with open_regular(path) as fh:
            numpy = fh.read(6) == b"\x93NUMPY"
        what = "a NumPy .npy array" if numpy else _FORMATS.get(kind or "", "no known weights format")
        return CkptauditError(f"not a torch file, or a corrupt one ({what}): cannot load it as torch weights", path)
    needed = None if trust_pickle else _needed_global(exc)
    if needed is None:
        return CkptauditError(f"corrupt torch file, cannot load it: {one_line(exc)}", path)
    return UnsafeCheckpointError(
        f"loading needs code from the file (a pickle beyond plain tensors: it imports {needed[:120]}); refused. "
        "Pass --trust-pickle only if you trust this file: it RUNS code stored in it",
        path,
    )


def _check_zip(path: Path, members: list[str] | None = None) -> None:
    """Refuse a zip (torch's format, ``.keras``) whose members declare more bytes than the
    weights limit allows, before anything is inflated; a file that is no zip passes (its
    loader reports it)."""
    try:
        with open_regular(path) as fh:
            if fh.read(4) != b"PK\x03\x04":
                return
            fh.seek(0)
            with zipfile.ZipFile(fh) as zf:
                check_zip_inflation(zf, path, members)
    except (zipfile.BadZipFile, KeyError, OSError):
        return
    except WeightsError as exc:
        raise CkptauditError(exc.problem, path) from None


def torch_load(path: str | Path, *, trust_pickle: bool = False, mmap: bool = False) -> Any:
    """``torch.load`` on CPU with ``weights_only=True`` unless ``trust_pickle``.

    Raises :class:`UnsafeCheckpointError` when the file needs code to load, and
    :class:`CkptauditError` (one line) when it is no torch file or a corrupt one.
    """
    import torch

    path = Path(path)
    _require_regular(path)
    _check_zip(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle, mmap=mmap)
    except RuntimeError as exc:
        # NOTE: mmap needs the zip format; an old-format (legacy) file is retried without it.
        if mmap and "mmap" in str(exc):
            return torch_load(path, trust_pickle=trust_pickle, mmap=False)
        raise _load_failure(path, exc, trust_pickle) from None
    except Exception as exc:  # noqa: BLE001 - a file that runs code (trust_pickle) may raise anything
        raise _load_failure(path, exc, trust_pickle) from None


def _keras_weights_h5(path: Path) -> dict[str, Any]:
    import io

    import h5py
    import numpy as np

    _check_zip(path, ["model.weights.h5"])
    try:
        with zipfile.ZipFile(path) as zf:
            data = zf.read("model.weights.h5")
    except KeyError:
        raise CkptauditError("not a Keras 3 file: no model.weights.h5 member", path) from None
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise CkptauditError(f"cannot read the .keras zip: {one_line(exc)}", path) from None
    out: dict[str, Any] = {}
    try:
        with h5py.File(io.BytesIO(data), "r") as h5:
            datasets: list[tuple[str, Any]] = []
            h5.visititems(lambda name, obj: datasets.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
            try:
                # NOTE: declared sizes first: a gzip dataset of gigabytes in a small file is refused.
                check_inflation(sum(int(d.size) * d.dtype.itemsize for _, d in datasets), path.stat().st_size, path)
            except WeightsError as exc:
                raise CkptauditError(exc.problem, path) from None
            for name, obj in datasets:
                out[name] = np.asarray(obj[()])
    except (OSError, ValueError, RuntimeError) as exc:
        raise CkptauditError(f"corrupt .keras file: {one_line(exc)}", path) from None
    return out


def _same_tensors(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two state_dicts hold the same names with bit-identical tensors (dtype, shape
    and bytes, so a NaN equals itself, as in the gate's content fingerprint)."""
    import torch

    if a is b:
        return True
    ta = {k: v for k, v in a.items() if isinstance(v, torch.Tensor)}
    tb = {k: v for k, v in b.items() if isinstance(v, torch.Tensor)}  # other entries are not weights
    if set(ta) != set(tb):
        return False
    for name, x in ta.items():
        y = tb[name]
        if x.dtype != y.dtype or x.shape != y.shape:
            return False
        xb, yb = x.detach().reshape(-1).contiguous(), y.detach().reshape(-1).contiguous()
        try:
            xb, yb = xb.view(torch.uint8), yb.view(torch.uint8)
        except RuntimeError:
            pass  # a dtype without a byte view: compared by value
        if not torch.equal(xb, yb):
            return False
    return True


def load_state(path: str | Path, *, trust_pickle: bool = False) -> dict[str, Any]:
    """The tensors of a weights file as a flat ``{name: tensor or array}`` mapping.

    A Lightning ``.ckpt`` yields its ``state_dict`` (a dict holding different models under
    ``state_dict`` and ``model_state_dict`` is refused, as the gate refuses it); a Keras
    ``.keras`` file yields the arrays of its ``model.weights.h5`` keyed by HDF5 path. Never
    runs code from the file unless ``trust_pickle``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        _require_regular(path)
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as exc:  # safetensors raises its own SafetensorError
            raise CkptauditError(f"cannot read safetensors: {one_line(exc)}", path) from None
    if suffix == ".keras":
        _require_regular(path)
        return _keras_weights_h5(path)
    obj = torch_load(path, trust_pickle=trust_pickle)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) and isinstance(obj.get("model_state_dict"), dict):
        # NOTE: as the gate (store.tensorfiles.one_model): which of two different models a
        # user gets depends on the loader, so neither is predicted as "the" checkpoint.
        if not _same_tensors(obj["state_dict"], obj["model_state_dict"]):
            raise CkptauditError(
                "holds different models under 'model_state_dict' and 'state_dict': which one is loaded "
                "depends on the loader (Lightning reads 'state_dict'); refusing to predict it",
                path,
            )
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
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES and p.name not in NOT_MODEL_FILES and not is_training_state(p.name)
    ]
    if not candidates:
        return None
    candidates.sort(key=lambda p: (WEIGHT_SUFFIXES.index(p.suffix.lower()), p.name != "model" + p.suffix, p.name))
    return candidates[0]
