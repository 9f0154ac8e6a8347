"""Identifying a checkpoint's weights: file hashes, tensor-content fingerprints, safe reading.

Two ways tell that a shipped file is a checkpoint of a run:

- **bytes**: the sha256 of the file equals that of a weights file of the checkpoint (a copy);
- **tensor content**: the file holds the same tensors (names, dtypes, shapes and values) as a
  weights file of the checkpoint, although its bytes differ. ``torch.save(model.state_dict(),
  "best_model.pth")`` writes the same tensors as the recorder's ``model.pt`` into different
  bytes (torch stores the file's stem inside the zip), and a safetensors or ``.keras`` file
  holds the same tensors in another container.

The content fingerprint (:func:`tensor_fingerprint`) is a sha256 over every tensor, sorted by
name: its name, canonical dtype (``float32``, ``bfloat16``, ...), shape and raw little-endian
bytes. It is the same for one state_dict saved by ``torch.save`` and by safetensors. A torch
file that wraps its state_dict under ``model_state_dict``, ``state_dict`` or ``model`` (the
PyTorch tutorial's checkpoint dict, Lightning's ``.ckpt``) is fingerprinted by that inner
state_dict alone, so the optimizer and epoch counters saved beside it do not matter.

Nothing here executes code from a file: zip-format torch files are read as data by a
restricted unpickler that rebuilds only dicts, lists and tensors (no torch needed, so the CI
gate stays light), other torch files with ``torch.load(weights_only=True)``; safetensors
headers are parsed as JSON, and ``.keras``/``.h5`` files are read as HDF5 data (h5py,
optional). Hashing never reads a FIFO, a device or a socket, and never follows a
symbolic link out of the run (or out of the folder given): such entries are skipped.

The recorder stores each file's size, sha256 and content fingerprint in meta.json
(``weights``, docs/format.md), so the gate need not load every checkpoint; runs written by
other tools are fingerprinted on demand.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import pickle
import stat
import struct
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import CkptauditError
from . import safeio

#: files of a checkpoint folder that hold predictions and metadata, not the model
NON_WEIGHT_FILES = {"meta.json", "val.npz", "train.npz"}
#: keys under which a torch checkpoint dict commonly wraps the model's state_dict
WRAPPER_KEYS = ("model_state_dict", "state_dict", "model")
#: the meta.json key where the recorder stores what it wrote (docs/format.md)
META_WEIGHTS_KEY = "weights"
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
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_MAX_SAFETENSORS_HEADER = 100 << 20  # the format's own limit on the JSON header


class WeightsError(CkptauditError):
    """A weights file cannot be read safely (not a regular file, a format needing code
    execution, an optional reader missing)."""


# --------------------------------------------------------------------------- safe files


def is_within(path: Path, root: Path) -> bool:
    """Whether ``path`` (resolved) lies inside ``root`` (resolved)."""
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(root))
    except ValueError:
        return False
    return True


def open_regular(path: str | Path) -> IO[bytes]:
    """Open ``path`` for binary reading only when it is a regular file (the store's one
    reader, :func:`ckptaudit.store.safeio.open_regular`): a FIFO would block forever and a
    device (``/dev/zero``) never ends, so both are refused with :class:`WeightsError`, as is
    a file that cannot be opened."""
    try:
        return safeio.open_regular(path, WeightsError)
    except OSError as exc:
        raise WeightsError(f"cannot read: {exc.strerror or exc}", path) from None


def read_text_safely(path: str | Path, error: type[CkptauditError] = CkptauditError) -> str:
    """The UTF-8 text of a regular file (a FIFO or device is refused, not read); a missing
    or unreadable file is ``error`` too."""
    try:
        return safeio.read_text(path, error)
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror or exc}", path) from None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a regular file, read in 1 MiB blocks (FIFOs and devices are refused)."""
    digest = hashlib.sha256()
    with open_regular(path) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _default_root(folder: Path) -> Path:
    # NOTE: a checkpoint inside a run may link to a sibling checkpoint (de-duplicated
    # weights); anything outside the run is never followed.
    if folder.parent.name == "checkpoints" and (folder.parent.parent / "run.json").is_file():
        return folder.parent.parent
    return folder


def weight_files(checkpoint: Path, root: Path | None = None) -> list[Path]:
    """Every regular file of a checkpoint folder except its predictions and meta.json, sorted.

    Symbolic links are followed only to regular files inside ``root`` (default: the run
    holding the checkpoint, else the folder itself); FIFOs, devices, sockets and links that
    leave ``root`` or dangle are skipped, never read.
    """
    checkpoint = Path(checkpoint)
    limit = Path(root) if root is not None else _default_root(checkpoint)
    out = []
    for dirpath, dirs, files in os.walk(checkpoint):
        dirs.sort()
        here = Path(dirpath)
        for name in sorted(files):
            path = here / name
            if here == checkpoint and name in NON_WEIGHT_FILES:
                continue
            if path.is_symlink() and not is_within(path, limit):
                continue
            try:
                if not stat.S_ISREG(os.stat(path).st_mode):
                    continue
            except OSError:
                continue
            out.append(path)
    return out


def weight_hashes(checkpoint: Path, root: Path | None = None) -> dict[str, str]:
    """``{relative path: sha256}`` of every weights file of a checkpoint (see :func:`weight_files`)."""
    return {p.relative_to(checkpoint).as_posix(): sha256_file(p) for p in weight_files(checkpoint, root)}


# --------------------------------------------------------------------------- fingerprints


@dataclass(frozen=True)
class _Tensor:
    dtype: str
    shape: tuple[int, ...]
    chunks: Any  #: a callable returning an iterator of little-endian byte blocks


def _digest(tensors: Mapping[str, _Tensor]) -> str:
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


def _has_tensor(value: Any) -> bool:
    if _is_tensor(value):
        return True
    if isinstance(value, Mapping):
        return any(_has_tensor(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_tensor(v) for v in value)
    return False


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if _is_tensor(value):
        out[prefix] = value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _flatten(item, f"{prefix}.{i}" if prefix else str(i), out)


def model_tensors(obj: Any) -> dict[str, Any]:
    """The named tensors a torch object holds: a state_dict as it is; a checkpoint dict that
    wraps one under ``model_state_dict``/``state_dict``/``model`` by that inner dict;
    nested dicts and lists flattened to dotted names. Non-tensor values are ignored."""
    if hasattr(obj, "state_dict") and callable(obj.state_dict) and not isinstance(obj, Mapping):
        obj = obj.state_dict()
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and _has_tensor(inner):
                obj = inner
                break
    out: dict[str, Any] = {}
    _flatten(obj, "", out)
    return out


def _torch_entry(tensor: Any) -> _Tensor:
    import torch

    t = tensor.detach()
    if t.layout != torch.strided or t.is_quantized:
        raise WeightsError(f"tensor of layout {t.layout} cannot be fingerprinted")

    def chunks() -> Iterator[Any]:
        flat = t.cpu().contiguous().reshape(-1)
        if flat.numel():
            yield memoryview(flat.view(torch.uint8).numpy())

    return _Tensor(str(t.dtype).removeprefix("torch."), tuple(t.shape), chunks)


def fingerprint_state(obj: Any) -> str | None:
    """The content fingerprint of a model, state_dict or checkpoint dict in memory (what the
    recorder stores), or None when it holds no tensors. Equals :func:`tensor_fingerprint`
    of the file ``torch.save`` writes from it."""
    tensors = model_tensors(obj)
    if not tensors:
        return None
    return _digest({name: _torch_entry(t) for name, t in tensors.items()})


def sniff_format(path: Path) -> str | None:
    """``torch``, ``safetensors``, ``keras``, ``hdf5`` or None, from the file's content."""
    with open_regular(path) as fh:
        head = fh.read(16)
        size = os.fstat(fh.fileno()).st_size
    if head.startswith(b"PK\x03\x04"):
        try:
            with open_regular(path) as fh, zipfile.ZipFile(fh) as zf:
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


def _zip_torch_file(path: Path) -> dict[str, _Tensor] | None:
    """The tensors of a zip-format torch file read as data (no torch needed), or None when
    the file needs more than tensors and dicts to rebuild (torch then reads it)."""
    import numpy as np

    with open_regular(path) as fh, zipfile.ZipFile(fh) as zf:
        names = zf.namelist()
        pkl = next((n for n in names if n == "data.pkl" or n.endswith("/data.pkl")), None)
        if pkl is None:
            return None
        prefix = pkl[: -len("data.pkl")]
        if f"{prefix}byteorder" in names and zf.read(f"{prefix}byteorder").strip() != b"little":
            return None
        try:
            obj = _DataOnlyUnpickler(io.BytesIO(zf.read(pkl))).load()
        except _Unsupported:
            return None
        except Exception as exc:
            raise WeightsError(f"malformed torch file: {type(exc).__name__}: {exc}", path) from None
        raw: dict[str, Any] = {}
        out: dict[str, _Tensor] = {}
        for name, t in model_tensors(obj).items():
            dtype, layout = _TORCH_STORAGES[t.storage.kind]
            key = t.storage.key
            if key not in raw:
                try:
                    raw[key] = np.frombuffer(zf.read(f"{prefix}data/{key}"), dtype=layout)
                except (KeyError, ValueError):
                    raise WeightsError(f"malformed torch file: storage {key} is missing or truncated", path) from None
            storage = raw[key]
            if any(d < 0 for d in t.shape) or any(s < 0 for s in t.stride) or len(t.shape) != len(t.stride):
                raise WeightsError(f"malformed torch file: tensor {name!r} has a negative size or stride", path)
            if 0 not in t.shape:
                last = t.offset + sum((d - 1) * s for d, s in zip(t.shape, t.stride, strict=True))
                # NOTE: checked before as_strided, which would otherwise read past the buffer.
                if t.offset < 0 or last >= storage.size:
                    raise WeightsError(f"malformed torch file: tensor {name!r} lies outside its storage", path)
                view = np.lib.stride_tricks.as_strided(
                    storage[t.offset :], shape=t.shape, strides=[s * storage.itemsize for s in t.stride], writeable=False
                )
                data = np.ascontiguousarray(view)
            else:
                data = np.zeros(0, dtype=layout)
            out[name] = _Tensor(dtype, t.shape, lambda data=data: iter((memoryview(data.reshape(-1).view(np.uint8)),)))
        return out


def _torch_file(path: Path) -> dict[str, _Tensor]:
    # NOTE: the gate runs in CI without torch: the common zip format is read as data here;
    # torch (weights_only=True) reads what this reader does not (the legacy format, ...).
    with open_regular(path) as fh:
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
        raise WeightsError(f"cannot read tensors safely (weights_only=True): {type(exc).__name__}: {exc}", path) from None
    return {name: _torch_entry(t) for name, t in model_tensors(obj).items()}


def _safetensors_file(path: Path) -> dict[str, _Tensor]:
    with open_regular(path) as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > _MAX_SAFETENSORS_HEADER:
            raise WeightsError("safetensors header is implausibly large", path)
        try:
            header = json.loads(fh.read(n))
        except ValueError as exc:
            raise WeightsError(f"malformed safetensors header: {exc}", path) from None
        size = os.fstat(fh.fileno()).st_size
    if not isinstance(header, dict):
        raise WeightsError("malformed safetensors header", path)
    base = 8 + n
    out: dict[str, _Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _SAFETENSORS_DTYPES[info["dtype"]]
            shape = tuple(int(d) for d in info["shape"])
            start, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise WeightsError(f"malformed safetensors entry {name!r}", path) from None
        if not 0 <= start <= end or base + end > size:
            raise WeightsError(f"safetensors entry {name!r} lies outside the file", path)

        def chunks(start: int = start, end: int = end) -> Iterator[bytes]:
            with open_regular(path) as f:
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


def _hdf5(source: Any, path: Path) -> dict[str, _Tensor]:
    try:
        import h5py
    except ImportError:
        raise WeightsError("reading .keras or .h5 weights needs h5py: pip install h5py", path) from None
    import numpy as np

    out: dict[str, _Tensor] = {}
    with h5py.File(source, "r") as f:

        def visit(name: str, obj: Any) -> None:
            # NOTE: only numeric datasets are weights; strings and objects (configs) are not.
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "biufc":
                arr = np.ascontiguousarray(obj[()])
                if arr.dtype.byteorder == ">":
                    arr = arr.astype(arr.dtype.newbyteorder("<"))
                data = arr.tobytes()
                out[name] = _Tensor(arr.dtype.name, tuple(arr.shape), lambda data=data: iter((data,)))

        f.visititems(visit)
    return out


def _keras_file(path: Path) -> dict[str, _Tensor]:
    with open_regular(path) as fh, zipfile.ZipFile(fh) as zf:
        data = zf.read("model.weights.h5")
    return _hdf5(io.BytesIO(data), path)


def tensor_fingerprint(path: Path) -> str | None:
    """The content fingerprint of a weights file, or None when its format holds no tensors
    ckptaudit reads (torch ``.pt``/``.pth``/``.bin``/``.ckpt``, safetensors, ``.keras``,
    ``.h5``). Raises :class:`WeightsError` when a file of a known format cannot be read
    safely, or needs an optional reader that is not installed."""
    path = Path(path)
    kind = sniff_format(path)
    if kind is None:
        return None
    tensors = {
        "torch": _torch_file,
        "safetensors": _safetensors_file,
        "keras": _keras_file,
        "hdf5": lambda p: _hdf5(str(p), p),
    }[kind](path)
    return _digest(tensors) if tensors else None


# --------------------------------------------------------------------------- recorded entries


def describe_file(path: Path, state: Any = None) -> dict[str, Any]:
    """What the recorder stores for one weights file in meta.json ``weights``: size, sha256
    and content fingerprint (from ``state`` in memory when given, saving a re-read)."""
    entry: dict[str, Any] = {"size": os.stat(path).st_size, "sha256": sha256_file(path)}
    tensors = fingerprint_state(state) if state is not None else tensor_fingerprint(path)
    if tensors is not None:
        entry["tensors"] = tensors
    return entry


def recorded_entries(checkpoint: Path) -> dict[str, dict[str, Any]]:
    """meta.json ``weights`` of a checkpoint (empty when absent or malformed)."""
    try:
        meta = json.loads(read_text_safely(checkpoint / "meta.json"))
    except (CkptauditError, ValueError):
        return {}
    entries = meta.get(META_WEIGHTS_KEY) if isinstance(meta, dict) else None
    if not isinstance(entries, dict):
        return {}
    return {k: v for k, v in entries.items() if isinstance(k, str) and isinstance(v, dict)}


class FolderIdentity:
    """The weights files of one folder, with each file's sha256 and content fingerprint
    computed at most once and taken from meta.json ``weights`` when recorded there (and the
    file still has the recorded size)."""

    def __init__(self, folder: Path, root: Path | None = None) -> None:
        self.folder = Path(folder)
        self.files = weight_files(self.folder, root)
        self._recorded = recorded_entries(self.folder)
        self._sha: dict[Path, str] = {}
        self._tensors: dict[Path, str | None] = {}

    def rel(self, path: Path) -> str:
        """The file's path relative to the folder."""
        return path.relative_to(self.folder).as_posix()

    def _entry(self, path: Path) -> dict[str, Any]:
        entry = self._recorded.get(self.rel(path))
        if entry is None:
            return {}
        try:
            if os.stat(path).st_size != entry.get("size"):
                return {}
        except OSError:
            return {}
        return entry

    def sha256(self, path: Path) -> str:
        """The file's sha256 (recorded, else computed)."""
        if path not in self._sha:
            recorded = self._entry(path).get("sha256")
            self._sha[path] = recorded if isinstance(recorded, str) else sha256_file(path)
        return self._sha[path]

    def tensors(self, path: Path) -> str | None:
        """The file's content fingerprint (recorded, else computed; None: no tensors)."""
        if path not in self._tensors:
            entry = self._entry(path)
            recorded = entry.get("tensors")
            if isinstance(recorded, str):
                self._tensors[path] = recorded
            elif entry and "sha256" in entry and "tensors" not in entry:
                self._tensors[path] = None  # the recorder found no tensors in it
            else:
                self._tensors[path] = tensor_fingerprint(path)
        return self._tensors[path]
