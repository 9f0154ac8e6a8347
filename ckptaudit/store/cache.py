"""An optional derived cache of a run's validation predictions (``rank --cache``).

Opening hundreds of small ``.npz`` archives costs more than reading the numbers in them
(zip directory parsing, CRC checks, one header parse per array). The cache stores a run's
validation outputs as one contiguous ``.npy`` array (checkpoint x rows x ...) next to the
shared targets and ids, in ``RUN/.ckptaudit-cache/``. It is derived data: it is rebuilt
whenever run.json changes (its sha256 is part of the key) or the set of checkpoints or any
``val.npz`` changes (its size, modification and change times, inode, or the CRC-32 of any
member, read from the zip's central directory: a rewrite that restores the size and
modification time still changes the change time), and every cached array passes the
reader's checks against run.json before it is used;
written atomically, and never trusted for anything but the arrays it copies. Reads are
one checkpoint's slice at a time, into one buffer reused from checkpoint to checkpoint, so
memory stays bounded as without the cache. Building it writes each checkpoint's outputs
to the file as they are read (plain file writes, not a memory map whose dirty pages would
stay in the process until the end), so a build holds one checkpoint in memory too.

The metric values a pass computed from the cached arrays are kept beside them
(``values.json``, issue 21), keyed by the bound metric specs and the ckptaudit version: a
warm pass with the same metrics, whose cache is still valid by the same test, takes every
checkpoint's values and notes from there without reading the outputs again (the values are
derived from the very arrays the cache holds, by the same code).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import CkptauditError, RunFormatError
from .reader import Checkpoint, Predictions, Run, check_arrays
from .safeio import npy_layout, read_json, read_npy, zip_fingerprint

CACHE_DIR = ".ckptaudit-cache"
VERSION = 3
#: the stored metric values, and how many metric combinations one run's cache keeps
VALUES_FILE = "values.json"
MAX_VALUE_KEYS = 16


def fingerprint(run: Run) -> list[list[Any]] | None:
    """(name, size, mtime_ns, member CRCs) of every checkpoint's val.npz, or None if one
    is missing or not a zip. The CRCs come from the central directory, a few hundred
    bytes per file, so the check stays cheap next to reading the arrays."""
    out: list[list[Any]] = []
    for ckpt in run.checkpoints:
        path = ckpt.split_file("val")
        try:
            st = os.stat(path)
        except OSError:
            return None
        crcs = zip_fingerprint(path)
        if crcs is None:
            return None
        # NOTE: the inode and change time too: a rewrite that restores size and mtime (os.utime)
        # still changes ctime, and a file replaced by rename has another inode.
        out.append([ckpt.name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, crcs])
    return out


#: a file whose change or modification time is this close to (or after) the cache's index
#: is "racy": a rewrite in the same timestamp tick could keep its stat (coarse filesystem
#: clocks: FAT 2 s), so its CRCs are compared too
RACY_NS = 3_000_000_000


def settled(mtime_ns: int, ctime_ns: int, built: int) -> bool:
    """Whether a file with these times, stat-identical now to when it was fingerprinted
    before the time ``built``, is unchanged since: its times lie at least :data:`RACY_NS`
    before ``built`` (else it is "racy" and only its contents can tell)."""
    return max(mtime_ns, ctime_ns) <= built - RACY_NS


def unchanged_since(run: Run, recorded: Any, built: int) -> bool:
    """Whether every val.npz is the one fingerprinted in ``recorded`` (:func:`fingerprint`
    taken before the time ``built``, in the filesystem's nanoseconds: the cache's index was
    written after the build's last full fingerprint). By stat alone (size, modification and
    change times, inode) where that is safe: every file's times at least :data:`RACY_NS`
    older than ``built``, so that any later write would have given the file a later time
    (the "racily clean" rule of git's index). Otherwise, or when a stat differs, by the full
    fingerprint with the members' CRC-32s read from each central directory, as before
    (issue 21: that read was a third of a warm `rank --cache` on 5,000 small files)."""
    if not isinstance(recorded, list) or len(recorded) != len(run.checkpoints):
        return False
    racy = False
    for ckpt, entry in zip(run.checkpoints, recorded, strict=True):
        try:
            st = os.stat(ckpt.split_file("val"))
        except OSError:
            return False
        if not isinstance(entry, list) or entry[:5] != [ckpt.name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]:
            return False
        racy = racy or not settled(st.st_mtime_ns, st.st_ctime_ns, built)
    return not racy or recorded == fingerprint(run)


def run_key(run: Run) -> str | None:
    """The sha256 of run.json's bytes: the cache is valid only for the run.json it was
    built under (its output kind, task and classes decide which checks the arrays pass)."""
    import hashlib

    from .safeio import open_regular

    try:
        with open_regular(run.path / "run.json") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except (OSError, RunFormatError):
        return None


def _npy_layout(fh: BinaryIO) -> tuple[np.dtype, tuple[int, ...], int]:
    shape, fortran, dtype, offset = npy_layout(fh.fileno())
    if fortran:
        raise ValueError("cache array is not C-ordered")
    return dtype, shape, offset


class CachedRun:
    """Reads a run's predictions from a valid cache, one checkpoint at a time."""

    def __init__(self, run: Run, folder: Path, index: dict[str, Any]) -> None:
        self.run = run
        self.folder = folder
        for name in ("target.npy", "outputs.npy", "ids.npy"):
            # NOTE: the cache lives inside the run, so it is input too: never open a FIFO.
            if os.path.lexists(folder / name) and not stat.S_ISREG(os.stat(folder / name).st_mode):
                raise ValueError(f"{name} is not a regular file")
        self.target = read_npy(folder / "target.npy")
        ids_path = folder / "ids.npy"
        self.ids = read_npy(ids_path) if ids_path.exists() else None
        self.positions = {entry[0]: i for i, entry in enumerate(index["checkpoints"])}

    def predictions(self) -> Iterator[tuple[Checkpoint, Predictions]]:
        """Each checkpoint's predictions, read as one slice of the outputs array. As with
        :class:`~ckptaudit.store.reader.PassReader`, ``output`` lies in one buffer that the
        next checkpoint's read overwrites (copy what must outlive the checkpoint)."""
        with open(self.folder / "outputs.npy", "rb", buffering=0) as fh:
            dtype, shape, offset = _npy_layout(fh)
            per = int(np.prod(shape[1:], dtype=np.int64))
            output = np.empty(shape[1:], dtype=dtype)
            raw = output.reshape(-1).view(np.uint8)
            for ckpt in self.run.checkpoints:
                k = self.positions[ckpt.name]
                got = os.preadv(fh.fileno(), [raw.data], offset + k * per * dtype.itemsize) if raw.nbytes else 0
                if got != raw.nbytes:
                    raise ValueError("cache outputs.npy ends early")
                yield ckpt, Predictions(path=ckpt.split_file("val"), target=self.target, output=output, ids=self.ids)


def valid_index(run: Run) -> dict[str, Any] | None:
    """The cache's index when the cache exists and matches the run's files, else None;
    ``built`` added: the index's modification time, in the filesystem's nanoseconds."""
    folder = run.path / CACHE_DIR
    try:
        index = read_json(folder / "index.json")  # a FIFO there blocked `rank --cache` for ever
    except (OSError, CkptauditError):
        return None
    if not isinstance(index, dict):
        return None
    if index.get("version") != VERSION or index.get("run") != run_key(run):
        return None
    try:
        built = os.stat(folder / "index.json").st_mtime_ns
    except OSError:
        return None
    if not unchanged_since(run, index.get("checkpoints"), built):
        return None
    index["built"] = built
    return index


def values_key(specs: Any) -> str:
    """The key of a pass's stored values: its bound metric specs and the ckptaudit version
    (a kernel that changes between versions never serves an old value)."""
    return _key_of(repr([repr(s) for s in specs]))


@lru_cache(maxsize=64)
def _key_of(specs_repr: str) -> str:
    # (once per pass, not once per run of a sweep)
    import hashlib

    from .. import __version__

    return hashlib.sha256(f"{__version__}\n{specs_repr}".encode()).hexdigest()


def _read_values(folder: Path) -> dict[str, Any]:
    try:
        stored = read_json(folder / VALUES_FILE)
    except (OSError, CkptauditError):
        return {}
    return stored if isinstance(stored, dict) else {}


def cached_values(
    run: Run, key: str, index: dict[str, Any] | None = None
) -> list[tuple[tuple[float | None, ...], tuple[str, ...]]] | None:
    """Each checkpoint's (values, notes) stored under ``key`` (:func:`values_key`) when the
    cache is valid for the run's files as they are now (``index``: :func:`valid_index`'s,
    when the caller has it), else None. No output is read."""
    if index is None and valid_index(run) is None:
        return None
    return parse_scores(run, _read_values(run.path / CACHE_DIR).get(key))


def parse_scores(run: Run, entry: Any) -> list[tuple[tuple[float | None, ...], tuple[str, ...]]] | None:
    """Each checkpoint's (values, notes) from a stored entry (:func:`store_values`' form)
    when it is well formed and names the run's checkpoints, in order; else None."""
    if not isinstance(entry, dict) or entry.get("checkpoints") != [c.name for c in run.checkpoints]:
        return None
    rows = entry.get("scores")
    if not isinstance(rows, list) or len(rows) != len(run.checkpoints):
        return None
    out = []
    for row in rows:
        if not (isinstance(row, list) and len(row) == 2 and isinstance(row[0], list) and isinstance(row[1], list)):
            return None
        values, notes = row
        if not all(v is None or isinstance(v, (int, float)) for v in values) or not all(isinstance(n, str) for n in notes):
            return None
        out.append((tuple(None if v is None else float(v) for v in values), tuple(notes)))
    return out


def scores_entry(run: Run, scores: list[tuple[tuple[float | None, ...], tuple[str, ...]]]) -> dict[str, Any]:
    return {"checkpoints": [c.name for c in run.checkpoints], "scores": [[list(v), list(n)] for v, n in scores]}


def store_values(
    run: Run, key: str, scores: list[tuple[tuple[float | None, ...], tuple[str, ...]]], index: dict[str, Any] | None = None
) -> None:
    """Keep a pass's (values, notes) per checkpoint under ``key`` in the run's valid cache
    (written atomically; nothing when the cache is gone or no longer valid; ``index``: the
    :func:`valid_index` the values were computed under, when the caller has it)."""
    folder = run.path / CACHE_DIR
    if len(scores) != len(run.checkpoints) or (index is None and valid_index(run) is None):
        return
    stored = _read_values(folder)
    stored.pop(key, None)
    while len(stored) >= MAX_VALUE_KEYS:
        stored.pop(next(iter(stored)))
    stored[key] = scores_entry(run, scores)
    tmp = folder / f"{VALUES_FILE}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.write_text(json.dumps(stored), encoding="utf-8")
        os.replace(tmp, folder / VALUES_FILE)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass


def open_cache(run: Run, index: dict[str, Any] | None = None) -> CachedRun | None:
    """The run's cache if it exists and matches the run's files (``index``:
    :func:`valid_index`'s, when the caller has it), else None."""
    folder = run.path / CACHE_DIR
    index = valid_index(run) if index is None else index
    if index is None:
        return None
    try:
        cached = CachedRun(run, folder, index)
        # NOTE: cached arrays pass the reader's own checks against run.json, as a plain read
        # would; any failure falls back to reading the files, which reports it the same way.
        first = True
        for ckpt, preds in cached.predictions():
            check_arrays(run, ckpt.split_file("val"), preds.target, preds.output, preds.ids, target_checked=not first)
            first = False
        return cached
    except (OSError, ValueError, KeyError, RunFormatError):
        return None


class CacheWriter:
    """Builds a run's cache while the normal path streams its predictions.

    ``add`` takes each checkpoint's predictions in epoch order; anything irregular
    (an unreadable file, a changed validation set, another output shape or dtype)
    abandons the build, and the run is simply read without a cache next time too.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.expected = fingerprint(run)
        self.run_key = run_key(run)
        self.tmp = run.path / f"{CACHE_DIR}.{uuid.uuid4().hex[:8]}.tmp"
        self.out: BinaryIO | None = None
        self.layout: tuple[tuple[int, ...], np.dtype] | None = None
        self.count = 0
        self.ok = self.expected is not None
        #: the published cache's index (:func:`valid_index`'s form), once :meth:`finish` published it
        self.index: dict[str, Any] | None = None

    def add(self, preds: Predictions | None) -> None:
        """Append one checkpoint's outputs (None abandons the build)."""
        if not self.ok:
            return
        if preds is None:
            self.abandon()
            return
        if self.out is None:
            try:
                self.tmp.mkdir()
                shape = (len(self.run.checkpoints), *preds.output.shape)
                self.out = open(self.tmp / "outputs.npy", "wb")  # noqa: SIM115 - closed by finish/abandon
                header = {"descr": np.lib.format.dtype_to_descr(preds.output.dtype), "fortran_order": False, "shape": shape}
                try:
                    np.lib.format.write_array_header_1_0(self.out, header)
                except ValueError:  # a header too long for format 1.0
                    np.lib.format.write_array_header_2_0(self.out, header)
                self.layout = (tuple(preds.output.shape), preds.output.dtype)
                np.save(self.tmp / "target.npy", preds.target, allow_pickle=False)
                if preds.ids is not None:
                    np.save(self.tmp / "ids.npy", preds.ids, allow_pickle=False)
            except (OSError, ValueError):
                self.abandon()
                return
        if (tuple(preds.output.shape), preds.output.dtype) != self.layout:
            self.abandon()
            return
        try:
            # NOTE: written now, in C order, from the caller's (possibly reused) buffer.
            self.out.write(np.ascontiguousarray(preds.output).data)
        except OSError:
            self.abandon()
            return
        self.count += 1

    def abandon(self) -> None:
        """Give up on this build and remove what it wrote."""
        self.ok = False
        if self.out is not None:
            self.out.close()
        self.out = None
        shutil.rmtree(self.tmp, ignore_errors=True)  # NOTE: our own temporary folder only

    def finish(
        self, key: str | None = None, scores: list[tuple[tuple[float | None, ...], tuple[str, ...]]] | None = None
    ) -> bool:
        """Publish the cache if every checkpoint was added and nothing changed meanwhile
        (True when published), with the pass's (values, notes) per checkpoint under ``key``
        (:func:`values_key`) when given."""
        if not self.ok or self.out is None or self.count != len(self.run.checkpoints):
            self.abandon()
            return False
        try:
            self.out.close()
        except OSError:
            self.out = None
            self.abandon()
            return False
        self.out = None
        if fingerprint(self.run) != self.expected or run_key(self.run) != self.run_key or self.run_key is None:
            self.abandon()
            return False
        index = {"version": VERSION, "run": self.run_key, "checkpoints": self.expected}
        if key is not None and scores is not None and len(scores) == len(self.run.checkpoints):
            (self.tmp / VALUES_FILE).write_text(json.dumps({key: scores_entry(self.run, scores)}), encoding="utf-8")
        (self.tmp / "index.json").write_text(json.dumps(index), encoding="utf-8")
        final = self.run.path / CACHE_DIR
        try:
            if final.exists() and not final.is_symlink():
                shutil.rmtree(final)
            os.rename(self.tmp, final)
            # (as valid_index gives it: with the index's time, the time the fingerprint held)
            self.index = {**index, "built": os.stat(final / "index.json").st_mtime_ns}
        except OSError:
            self.abandon()
            return False
        return True
