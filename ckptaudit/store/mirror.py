"""Remote runs read through a local mirror: one listing, then only the objects a command reads.

The local pipeline reads prediction files with os-level reads (``preadv`` into reused
buffers, CRC-32 checked, :mod:`ckptaudit.store.npzread`) and finds runs by walking folders.
Rather than thread fsspec through every reader, a run given as a URL is copied into a local
folder on first use and the unchanged local code runs on the copy; what users see names the
URL, never the copy (:func:`ckptaudit.store.remote.shown`).

What is copied, and with how many requests:

- the run prefix is listed once (``fs.find(detail=True)``: sizes and ETags come with the
  listing, 1,000 keys per request on S3), and nothing else is asked of the server about
  the layout;
- ``run.json``, each *committed* checkpoint's files (its ``meta.json`` exists: the commit
  rule of :mod:`ckptaudit.store.remote`) except its weights, and the run's other small
  files, one GET each, fetched concurrently by fsspec. Every member of a ``val.npz`` is read
  by every verb (targets, outputs, ids, groups), so the whole object in one GET is fewer
  requests than a ranged read of the zip's central directory followed by its members; the
  CRC-32 of each member is still checked by the local reader on the copy;
- weights only when a command needs them (``check --chosen`` a weights file, ``pick --copy``);
- objects of a checkpoint folder without ``meta.json`` are a write in progress: skipped
  (the folder appears empty in the copy, so discovery notes it as on disk).

The copy lives in a temporary folder removed when the command ends (:func:`end_command`,
else at exit), or, with ``--cache``
(or ``CKPTAUDIT_REMOTE_CACHE``), in a kept cache folder keyed by the URL
(:func:`cache_root`): a later command lists the prefix again and fetches only the objects
whose size or ETag changed (the listing is the run's fingerprint: no extra requests).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..errors import RunFormatError
from .remote import COMMIT_OBJECT, READING, filesystem, is_remote, local_path, register_mirror
from .remotelist import RUN_OBJECT, fetch_objects, list_objects, object_size, object_tag, remote_error

CHECKPOINTS = "checkpoints"
#: derived data of a local command, never copied (it is keyed by local file stats)
DERIVED = ".ckptaudit-cache"
INDEX_VERSION = 1

#: (url, weights) -> local folder, for the life of the process
_DONE: dict[tuple[str, bool], str] = {}
_TEMP: list[str] = []


class _Copy:
    """What :func:`complete` needs to fetch a copy's weights later."""

    def __init__(self, fs: Any, root: str, url: str, listing: dict[str, tuple[int, str]], later: list[str]) -> None:
        self.fs, self.root, self.url, self.listing, self.later = fs, root, url, listing, set(later)
        self.kept: Path | None = None  #: the cache folder (its index records what was fetched)


#: local copy -> how to complete it
_COPIES: dict[str, _Copy] = {}


def cache_root() -> Path:
    """Where kept copies live: ``CKPTAUDIT_REMOTE_CACHE`` when it names a folder, else
    ``$XDG_CACHE_HOME/ckptaudit/remote`` (``~/.cache/ckptaudit/remote``)."""
    given = os.environ.get("CKPTAUDIT_REMOTE_CACHE", "")
    if given and given not in ("1", "true", "yes"):
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ckptaudit" / "remote"


def _keeping() -> bool:
    return READING.keep or bool(os.environ.get("CKPTAUDIT_REMOTE_CACHE"))


def localize(target: str | os.PathLike[str], *, weights: bool = False) -> str:
    """A local path holding what ``target`` names: ``target`` itself when local (a
    ``file://`` URL as a plain path), else the copy of the remote run (or the remote file)
    it names. A URL of one checkpoint folder gives that folder inside its run's copy.

    Raises a one-line :class:`~ckptaudit.errors.CkptauditError` for a missing prefix, an
    unreachable server or a failed read (after the filesystem's bounded retries).
    """
    text = os.fspath(target)
    if not is_remote(text):
        return local_path(text)
    url = text.rstrip("/")
    if not url.split("://", 1)[1]:
        raise RunFormatError("names no bucket or folder", text)
    parent, _, name = url.rpartition("/")
    if parent.endswith("/" + CHECKPOINTS) and name and "://" in parent:
        run_url = parent.rpartition("/")[0]
        if run_url.split("://", 1)[1]:
            local = _mirror(run_url, weights, single=url)
            if local is not None:
                return os.path.join(local, CHECKPOINTS, name)
    local = _mirror(url, weights)
    return url if local is None else local


def _mirror(url: str, weights: bool, single: str | None = None) -> str | None:
    """The local copy of the run or runs under ``url`` (see the module docstring); None when
    ``single`` (a checkpoint folder's URL) is given and ``url`` holds no run.json."""
    for key in ((url, weights), (url, True)):
        if key in _DONE:
            return _DONE[key]
    fs, root = filesystem(url)
    listing = _list(fs, root, url)
    if RUN_OBJECT not in listing and single is not None:
        return None
    if not listing:
        file_copy = _one_file(fs, root, url)
        if file_copy is not None:
            return file_copy
        raise RunFormatError("no such file or folder", url)
    wanted, pending, later = _select(listing, weights)
    if not wanted and not pending:
        raise RunFormatError("no run.json found here or below", url)
    kept = None
    if _keeping():
        local, kept = _cached_copy(fs, root, url, listing, wanted, pending, later)
    else:
        local = tempfile.mkdtemp(prefix="ckptaudit-remote-")
        _TEMP.append(local)
        _fetch(fs, root, url, local, wanted, listing)
        _make_dirs(local, pending)
    register_mirror(local, url)
    _DONE[(url, weights)] = local
    _COPIES[local] = _Copy(fs, root, url, listing, later)
    _COPIES[local].kept = kept
    return local


def complete(folder: str | os.PathLike[str]) -> None:
    """Fetch the files left out of a copy (weights) below ``folder``, when ``folder`` lies in
    a copy of a remote run: ``pick`` hashes (and ``--copy`` copies) only the winner's weights,
    so only the winner's are fetched. A local folder is left as it is."""
    text = os.path.abspath(os.fspath(folder))
    for local, copy in _COPIES.items():
        if text != local and not text.startswith(local + os.sep):
            continue
        rel = os.path.relpath(text, local).replace(os.sep, "/")
        keys = sorted(k for k in copy.later if rel == "." or k.startswith(rel + "/"))
        if keys and copy.kept is not None:
            _fetch_kept(copy, local, keys)
        elif keys:
            _fetch(copy.fs, copy.root, copy.url, local, keys, copy.listing)
        copy.later.difference_update(keys)
        return


def _fetch_kept(copy: _Copy, local: str, keys: list[str]) -> None:
    """:func:`_fetch` into a kept copy, recorded in its index (under its lock)."""
    import fcntl

    assert copy.kept is not None
    with open(copy.kept / "lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        index = _read_index(copy.kept / "index.json", copy.url)["objects"]
        _fetch(copy.fs, copy.root, copy.url, local, keys, copy.listing)
        index.update({k: list(copy.listing[k]) for k in keys})
        _write_index(copy.kept / "index.json", copy.url, index)


def _list(fs: Any, root: str, url: str) -> dict[str, tuple[int, str]]:
    """Every object under ``root``: relative key -> (size, ETag or the nearest stand-in)
    (one listing, :func:`~ckptaudit.store.remotelist.list_objects`)."""
    return {k: (object_size(i), object_tag(i)) for k, i in list_objects(fs, root, url).items()}


def _select(listing: dict[str, tuple[int, str]], weights: bool) -> tuple[list[str], list[str], list[str]]:
    """The keys to copy, the checkpoint folders in progress (objects, no meta.json), and the
    weights left for later (:func:`complete`)."""
    from .weights import MODEL_SUFFIXES, NON_WEIGHT_FILES

    runs = {k[: -len(RUN_OBJECT)].rstrip("/") for k in listing if k == RUN_OBJECT or k.endswith("/" + RUN_OBJECT)}
    wanted: list[str] = []
    later: list[str] = []
    pending: set[str] = set()
    for key in sorted(listing):
        run = _run_of(key, runs)
        if run is None:
            continue
        rest = key[len(run) + 1 :] if run else key
        parts = rest.split("/")
        if parts[0] == DERIVED:
            continue
        if parts[0] == CHECKPOINTS and len(parts) > 2:
            folder = "/".join(p for p in (run, CHECKPOINTS, parts[1]) if p)
            if folder + "/" + COMMIT_OBJECT not in listing:
                pending.add(folder)  # NOTE: the commit rule: a write in progress, never read
                continue
        name = parts[-1]
        if name in READING.unread:
            continue
        if not weights and name not in NON_WEIGHT_FILES and os.path.splitext(name)[1].lower() in MODEL_SUFFIXES:
            later.append(key)
            continue
        wanted.append(key)
    return wanted, sorted(pending), later


def _run_of(key: str, runs: set[str]) -> str | None:
    """The deepest run folder holding ``key`` ("" is the listed root), or None (one set
    lookup per folder level: a sweep of many runs costs no scan of them per key)."""
    parts = key.split("/")[:-1]
    for depth in range(len(parts), -1, -1):
        folder = "/".join(parts[:depth])
        if folder in runs:
            return folder
    return None


def _fetch(fs: Any, root: str, url: str, local: str, keys: list[str], listing: dict[str, tuple[int, str]]) -> None:
    """Copy ``keys`` into ``local`` (:func:`~ckptaudit.store.remotelist.fetch_objects`)."""
    fetch_objects(fs, root, url, local, keys, {k: listing[k][0] for k in keys})


def _make_dirs(local: str, folders: list[str]) -> None:
    for folder in folders:
        os.makedirs(os.path.join(local, *folder.split("/")), exist_ok=True)


def _one_file(fs: Any, root: str, url: str) -> str | None:
    """A copy of the single object ``url`` names (a provenance file, a val.npz), or None
    when there is none."""
    try:
        if not fs.isfile(root):
            return None
        body = fs.cat_file(root)
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001
        raise remote_error(url, "cannot read", exc) from None
    folder = tempfile.mkdtemp(prefix="ckptaudit-remote-")
    _TEMP.append(folder)
    dest = os.path.join(folder, root.rsplit("/", 1)[-1])
    with open(dest, "wb") as fh:
        fh.write(body)
    register_mirror(dest, url)
    return dest


# --------------------------------------------------------------------------- kept copies


def _cached_copy(
    fs: Any,
    root: str,
    url: str,
    listing: dict[str, tuple[int, str]],
    wanted: list[str],
    pending: list[str],
    later: list[str],
) -> tuple[str, Path]:
    """The kept copy of ``url``, brought up to date with ``listing``: objects whose size and
    ETag are those recorded are not fetched again; objects gone from the listing are removed."""
    import fcntl

    folder = cache_root() / hashlib.sha256(url.encode()).hexdigest()[:32]
    tree = folder / "tree"
    tree.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # NOTE: two commands on one cached run take turns
        index = _read_index(folder / "index.json", url)
        have: dict[str, list[Any]] = index["objects"]
        stale = [k for k in wanted if have.get(k) != list(listing[k]) or not _same_size(tree / k, listing[k][0])]
        for key in [k for k in have if k not in listing or have[k] != list(listing[k])]:
            _remove(tree / key)
            del have[key]
        # NOTE: written first without the stale keys, so that a fetch cut off part-way never
        # leaves an index that vouches for a file it did not finish
        _write_index(folder / "index.json", url, have)
        _fetch(fs, root, url, str(tree), stale, listing)
        have.update({k: list(listing[k]) for k in stale})
        _write_index(folder / "index.json", url, have)
        _prune_empty(tree, keep=set(pending))
        _make_dirs(str(tree), pending)
        # NOTE: weights fetched by an earlier command and unchanged since are there already
        later[:] = [k for k in later if have.get(k) != list(listing[k]) or not _same_size(tree / k, listing[k][0])]
    return str(tree), folder


def _same_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def _read_index(path: Path, url: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"objects": {}}
    if not isinstance(data, dict) or data.get("version") != INDEX_VERSION or data.get("url") != url:
        return {"objects": {}}
    objects = data.get("objects")
    return {"objects": dict(objects) if isinstance(objects, dict) else {}}


def _write_index(path: Path, url: str, objects: dict[str, list[Any]]) -> None:
    from .atomicwrite import write_atomic

    body = {"version": INDEX_VERSION, "url": url, "objects": objects}
    write_atomic(path, json.dumps(body, sort_keys=True).encode())


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _prune_empty(tree: Path, keep: set[str]) -> None:
    """Remove folders left empty by removed objects (a checkpoint deleted remotely must not
    linger as an empty folder), except the in-progress ones the listing still shows."""
    for dirpath, _dirs, filenames in os.walk(tree, topdown=False):
        rel = os.path.relpath(dirpath, tree).replace(os.sep, "/")
        if rel == "." or rel in keep or filenames or os.listdir(dirpath):
            continue
        os.rmdir(dirpath)


# --------------------------------------------------------------------------- temporary copies


def release(folder: str | None = None) -> None:
    """Remove a temporary copy (or every one, with None) and forget it; a kept copy is only
    forgotten."""
    from .remote import forget_mirror

    for item in list(_TEMP) if folder is None else [folder]:
        if item in _TEMP:
            _TEMP.remove(item)
            shutil.rmtree(item, ignore_errors=True)
        forget_mirror(item)
        for key in [k for k, v in _DONE.items() if v == item]:
            del _DONE[key]
        _COPIES.pop(item, None)


def end_command() -> None:
    """Forget every copy made in this process (temporary ones removed; kept ones stay on
    disk) and stop keeping: the next :func:`localize` lists the server again. The CLI calls
    this when a command ends; a library user may, once done with the runs it read."""
    from .remote import _SHOWN

    release()
    _DONE.clear()
    _COPIES.clear()
    _SHOWN.clear()
    READING.reset()


atexit.register(release)
