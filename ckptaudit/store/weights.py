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

Nothing here executes code from a file: the tensors are read as data, bounded by what the
file declares, by :mod:`ckptaudit.store.tensorfiles` (a restricted unpickler for zip-format
torch files, no torch needed, so the CI gate stays light; ``torch.load(weights_only=True)``
for the rest; safetensors validated as safetensors does; ``.keras``/``.h5`` as HDF5 data,
the optimizer's variables left out). Hashing never reads a FIFO, a device or a socket, and
never follows a symbolic link out of the run (or out of the folder given): such entries are
skipped. A folder is identified by its model files (:func:`model_files`), never by training
state such as an optimizer or HF's ``rng_state.pth``.

The recorder stores each file's size, sha256 and content fingerprint in meta.json
(``weights``, docs/format.md), so the gate need not load every checkpoint; runs written by
other tools are fingerprinted on demand.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import sys
from pathlib import Path
from typing import IO, Any

from ..errors import CkptauditError
from . import safeio
from .tensorfiles import (  # noqa: F401 - re-exported: the store's readers import them from here
    FINGERPRINT_PREFIX,
    WRAPPER_KEYS,
    WeightsError,
    check_inflation,
    check_zip_inflation,
    digest_tensors,
    inflate_limit,
    model_tensors,
    one_line,
    one_model,
    read_tensors,
    sniff_format,
    torch_entry,
)

#: files of a checkpoint folder that hold predictions and metadata, not the model
NON_WEIGHT_FILES = {"meta.json", "val.npz", "train.npz"}
#: files of a training checkpoint that hold training state (optimizer, scheduler, random
#: generators, the trainer's arguments), not the model: a model is never identified by them,
#: and they are never unpickled to do so (HF's rng_state.pth and training_args.bin need code)
TRAINING_STATE_FILES = frozenset(
    {"training_args.bin", "trainer_state.json", "optimizer.pt", "optimizer.bin", "scheduler.pt", "scheduler.bin"}
)
_TRAINING_STATE_RE = re.compile(r"(optimizer|scheduler|scaler|rng_state|random_states)(_\d+)?\.(pt|pth|bin|pkl)")
#: suffixes of files that hold a model's weights, whether ckptaudit can read them or not
MODEL_SUFFIXES = frozenset(
    {".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".keras", ".h5", ".hdf5", ".onnx", ".msgpack", ".gguf"}
    | {".tflite", ".pb", ".ot", ".npz", ".npy", ".pkl", ".pickle", ".joblib", ".mlmodel", ".params", ".weights"}
)
#: the meta.json key where the recorder stores what it wrote (docs/format.md)
META_WEIGHTS_KEY = "weights"


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


def is_training_state(name: str) -> bool:
    """Whether a file of a checkpoint holds training state, not the model (see
    :data:`TRAINING_STATE_FILES`)."""
    return name in TRAINING_STATE_FILES or _TRAINING_STATE_RE.fullmatch(name) is not None


def model_files(files: list[Path]) -> list[Path]:
    """The files among ``files`` that hold a model's weights: by suffix
    (:data:`MODEL_SUFFIXES`) or by content (a torch, safetensors, Keras or HDF5 file under
    another name), never training state. Configs, tokenizers and READMEs are not."""
    out = []
    for path in files:
        if is_training_state(path.name):
            continue
        if path.suffix.lower() in MODEL_SUFFIXES:
            out.append(path)
            continue
        try:
            kind = sniff_format(path)
        except (WeightsError, OSError):
            kind = None
        if kind is not None:
            out.append(path)
    return out


def weight_hashes(checkpoint: Path, root: Path | None = None) -> dict[str, str]:
    """``{relative path: sha256}`` of every weights file of a checkpoint (see :func:`weight_files`)."""
    mirror = sys.modules.get("ckptaudit.store.mirror")
    if mirror is not None:  # NOTE: a copy of a remote run holds its weights only once asked for
        mirror.complete(checkpoint)
    return {p.relative_to(checkpoint).as_posix(): sha256_file(p) for p in weight_files(checkpoint, root)}


# --------------------------------------------------------------------------- fingerprints


def fingerprint_state(obj: Any) -> str | None:
    """The content fingerprint of a model, state_dict or checkpoint dict in memory (what the
    recorder stores), or None when it holds no tensors. Equals :func:`tensor_fingerprint`
    of the file ``torch.save`` writes from it."""
    tensors = one_model(obj, torch_entry)
    if not tensors:
        return None
    return digest_tensors(tensors)


def tensor_fingerprint(path: Path) -> str | None:
    """The content fingerprint of a weights file, or None when its format holds no tensors
    ckptaudit reads (torch ``.pt``/``.pth``/``.bin``/``.ckpt``, safetensors, ``.keras``,
    ``.h5``). Raises :class:`WeightsError` when a file of a known format cannot be read
    safely, or needs an optional reader that is not installed."""
    tensors = read_tensors(Path(path))
    return digest_tensors(tensors) if tensors else None


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
