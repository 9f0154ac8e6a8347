"""Reading the tensors of a weights file as data: torch, safetensors, Keras ``.keras`` and HDF5 ``.h5``.

This module owns the dispatch (:func:`read_tensors`, by the format :func:`sniff_format` finds
in the file's content) and the safetensors and HDF5/Keras readers; the torch reader is in
:mod:`~ckptaudit.store.torchzip` and what every reader shares (tensor entries, the bounded
walk, :class:`WeightsError`, the inflation limits) in :mod:`~ckptaudit.store.tensorwalk`,
both re-exported here. Nothing here runs code from a file, and every reader is bounded by
what the file *declares*, checked before anything is inflated or walked. Every failure is
one :class:`WeightsError` line naming the file.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import safeio
from .tensorwalk import (
    _MAX_SAFETENSORS_HEADER as _MAX_SAFETENSORS_HEADER,
)
from .tensorwalk import (
    _SAFETENSORS_DTYPES as _SAFETENSORS_DTYPES,
)
from .tensorwalk import (
    _SAFETENSORS_ITEMSIZE as _SAFETENSORS_ITEMSIZE,
)
from .tensorwalk import (
    FINGERPRINT_PREFIX as FINGERPRINT_PREFIX,
)
from .tensorwalk import (
    MAX_WALK_DEPTH as MAX_WALK_DEPTH,
)
from .tensorwalk import (
    MAX_WALK_NODES as MAX_WALK_NODES,
)
from .tensorwalk import (
    WRAPPER_KEYS as WRAPPER_KEYS,
)
from .tensorwalk import (
    WeightsError as WeightsError,
)
from .tensorwalk import (
    _open as _open,
)
from .tensorwalk import (
    _Tensor as _Tensor,
)
from .tensorwalk import (
    check_inflation as check_inflation,
)
from .tensorwalk import (
    check_zip_inflation as check_zip_inflation,
)
from .tensorwalk import (
    digest_tensors as digest_tensors,
)
from .tensorwalk import (
    inflate_limit as inflate_limit,
)
from .tensorwalk import (
    model_tensors as model_tensors,
)
from .tensorwalk import (
    one_line as one_line,
)
from .tensorwalk import (
    one_model as one_model,
)
from .tensorwalk import (
    sniff_format as sniff_format,
)
from .tensorwalk import (
    torch_entry as torch_entry,
)
from .tensorwalk import (
    walk_budget as walk_budget,
)
from .torchzip import (
    _torch_file as _torch_file,
)
from .torchzip import (
    _zip_torch_file as _zip_torch_file,
)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _safetensors_file(path: Path) -> dict[str, _Tensor]:
    """The tensors of a safetensors file, validated as the safetensors library validates it
    before loading (so a file it refuses is never identified by content): known dtypes,
    integer shapes and offsets, each tensor's bytes exactly its shape's, the tensors
    contiguous from the end of the header to the end of the file (no stray bytes)."""
    with _open(path) as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > _MAX_SAFETENSORS_HEADER:
            raise WeightsError("safetensors header is implausibly large", path)
        header = safeio.parse_json_text(fh.read(n), path, WeightsError)
        size = os.fstat(fh.fileno()).st_size
    if not isinstance(header, dict):
        raise WeightsError("malformed safetensors header: not a JSON object", path)
    base = 8 + n
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or info.get("dtype") not in _SAFETENSORS_DTYPES:
            raise WeightsError(f"malformed safetensors entry {name!r}: no dtype safetensors knows", path)
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if not (isinstance(shape, list) and all(_is_count(d) for d in shape)):
            raise WeightsError(f"malformed safetensors entry {name!r}: 'shape' must be a list of counts", path)
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
            raise WeightsError(f"malformed safetensors entry {name!r}: 'data_offsets' must be two counts", path)
        start, end = offsets
        itemsize = _SAFETENSORS_ITEMSIZE[info["dtype"]]
        if end < start or end - start != math.prod(shape) * itemsize:
            raise WeightsError(f"malformed safetensors entry {name!r}: its offsets do not hold its shape", path)
        entries.append((start, end, name, _SAFETENSORS_DTYPES[info["dtype"]], tuple(shape)))
    entries.sort()
    at = 0
    for start, end, name, _, _ in entries:
        if start != at:
            raise WeightsError(f"malformed safetensors file: entry {name!r} does not follow the one before it", path)
        at = end
    if base + at != size:
        raise WeightsError(
            f"malformed safetensors file: its tensors end at byte {base + at:,} but the file has {size:,} "
            "(stray or missing bytes; safetensors refuses it)",
            path,
        )
    out: dict[str, _Tensor] = {}
    for start, end, name, dtype, shape in entries:

        def chunks(start: int = start, end: int = end) -> Iterator[bytes]:
            with _open(path) as f:
                f.seek(base + start)
                left = end - start
                while left > 0:
                    block = f.read(min(left, 1 << 20))
                    if not block:
                        raise WeightsError("truncated safetensors file", path)
                    left -= len(block)
                    yield block

        out[name] = _Tensor(dtype, shape, chunks)
    return out


#: top-level HDF5 groups of a Keras file that hold training state, not the model: Keras 3
#: saves the optimizer's variables beside the layers' ("optimizer/vars/N"), Keras 2's
#: whole-model .h5 under "optimizer_weights" (its layers under "model_weights")
KERAS_TRAINING_STATE = ("optimizer", "optimizer_weights")


def _hdf5(source: Any, path: Path, on_disk: int) -> dict[str, _Tensor]:
    """The model's numeric datasets of an HDF5 weights file (Keras ``.h5``, or the
    ``model.weights.h5`` of a ``.keras`` zip), by HDF5 path. The optimizer's variables are
    left out, so ``EarlyStopping(restore_best_weights=True)`` then ``model.save`` is the best
    epoch's model whatever its optimizer did since. Every dataset's declared size is summed
    before one is read: a gzip dataset of gigabytes in a 4 KB file is refused."""
    try:
        import h5py
    except ImportError:
        raise WeightsError("reading .keras or .h5 weights needs h5py: pip install h5py", path) from None
    import numpy as np

    out: dict[str, _Tensor] = {}
    try:
        with h5py.File(source, "r") as f:
            skip = tuple(f"{group}/" for group in KERAS_TRAINING_STATE)
            # NOTE: only numeric datasets are weights; strings and objects (configs) are not.
            datasets: list[tuple[str, Any]] = []
            f.visititems(
                lambda name, obj: (
                    datasets.append((name, obj))
                    if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "biufc" and not name.startswith(skip)
                    else None
                )
            )
            check_inflation(sum(int(d.size) * d.dtype.itemsize for _, d in datasets), on_disk, path, "its datasets")
            for name, obj in datasets:
                arr = np.ascontiguousarray(obj[()])
                if arr.dtype.byteorder == ">":
                    arr = arr.astype(arr.dtype.newbyteorder("<"))
                data = arr.tobytes()
                out[name] = _Tensor(arr.dtype.name, tuple(arr.shape), lambda data=data: iter((data,)))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise WeightsError(f"unreadable HDF5 weights: {one_line(exc)}", path) from None
    return out


def _keras_file(path: Path) -> dict[str, _Tensor]:
    with _open(path) as fh, zipfile.ZipFile(fh) as zf:
        check_zip_inflation(zf, path, ["model.weights.h5"])
        try:
            data = zf.read("model.weights.h5")
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise WeightsError(f"corrupt .keras file: {one_line(exc)}", path) from None
    return _hdf5(io.BytesIO(data), path, os.stat(path).st_size)


def read_tensors(path: Path) -> dict[str, _Tensor] | None:
    """The tensors of a weights file by name, or None when its format is none ckptaudit
    reads (:func:`sniff_format`). Raises :class:`WeightsError` when a file of a known format
    cannot be read safely, or needs an optional reader that is not installed."""
    kind = sniff_format(path)
    if kind is None:
        return None
    return {
        "torch": _torch_file,
        "safetensors": _safetensors_file,
        "keras": _keras_file,
        "hdf5": lambda p: _hdf5(str(p), p, os.stat(p).st_size),
    }[kind](path)
