"""One file of stored metric values for a whole sweep (``rank SWEEP --cache``, issue 21).

Each run's derived cache (:mod:`ckptaudit.store.cache`) keeps the metric values a pass
computed from it, but a warm pass over a sweep of a thousand small runs still opened three
files a run to find them (the cache's index, run.json again for its sha256, the values),
and those reads were a quarter of the pass. The sweep's book,
``SWEEP/.ckptaudit-sweep-cache.json``, gathers the same entries in one file: for each run
(by its path below the sweep folder) and each metric key (:func:`~ckptaudit.store.cache.values_key`),
the values and notes of every checkpoint, with what makes them valid:

- the stat of every val.npz the run's cache was built from (its index's ``checkpoints``,
  without the members' CRC-32s) and the time that index was written, checked by the same
  rule as the run's own cache (:func:`~ckptaudit.store.cache.unchanged_since`): by stat
  where every file is older than that time by a margin; a run with a file too recent for
  that takes its own cache's path, which compares the CRC-32s;
- run.json's stat and sha256: by stat under the same rule, else by its sha256;
- the run's cache itself: its index must be the one written then (a cache deleted or
  rebuilt since takes the book's values of that run with it).

The book also keeps what discovery parsed of each run's metadata (run.json and every
meta.json) with each file's stat, taken before the read: a warm pass stats a file instead of
opening, reading and parsing it (5,000 meta.json files: a third of the warm pass). A file is
kept only where its modification and change times lie at least :data:`~ckptaudit.store.cache.RACY_NS`
before the pass began (by the filesystem's clock: the book's new file is created first), so
that any later write changes its stat; a file written since, or too recently, is read as
usual, and its contents pass the same checks either way.

An entry that fails any check is ignored, and the run takes the usual path through its own
cache (which rebuilds what changed); its entry is then written again. The book is derived
data like the caches: read through the bounded readers, any malformed part ignored, written
atomically (a new file renamed over the old one, so a symbolic link of that name is
replaced, never written through), and nothing in it is trusted beyond the values of runs
whose files it still describes.
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import CkptauditError
from ..limits import max_json_bytes
from . import cache as derived
from .reader import Run
from .regularfiles import read_json, read_small
from .runformat import META_FILE, RUN_FILE

BOOK_FILE = ".ckptaudit-sweep-cache.json"
VERSION = 1

Scores = list[tuple[tuple[float | None, ...], tuple[str, ...]]]


def _run_file_stat(run: Run) -> list[int] | None:
    try:
        st = os.stat(run.path / RUN_FILE)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class SweepBook:
    """A sweep's book, read once: :meth:`reader` serves discovery the metadata files
    unchanged since they were kept, :meth:`values` a run's values while its files are
    those they were computed from, :meth:`record` takes a run's values from its valid
    cache, and :meth:`save` writes the book back when anything new was kept."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / BOOK_FILE
        self.keys: dict[str, dict[str, Any]] = {}
        self.files: dict[str, dict[str, Any]] = {}  # run -> its metadata files as last kept
        self.dirty = False
        self.seen: set[str] = set()
        self.recorded_keys: set[str] = set()
        self.found: dict[str, dict[str, Any]] = {}  # run -> its metadata files as this pass read them
        try:
            if os.path.islink(self.path):  # (never a book written elsewhere)
                raise OSError("a symbolic link")
            # (the book is this program's own output: no per-integer hook, which cost a tenth
            # of a warm pass; Python's own limit on an integer's digits still holds)
            stored = json.loads(read_small(self.path))
        except (OSError, CkptauditError, ValueError, RecursionError):
            stored = None
        if isinstance(stored, dict) and stored.get("version") == VERSION:
            if isinstance(stored.get("keys"), dict):
                self.keys = {k: v for k, v in stored["keys"].items() if isinstance(v, dict)}
            if isinstance(stored.get("files"), dict):
                self.files = {k: v for k, v in stored["files"].items() if isinstance(v, dict)}
        # the pass's start by the filesystem's clock: the new book's file, created now
        self.tmp: Path | None = folder / f"{BOOK_FILE}.{uuid.uuid4().hex[:8]}.tmp"
        self.started: int | None = None
        try:
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                self.started = os.fstat(fd).st_mtime_ns
            finally:
                os.close(fd)
        except OSError:
            self.tmp = None

    def reader(self, run_path: Path) -> Callable[[Any], Any]:
        """A :func:`~ckptaudit.store.safeio.read_json` for the metadata files of the run at
        ``run_path`` that serves a file unchanged since the book kept it from the book."""
        name = self._name(run_path)
        if name is None:
            return read_json
        kept = self.files.get(name, {})
        found = self.found.setdefault(name, {})
        prefix = str(run_path) + os.sep
        limit = max_json_bytes()  # (a file over the limit is refused, kept or not)

        def read(path: Any) -> Any:
            text = str(path)
            rel = text[len(prefix) :] if text.startswith(prefix) else None
            if rel is None:
                return read_json(path)
            st = os.stat(path)  # (FileNotFoundError passes, as read_json's)
            now = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
            entry = kept.get(rel)
            if stat.S_ISREG(st.st_mode) and now[0] <= limit and isinstance(entry, list) and len(entry) == 2 and entry[0] == now:
                found[rel] = entry
                return entry[1]
            value = read_json(path)  # (what a parse or a check refuses raises, and is not kept)
            # NOTE: kept only when no write since the pass began can leave the same stat
            if self.started is not None and stat.S_ISREG(st.st_mode) and max(now[1], now[2]) < self.started - derived.RACY_NS:
                found[rel] = [now, value]
                self.dirty = True
            return value

        return read

    def _name(self, run_path: Path) -> str | None:
        try:
            return run_path.relative_to(self.folder).as_posix()
        except ValueError:
            return None

    def values(self, run: Run, key: str) -> Scores | None:
        """The run's (values, notes) per checkpoint stored under ``key`` when the run's
        files are those the values were computed from, else None."""
        name = self._name(run.path)
        if name is None:
            return None
        self.seen.add(name)
        entry = self.keys.get(key, {}).get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("built"), int):
            return None
        built = entry["built"]
        try:  # (the run's cache as it was: one deleted or rebuilt since takes the book's entry with it)
            if os.stat(run.path / derived.CACHE_DIR / "index.json").st_mtime_ns != built:
                return None
        except OSError:
            return None
        recorded = entry.get("run_file")
        if not isinstance(recorded, list) or len(recorded) != 5:
            return None
        now = _run_file_stat(run)
        # run.json by stat under the racy rule (see cache.unchanged_since), else by its sha256
        same_stat = now is not None and now == recorded[:4] and derived.settled(now[1], now[2], built)
        if not same_stat and derived.run_key(run) != recorded[4]:
            return None
        if not derived.unchanged_since(run, entry.get("checkpoints"), built):
            return None
        return derived.parse_scores(run, entry.get("values"))

    def record(self, run: Run, key: str, scores: Scores, index: dict[str, Any] | None) -> None:
        """Keep the run's ``scores`` under ``key``, computed from (or kept in) the run's
        cache whose valid index (:func:`~ckptaudit.store.cache.valid_index`'s, with its
        ``built`` time) is ``index``: its fingerprint and that time vouch for them. None
        (no valid cache) drops the run's entry."""
        name = self._name(run.path)
        if name is None:
            return
        self.seen.add(name)
        self.dirty = True
        if key not in self.recorded_keys:  # (the keys of this pass go last: the last to be dropped)
            self.recorded_keys.add(key)
            self.keys[key] = self.keys.pop(key, {})
        # NOTE: run.json's stat now, after its sha256 was checked against the index's: a write
        # since has a time after the index's, which makes the stat racy and the sha256 decide
        run_file = _run_file_stat(run)
        if index is None or run_file is None or len(scores) != len(run.checkpoints):
            self.keys[key].pop(name, None)
            return
        self.keys[key][name] = {
            "built": index["built"],
            "run_file": [*run_file, index["run"]],
            # (stats only: where a file is racy, the run's own cache checks its CRC-32s)
            "checkpoints": [e[:5] if isinstance(e, list) else e for e in index["checkpoints"]],
            "values": derived.scores_entry(run, scores),
        }

    def save(self) -> None:
        """Write the book when something was recorded or read afresh, else remove the new
        file (call it once, at the end of the pass, whatever its outcome): the keys recorded
        most recently last (at most :data:`~ckptaudit.store.cache.MAX_VALUE_KEYS`), those
        of this pass with its runs only (a run gone from the sweep leaves), and the metadata
        files of the runs this pass found. Never fails the command: the book is only ever a
        shortcut."""
        tmp, self.tmp = self.tmp, None
        if tmp is None:
            return
        try:
            if not self.dirty:
                return
            for key in self.recorded_keys:
                self.keys[key] = {n: e for n, e in self.keys[key].items() if n in self.seen}
            while len(self.keys) > derived.MAX_VALUE_KEYS:
                self.keys.pop(next(iter(self.keys)))
            # (the runs discovery read this pass, each with the files it could keep)
            files = {n: f for n, f in self.found.items() if f}
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(json.dumps({"version": VERSION, "files": files, "keys": self.keys}))
            os.replace(tmp, self.path)
            tmp = None
        except OSError:
            pass
        finally:
            self.dirty = False
            if tmp is not None:
                try:
                    tmp.unlink()
                except OSError:
                    pass


def open_book(paths: Any) -> SweepBook | None:
    """The sweep book of a pass over ``paths`` when they name one local folder of runs (not
    a run, a checkpoint or a URL), else None: a single run keeps its values in its own
    cache already."""
    from .remote import url_scheme

    if len(paths) != 1 or (isinstance(paths[0], str) and url_scheme(paths[0])):
        return None
    folder = Path(paths[0])
    if not folder.is_dir() or (folder / RUN_FILE).exists() or (folder / META_FILE).exists():
        return None
    return SweepBook(folder)
