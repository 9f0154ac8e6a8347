"""Tensor entries and the bounded walk that finds a model's tensors in a loaded object.

This module owns what every weights reader shares: the :class:`WeightsError` they raise,
the tensor entry they return and its digest, the walk of a loaded checkpoint object (a
graph walked with a budget of nodes and depth, no cycles) that picks the model's
``{name: tensor}``, the sniffing of a file's format from its content, and the inflation
limits a reader checks before inflating anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
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


# NOTE: a tensor of a zip-format torch file as the data-only unpickler of
# :mod:`ckptaudit.store.torchzip` rebuilds it; here because the walk recognises it.
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


def one_line(exc: BaseException) -> str:
    """One line for an exception from a loader (torch's are paragraphs): the line naming
    what was refused (a GLOBAL, an operand) if any, else the first, shortened."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    line = next((x for x in lines if "GLOBAL" in x or "Unsupported" in x), lines[0] if lines else "")
    line = line if len(line) <= 200 else line[:200] + "…"
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__
