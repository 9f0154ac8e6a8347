"""Reading a torch checkpoint's tensors as data: the zip format without torch, the rest with torch.

This module owns the data-only unpickler for ``data.pkl`` of a zip-format torch file
(tensors, storages and plain containers; anything else makes it give up) and the fallback
to ``torch.load(weights_only=True)`` for what it does not read, so the gate can compare
weights in CI without torch and never runs code from a file.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .tensorwalk import (
    WeightsError,
    _open,
    _Storage,
    _Tensor,
    _ZipTensor,
    check_inflation,
    check_zip_inflation,
    one_line,
    one_model,
    torch_entry,
    walk_budget,
)

#: torch's typed storage classes as they appear in a saved file -> (dtype name, numpy layout)
_TORCH_STORAGES = {
    "DoubleStorage": ("float64", "<f8"),
    "FloatStorage": ("float32", "<f4"),
    "HalfStorage": ("float16", "<u2"),
    "BFloat16Storage": ("bfloat16", "<u2"),
    "LongStorage": ("int64", "<i8"),
    "IntStorage": ("int32", "<i4"),
    "ShortStorage": ("int16", "<i2"),
    "CharStorage": ("int8", "i1"),
    "ByteStorage": ("uint8", "u1"),
    "BoolStorage": ("bool", "u1"),
    "ComplexFloatStorage": ("complex64", "<c8"),
    "ComplexDoubleStorage": ("complex128", "<c16"),
}


class _Unsupported(Exception):
    """The pickle needs something the data-only reader does not rebuild."""


@dataclass(frozen=True)
class _StorageType:
    name: str


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> _ZipTensor:
    if not isinstance(storage, _Storage):
        raise _Unsupported("tensor without a storage")
    try:
        return _ZipTensor(storage, int(offset), tuple(int(d) for d in size), tuple(int(d) for d in stride))
    except (TypeError, ValueError):
        raise _Unsupported("malformed tensor") from None


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


class _DataOnlyUnpickler(pickle.Unpickler):
    """Rebuilds a torch pickle as plain data: only OrderedDict, tensors and typed storages
    are known; any other global is refused, so nothing in the file can run."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in _TORCH_STORAGES:
            return _StorageType(name)
        raise _Unsupported(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise _Unsupported("unknown persistent id")
        return _Storage(pid[1].name, str(pid[2]), int(pid[4]))


def _zip_torch_file(path: Path) -> dict[str, _Tensor] | None:
    """The tensors of a zip-format torch file read as data (no torch needed), or None when
    the file needs more than tensors and dicts to rebuild (torch then reads it)."""
    import numpy as np

    on_disk = os.stat(path).st_size
    with _open(path) as fh, zipfile.ZipFile(fh) as zf:
        names = zf.namelist()
        pkl = next((n for n in names if n == "data.pkl" or n.endswith("/data.pkl")), None)
        if pkl is None:
            return None
        check_zip_inflation(zf, path)
        prefix = pkl[: -len("data.pkl")]
        if f"{prefix}byteorder" in names and zf.read(f"{prefix}byteorder").strip() != b"little":
            return None
        data_pkl = zf.read(pkl)
        try:
            obj = _DataOnlyUnpickler(io.BytesIO(data_pkl)).load()
        except _Unsupported:
            return None
        except Exception as exc:
            raise WeightsError(f"malformed torch file: {one_line(exc)}", path) from None
        raw: dict[str, Any] = {}
        copied = 0

        def entry(t: _ZipTensor) -> _Tensor:
            nonlocal copied
            dtype, layout = _TORCH_STORAGES[t.storage.kind]
            key = t.storage.key
            if key not in raw:
                try:
                    raw[key] = np.frombuffer(zf.read(f"{prefix}data/{key}"), dtype=layout)
                except (KeyError, ValueError, zipfile.BadZipFile, zlib.error, EOFError):
                    raise WeightsError(f"malformed torch file: storage {key} is missing or corrupt", path) from None
            storage = raw[key]
            if any(d < 0 for d in t.shape) or any(s < 0 for s in t.stride) or len(t.shape) != len(t.stride):
                raise WeightsError("malformed torch file: a tensor has a negative size or stride", path)
            if 0 in t.shape:
                data = np.zeros(0, dtype=layout)
            else:
                last = t.offset + sum((d - 1) * s for d, s in zip(t.shape, t.stride, strict=True))
                # NOTE: checked before as_strided, which would otherwise read past the buffer;
                # a view may repeat its storage (stride 0), so its copy counts against the limit.
                if t.offset < 0 or last >= storage.size:
                    raise WeightsError("malformed torch file: a tensor lies outside its storage", path)
                copied += math.prod(t.shape) * storage.itemsize
                check_inflation(copied, on_disk, path)
                view = np.lib.stride_tricks.as_strided(
                    storage[t.offset :], shape=t.shape, strides=[s * storage.itemsize for s in t.stride], writeable=False
                )
                data = np.ascontiguousarray(view)
            return _Tensor(dtype, t.shape, lambda data=data: iter((memoryview(data.reshape(-1).view(np.uint8)),)))

        return one_model(obj, entry, path, walk_budget(len(data_pkl)))


def _torch_file(path: Path) -> dict[str, _Tensor]:
    # NOTE: the gate runs in CI without torch: the common zip format is read as data here;
    # torch (weights_only=True) reads what this reader does not (the legacy format, ...).
    with _open(path) as fh:
        is_zip = fh.read(4) == b"PK\x03\x04"
    if is_zip:
        found = _zip_torch_file(path)
        if found is not None:
            return found
    try:
        import torch
    except ImportError:
        raise WeightsError(
            "comparing torch weights by tensor content needs torch: pip install 'ckptaudit[torch]'", path
        ) from None
    try:
        # NOTE: weights_only refuses any pickle that would import or run code; mmap keeps
        # memory flat for large files (zip format only).
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=is_zip)
    except Exception as exc:
        raise WeightsError(f"cannot read tensors safely (weights_only=True): {one_line(exc)}", path) from None
    return one_model(obj, torch_entry, path, walk_budget(os.stat(path).st_size))
