"""Reading the tensors of a weights file as data: torch (zip, read without torch; legacy,
with ``torch.load(weights_only=True)``), safetensors, Keras ``.keras`` and HDF5 ``.h5``.

Each reader returns ``{name: tensor entry}`` (dtype, shape, little-endian bytes) for
:mod:`ckptaudit.store.weights` to fingerprint. Nothing here runs code from a file, and every
reader is bounded by what the file *declares*, checked before anything is inflated or
walked: a zip's members and an HDF5 file's datasets may take at most the file's own size
plus ``CKPTAUDIT_MAX_NPZ_BYTES`` (:func:`inflate_limit`); a pickle is walked as a graph,
with a budget of nodes and depth and no cycles (:func:`model_tensors`); a safetensors file
is validated as the safetensors library validates it. Every failure is one
:class:`WeightsError` line naming the file.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import math
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import CkptauditError
from . import safeio

#: keys under which a torch checkpoint dict commonly wraps the model's state_dict
WRAPPER_KEYS = ("model_state_dict", "state_dict", "model")
FINGERPRINT_PREFIX = "tensors-sha256:"

_SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
    "C64": "complex64",
}
_SAFETENSORS_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4, "I16": 2,
    "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "C64": 8,
}  # fmt: skip
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_MAX_SAFETENSORS_HEADER = 100 << 20  # the format's own limit on the JSON header


class WeightsError(CkptauditError):
    """A weights file cannot be read safely (not a regular file, a format needing code
    execution, an optional reader missing)."""


def _open(path: str | Path) -> IO[bytes]:
    try:
        return safeio.open_regular(path, WeightsError)
    except OSError as exc:
        raise WeightsError(f"cannot read: {exc.strerror or exc}", path) from None


@dataclass(frozen=True)
class _Tensor:
    dtype: str
    shape: tuple[int, ...]
    chunks: Any  #: a callable returning an iterator of little-endian byte blocks


def digest_tensors(tensors: Mapping[str, _Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        digest.update(json.dumps([name, t.dtype, list(t.shape)]).encode() + b"\n")
        for block in t.chunks():
            digest.update(block)
    return FINGERPRINT_PREFIX + digest.hexdigest()


def _is_tensor(value: Any) -> bool:
    if isinstance(value, _ZipTensor):
        return True
    return type(value).__module__.startswith("torch") and hasattr(value, "dtype") and hasattr(value, "shape")


#: how many values one walk over a loaded object may visit, beyond what its pickle's size
#: allows (each value a pickle names costs it at least one byte), and how deep it may go
MAX_WALK_NODES = 100_000
MAX_WALK_DEPTH = 1_000
_LEAVE = object()  # a stack marker: the walk leaves the container below it


def walk_budget(pickle_bytes: int) -> int:
    """How many values a walk over an object loaded from ``pickle_bytes`` bytes may visit:
    a tree of values costs its pickle at least a byte each, so only containers shared many
    times over (a pickle bomb) need more."""
    return MAX_WALK_NODES + 2 * pickle_bytes


def _flatten(root: Any, path: Path | str | None, budget: int) -> dict[str, Any]:
    """Every tensor reachable from ``root`` by a dotted name (dict keys and list indices).

    A pickle is a graph, not a tree: one list may be shared by many parents (64 nested lists
    sharing one child name 2**64 paths), or hold itself. The walk is iterative (no recursion
    limit), refuses a cycle, and counts every value it visits against ``budget`` and every
    level against :data:`MAX_WALK_DEPTH`, so a small hostile file ends in a
    :class:`WeightsError` at once, not in a hang. A tensor shared under two names (tied
    weights) keeps both names, as torch's own state_dict does."""
    out: dict[str, Any] = {}
    visited = 0
    on_path: set[int] = set()  # the containers being walked (a depth-first path)
    stack: list[Any] = [(root, "", 0)]
    while stack:
        top = stack.pop()
        if top[0] is _LEAVE:
            on_path.discard(top[1])
            continue
        value, prefix, depth = top
        visited += 1
        if visited > budget:
            raise WeightsError(
                f"its pickle names more than {budget:,} values (one container shared many times over?); refusing to walk it",
                path,
            )
        if _is_tensor(value):
            out[prefix] = value
            continue
        if isinstance(value, Mapping):
            items: list[tuple[str, Any]] = [(str(k), v) for k, v in value.items()]
        elif isinstance(value, (list, tuple)):
            items = [(str(i), v) for i, v in enumerate(value)]
        else:
            continue
        if id(value) in on_path:
            raise WeightsError("its pickle holds a container inside itself (a cycle); refusing to walk it", path)
        if depth >= MAX_WALK_DEPTH:
            raise WeightsError(f"its pickle is nested more than {MAX_WALK_DEPTH} levels deep", path)
        on_path.add(id(value))
        stack.append((_LEAVE, id(value)))
        for key, item in reversed(items):
            stack.append((item, f"{prefix}.{key}" if prefix else key, depth + 1))
    return out


def _candidates(obj: Any, path: Path | str | None, budget: int) -> list[tuple[str, dict[str, Any]]]:
    """The models an object may hold: ``[(wrapper key, tensors)]`` for each of
    :data:`WRAPPER_KEYS` that holds tensors, else ``[("", every tensor)]``."""
    if hasattr(obj, "state_dict") and callable(obj.state_dict) and not isinstance(obj, Mapping):
        obj = obj.state_dict()
    if isinstance(obj, Mapping):
        found = []
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                tensors = _flatten(inner, path, budget)
                if tensors:
                    found.append((key, tensors))
        if found:
            return found
    return [("", _flatten(obj, path, budget))]


def model_tensors(obj: Any, path: Path | str | None = None, budget: int = 10 * MAX_WALK_NODES) -> dict[str, Any]:
    """The named tensors a torch object holds: a state_dict as it is; a checkpoint dict that
    wraps one under ``model_state_dict``/``state_dict``/``model`` by that inner dict;
    nested dicts and lists flattened to dotted names. Non-tensor values are ignored.
    A dict wrapping *different* models under two of those keys is refused (see
    :func:`one_model`); ``budget``: see :func:`walk_budget`."""
    return _candidates(obj, path, budget)[0][1]


def one_model(obj: Any, entry: Any, path: Path | str | None = None, budget: int = 10 * MAX_WALK_NODES) -> dict[str, _Tensor]:
    """The tensors of the one model ``obj`` holds, as fingerprint entries (``entry``
    converts one tensor). A checkpoint dict with ``model_state_dict`` of one model and
    ``state_dict`` of another is refused: which one a user gets depends on the loader
    (Lightning reads ``state_dict``, the PyTorch tutorial ``model_state_dict``), so the gate
    cannot say which model was shipped."""
    found = [(key, {name: entry(t) for name, t in tensors.items()}) for key, tensors in _candidates(obj, path, budget)]
    if len(found) > 1 and len({digest_tensors(tensors) for _, tensors in found}) > 1:
        keys = " and ".join(repr(key) for key, _ in found)
        raise WeightsError(
            f"holds different models under {keys}: which one is loaded depends on the loader "
            "(Lightning reads 'state_dict'); refusing to identify it",
            path,
        )
    return found[0][1]


def torch_entry(tensor: Any) -> _Tensor:
    import torch

    t = tensor.detach()
    if t.layout != torch.strided or t.is_quantized:
        raise WeightsError(f"tensor of layout {t.layout} cannot be fingerprinted")

    def chunks() -> Iterator[Any]:
        flat = t.cpu().contiguous().reshape(-1)
        if flat.numel():
            yield memoryview(flat.view(torch.uint8).numpy())

    return _Tensor(str(t.dtype).removeprefix("torch."), tuple(t.shape), chunks)


def sniff_format(path: Path) -> str | None:
    """``torch``, ``safetensors``, ``keras``, ``hdf5`` or None, from the file's content."""
    with _open(path) as fh:
        head = fh.read(16)
        size = os.fstat(fh.fileno()).st_size
    if head.startswith(b"PK\x03\x04"):
        try:
            with _open(path) as fh, zipfile.ZipFile(fh) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError):
            return None
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "torch"
        if "model.weights.h5" in names:
            return "keras"
        return None
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    if len(head) >= 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if n < _MAX_SAFETENSORS_HEADER and 8 + n <= size:
            return "safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch"  # the legacy (non-zip) torch.save format: a pickle stream
    return None


# --------------------------------------------------------------------------- torch zip, without torch

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


@dataclass(frozen=True)
class _Storage:
    kind: str
    key: str
    numel: int


@dataclass(frozen=True)
class _ZipTensor:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


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


def inflate_limit(on_disk: int) -> int:
    """How many bytes a weights file's tensors may take once read: its own size (data
    stored as it is) plus ``CKPTAUDIT_MAX_NPZ_BYTES`` (what compression, or a view repeating
    its storage, may add). A real checkpoint is stored uncompressed and stays within it
    however large it is; a 4 KB file declaring gigabytes does not."""
    return on_disk + safeio.max_npz_bytes()


def check_inflation(total: int, on_disk: int, path: Path | str, what: str = "its tensors") -> None:
    """Refuse (:class:`WeightsError`) ``total`` bytes, declared before anything is read,
    beyond :func:`inflate_limit`."""
    limit = inflate_limit(on_disk)
    if total > limit:
        raise WeightsError(
            f"{what} would take {total:,} bytes from {on_disk:,} on disk, more than the limit of {limit:,} "
            f"(a zip bomb?); set {safeio.MAX_NPZ_ENV} to raise the limit",
            path,
        )


def check_zip_inflation(zf: zipfile.ZipFile, path: Path | str, members: list[str] | None = None) -> None:
    """Refuse a zip whose members (all, or ``members``) declare more bytes than
    :func:`inflate_limit` allows, from the central directory, before inflating any."""
    infos = zf.infolist() if members is None else [zf.getinfo(m) for m in members]
    check_inflation(sum(i.file_size for i in infos), os.stat(path).st_size, path, "its members")


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


def one_line(exc: BaseException) -> str:
    """One line for an exception from a loader (torch's are paragraphs): the line naming
    what was refused (a GLOBAL, an operand) if any, else the first, shortened."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    line = next((x for x in lines if "GLOBAL" in x or "Unsupported" in x), lines[0] if lines else "")
    line = line if len(line) <= 200 else line[:200] + "…"
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


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
