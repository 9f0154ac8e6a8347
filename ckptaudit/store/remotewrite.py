"""Writing runs to object storage: the objects of a remote run, its local mirrors, and the
commit rule of :mod:`~ckptaudit.store.remote` (``meta.json`` last) carried out.

Object stores have no rename and no lock, but a single object put is atomic. So a
checkpoint's objects are uploaded first and its ``meta.json`` last (the commit: readers see
the checkpoint exactly when it exists), after a listing has confirmed every other object is
there with its size; ``run.json`` is replaced by one whole-object put. A writer killed
mid-upload leaves objects without ``meta.json``: invisible to readers, and removed by the
next recorder of the run (:func:`clear_in_progress`) or, once older than a grace period, by
the next prune.

Everything here runs on the local format code: the recorder writes into a local staging
folder, and prune plans on a local mirror (:func:`download_run`) whose weight files are
sparse placeholders of the objects' sizes (no weight byte is downloaded). fsspec is imported
only through :func:`~ckptaudit.store.remote.filesystem`, when a URL is met.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .remote import COMMIT_OBJECT, filesystem, is_remote
from .remotelist import fetch_objects, list_objects, object_size, placeholders, remote_errors
from .runformat import CHECKPOINTS_DIR, RUN_FILE, is_in_progress
from .weights import NON_WEIGHT_FILES

#: the prune journal object of a remote run (its own prefix, hidden from every command)
JOURNAL_OBJECT = ".ckptaudit-prune-journal.json"
#: seconds after which prune treats a checkpoint folder without meta.json as a crashed write
GRACE_ENV = "CKPTAUDIT_REMOTE_GRACE_S"
_DEFAULT_GRACE_S = 3600.0


def run_location(path: str | os.PathLike[str]) -> str | Path:
    """A URL unchanged (``Path`` would fold ``s3://`` into ``s3:/``), a local path as a Path."""
    return path if isinstance(path, str) and is_remote(path) else Path(path)


def check_key(root: str, key: str) -> str:
    """The full object path of ``key`` (relative to the run), refused unless it lies strictly
    under the run prefix: nothing ever written or deleted outside the run."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise UsageError(f"refusing the object key {key!r}: not a plain key inside the run", root)
    full = f"{root}/{key}"
    if not full.startswith(root.rstrip("/") + "/"):
        raise UsageError(f"refusing {full!r}: outside the run prefix", root)
    return full


def list_run(fs: Any, root: str) -> dict[str, dict[str, Any]]:
    """Every object under the run prefix, by key relative to the run, with its details (the
    shared listing, :func:`~ckptaudit.store.remotelist.list_objects`; a failed request is a
    one-line :class:`UsageError`)."""
    return list_objects(fs, root, fs.unstrip_protocol(root), kind=UsageError, sweep=False)


def runs_under(url: str) -> list[str]:
    """The runs at or under ``url`` (a run, or a prefix holding runs at any depth, as a local
    folder of runs): each prefix holding a ``run.json``, hidden prefixes and runs nested in
    another run left out."""
    fs, root = filesystem(url)
    with remote_errors(url):
        listing = list_run(fs, root)
    if RUN_FILE in listing:
        return [url]
    found = sorted(
        k[: -len(RUN_FILE) - 1]
        for k in listing
        if k.endswith("/" + RUN_FILE) and not any(p.startswith(".") for p in k.split("/"))
    )
    runs = [r for r in found if not any(r.startswith(other + "/") for other in found)]
    if not runs:
        raise UsageError("no run.json under this prefix: not a run, and no runs below it", url)
    return [f"{url}/{r}" for r in runs]


def checkpoint_objects(listing: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Objects grouped by checkpoint folder: ``{name: {file key within it: info}}``."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for key, info in listing.items():
        parts = key.split("/")
        if len(parts) >= 3 and parts[0] == CHECKPOINTS_DIR:
            out.setdefault(parts[1], {})["/".join(parts[2:])] = info
    return out


def _modified(info: dict[str, Any]) -> float:
    stamp = info.get("LastModified") or info.get("created") or info.get("mtime")
    if hasattr(stamp, "timestamp"):
        return float(stamp.timestamp())
    return float(stamp) if isinstance(stamp, (int, float)) else time.time()


def in_progress(listing: dict[str, dict[str, Any]], older_than: float | None = None) -> dict[str, list[str]]:
    """Checkpoint folders without ``meta.json`` (a crashed or live write): ``{name: keys}``;
    with ``older_than`` (seconds) only those whose newest object is at least that old."""
    now = time.time()
    out = {}
    for name, files in checkpoint_objects(listing).items():
        if COMMIT_OBJECT in files:
            continue
        if older_than is not None and now - max(_modified(i) for i in files.values()) < older_than:
            continue
        out[name] = sorted(f"{CHECKPOINTS_DIR}/{name}/{k}" for k in files)
    return out


def grace_seconds() -> float:
    """How old an uncommitted checkpoint folder must be before prune removes it."""
    try:
        return float(os.environ.get(GRACE_ENV, _DEFAULT_GRACE_S))
    except ValueError:
        return _DEFAULT_GRACE_S


def clear_in_progress(fs: Any, root: str, older_than: float | None = None) -> list[str]:
    """Remove the objects of uncommitted checkpoint folders (see :func:`in_progress`);
    returns the folder names. Committed checkpoints are never touched."""
    leftovers = in_progress(list_run(fs, root), older_than)
    for keys in leftovers.values():
        fs.rm([check_key(root, k) for k in keys])
    return sorted(leftovers)


def upload_checkpoint(fs: Any, root: str, folder: Path) -> None:
    """Upload a written checkpoint folder: every file but ``meta.json``, a listing that
    confirms each is there with its size, then ``meta.json`` (the commit)."""
    name = folder.name
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    rel = {p: p.relative_to(folder).as_posix() for p in files}
    body = [p for p in files if rel[p] != COMMIT_OBJECT]
    for path in body:
        fs.put_file(str(path), check_key(root, f"{CHECKPOINTS_DIR}/{name}/{rel[path]}"))
    for _attempt in range(2):
        there = checkpoint_objects(list_run(fs, root)).get(name, {})
        missing = [p for p in body if int(there.get(rel[p], {}).get("size", -1)) != p.stat().st_size]
        if not missing:
            break
        # NOTE: something removed part of the upload meanwhile (a prune's clean-up of
        # uncommitted folders): upload it again rather than commit a checkpoint that lacks it
        for path in missing:
            fs.put_file(str(path), check_key(root, f"{CHECKPOINTS_DIR}/{name}/{rel[path]}"))
    else:
        raise UsageError(f"{name}: uploaded objects keep disappearing; not committed", root)
    fs.pipe_file(check_key(root, f"{CHECKPOINTS_DIR}/{name}/{COMMIT_OBJECT}"), (folder / COMMIT_OBJECT).read_bytes())


def put_run_json(fs: Any, root: str, local_run: Path) -> None:
    """Replace the remote ``run.json`` with the local one in one put (atomic on object stores)."""
    fs.pipe_file(check_key(root, RUN_FILE), (local_run / RUN_FILE).read_bytes())


def get_run_json(fs: Any, root: str, local_run: Path) -> bool:
    """Copy the remote ``run.json`` over the local one (another writer's ``chosen`` is kept
    by the read-modify-write that follows); False when the run has none."""
    try:
        data = fs.cat_file(check_key(root, RUN_FILE))
    except FileNotFoundError:
        return False
    (local_run / RUN_FILE).write_bytes(data)
    return True


def _fetch(fs: Any, root: str, url: str, keys: list[str], listing: dict[str, dict[str, Any]], dest: Path) -> None:
    """Download ``keys`` (relative to the run) into ``dest`` by the shared fetch
    (:func:`~ckptaudit.store.remotelist.fetch_objects`: batched, sizes checked)."""
    fetch_objects(fs, root, url, dest, keys, {k: object_size(listing[k]) for k in keys}, kind=UsageError)


def mirror_for_writer(url: str, dest: Path) -> bool:
    """What a recorder needs of an existing remote run, into ``dest``: ``run.json``, every
    committed checkpoint's ``meta.json``, and the predictions of the first and last
    checkpoints (the validation-set guard and a framework's re-validation compare with them).
    False when the URL holds no run."""
    from .discovery import read_run

    fs, root = filesystem(url)
    with remote_errors(url):
        listing = list_run(fs, root)
        if RUN_FILE not in listing:
            return False
        ckpts = {n: f for n, f in checkpoint_objects(listing).items() if COMMIT_OBJECT in f and not is_in_progress(n)}
        _fetch(fs, root, url, [RUN_FILE] + [f"{CHECKPOINTS_DIR}/{n}/{COMMIT_OBJECT}" for n in sorted(ckpts)], listing, dest)
        run = read_run(dest, name=url)
        ends = {c.name for c in (run.checkpoints[:1] + run.checkpoints[-1:])}
        ends_keys = [f"{CHECKPOINTS_DIR}/{n}/{k}" for n in sorted(ends) for k in ckpts[n] if k in NON_WEIGHT_FILES]
        _fetch(fs, root, url, ends_keys, listing, dest)
    return True


def download_run(url: str, dest: Path) -> dict[str, dict[str, Any]]:
    """A local mirror of a remote run for planning a prune, by the shared listing and fetch of
    :mod:`~ckptaudit.store.remotelist`: every object outside the checkpoint folders (run.json,
    pins, provenance, the pruned record), each committed checkpoint's ``meta.json``,
    predictions and JSON files, and its other objects (weights) as sparse files of their sizes
    (what a deletion frees is counted, nothing is downloaded). Uncommitted folders and hidden
    prefixes (``.replaced-*``, the journal) are left out. Returns the run's listing."""
    fs, root = filesystem(url)
    listing = list_objects(fs, root, url, kind=UsageError, sweep=False)
    if RUN_FILE not in listing:
        raise UsageError("no run.json under this prefix: not a run", url)
    committed = {n for n, f in checkpoint_objects(listing).items() if COMMIT_OBJECT in f and not is_in_progress(n)}
    fetch: list[str] = []
    sparse: list[str] = []
    for key in sorted(listing):
        parts = key.split("/")
        if any(p.startswith(".") for p in parts[:-1]) or key == JOURNAL_OBJECT:
            continue
        if parts[0] == CHECKPOINTS_DIR and len(parts) >= 3:
            if parts[1] not in committed:
                continue
            # NOTE: JSON files are read too (a provenance file inside a checkpoint protects it)
            small = (len(parts) == 3 and parts[2] in NON_WEIGHT_FILES) or key.endswith(".json")
            (fetch if small else sparse).append(key)
            continue
        fetch.append(key)
    sizes = {k: object_size(listing[k]) for k in fetch + sparse}
    placeholders(dest, sparse, sizes)
    fetch_objects(fs, root, url, dest, fetch, sizes, kind=UsageError)
    return listing


_TEMPS: list[str] = []


def scratch_folder(prefix: str) -> Path:
    """A temporary folder removed when the process exits (mirrors a run object outlives)."""
    path = tempfile.mkdtemp(prefix=prefix)
    if not _TEMPS:
        atexit.register(lambda: [shutil.rmtree(p, ignore_errors=True) for p in _TEMPS])
    _TEMPS.append(path)
    return Path(path)
