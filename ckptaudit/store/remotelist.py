"""Listing a prefix of object storage and fetching its objects: the one piece of code the
readers (:mod:`~ckptaudit.store.mirror`) and the writers (:mod:`~ckptaudit.store.remotewrite`,
the remote prune) share, with the one way a failed request is said.

- :func:`list_objects`: every object under a prefix in one listing (``fs.find``, 1,000 keys a
  request on S3), a prefix of several sub-prefixes and no ``run.json`` (a sweep) listed one
  sub-prefix per request stream; each object with the listing's details (size, ETag,
  modified time): nothing else is asked of the server about the layout.
- :func:`fetch_objects`: chosen keys copied into a local folder, concurrently, in batches of
  bounded memory, big objects streamed to disk; each checked against its listed size (an
  object replaced or deleted meanwhile is an error that says to try again).
- :func:`placeholders`: sparse local files of the listed sizes (a prune counts what deleting
  weights frees without downloading them).
- :func:`remote_error` / :func:`remote_errors`: a failure of the store (after the bounded
  retries of :func:`~ckptaudit.store.remote.filesystem`) as one line naming the URL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ..errors import CkptauditError, RunFormatError, UsageError, one_line

RUN_OBJECT = "run.json"
#: how many objects one concurrent fetch asks for at most (memory: their bytes at once)
BATCH_OBJECTS = 64
BATCH_BYTES = 64 * 2**20
#: how many sub-prefixes of a sweep are listed at once
LIST_WORKERS = 8


def remote_error(url: str, what: str, exc: BaseException, kind: type[CkptauditError] = RunFormatError) -> CkptauditError:
    """A one-line error for a failed request (after the retries): ``URL: what: detail``."""
    text = str(exc).strip()
    detail = text.splitlines()[0][:300] if text else type(exc).__name__
    return kind(f"{what}: {one_line(detail)}", url)


@contextmanager
def remote_errors(
    url: str, what: str = "object storage request failed", kind: type[CkptauditError] = UsageError
) -> Iterator[None]:
    """Any failure of the object store inside the block as one line (:func:`remote_error`;
    :class:`UsageError`, exit 2, by default); ckptaudit's own errors pass unchanged."""
    try:
        yield
    except CkptauditError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore, aiohttp and fsspec raise many kinds; all end here as one line
        raise remote_error(url, f"{what} ({type(exc).__name__})", exc, kind) from None


def list_objects(
    fs: Any, root: str, url: str, kind: type[CkptauditError] = RunFormatError, sweep: bool = True
) -> dict[str, dict[str, Any]]:
    """Every object under the prefix ``root``: key relative to it -> the listing's details
    (``size``, ``ETag``, ``LastModified``...). A sibling prefix (``run-ab`` beside ``run-a``)
    is never part of it; a prefix that does not exist gives ``{}``. A failed request raises
    :func:`remote_error` of ``kind``. With ``sweep`` the top level is looked at first, and a
    sweep's sub-prefixes listed in parallel; without it (a writer's listing of its own run,
    repeated per checkpoint) one flat listing, one request less."""
    prefix = root.rstrip("/") + "/"
    fs.invalidate_cache()  # NOTE: a writer lists again after its own puts: never from fsspec's cache
    if not sweep:
        return _relative(prefix, [_find(fs, root, url, kind)])
    try:
        top = fs.ls(root, detail=True)
    except FileNotFoundError:
        return {}
    except Exception as exc:  # noqa: BLE001 - the server's error, said in one line
        raise remote_error(url, "cannot list", exc, kind) from None
    subdirs = [e["name"].rstrip("/") for e in top if e.get("type") == "directory"]
    files = [e for e in top if e.get("type") != "directory"]
    if any(e["name"].rstrip("/") == prefix + RUN_OBJECT for e in files) or len(subdirs) < 2:
        found = [_find(fs, root, url, kind)]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(LIST_WORKERS, len(subdirs))) as pool:
            found = [{e["name"]: e for e in files}, *pool.map(lambda d: _find(fs, d, url, kind), subdirs)]
    return _relative(prefix, found)


def _relative(prefix: str, found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The objects (not folders) of the listings ``found`` under ``prefix``, by relative key."""
    out: dict[str, dict[str, Any]] = {}
    for part in found:
        for name, info in part.items():
            name = name.rstrip("/")
            if info.get("type") != "directory" and name.startswith(prefix):
                out[name[len(prefix) :]] = info
    return out


def _find(fs: Any, path: str, url: str, kind: type[CkptauditError]) -> dict[str, Any]:
    try:
        return dict(fs.find(path, detail=True, withdirs=False))
    except FileNotFoundError:
        return {}
    except Exception as exc:  # noqa: BLE001 - the server's error, said in one line
        raise remote_error(url, "cannot list", exc, kind) from None


def object_size(info: Mapping[str, Any]) -> int:
    """An object's size in bytes, from its listing entry."""
    return int(info.get("size") or 0)


def object_tag(info: Mapping[str, Any]) -> str:
    """What identifies an object's content in a listing: its ETag, or the nearest stand-in a
    filesystem gives (an MD5, a modified time)."""
    tag = info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("LastModified") or info.get("created")
    return str(tag)


def fetch_objects(
    fs: Any,
    root: str,
    url: str,
    local: str | os.PathLike[str],
    keys: list[str],
    sizes: Mapping[str, int],
    kind: type[CkptauditError] = RunFormatError,
) -> None:
    """Copy ``keys`` (relative to ``root``) into the folder ``local``, concurrently, in
    batches of bounded size; each must have its size in ``sizes`` (the listing's)."""
    local = os.fspath(local)
    batch: list[str] = []
    size = 0
    for key in keys:
        if sizes[key] >= BATCH_BYTES:  # NOTE: a big object streams to disk, not through memory
            _fetch_big(fs, root, url, local, key, sizes[key], kind)
            continue
        batch.append(key)
        size += sizes[key]
        if len(batch) >= BATCH_OBJECTS or size >= BATCH_BYTES:
            _fetch_batch(fs, root, url, local, batch, sizes, kind)
            batch, size = [], 0
    if batch:
        _fetch_batch(fs, root, url, local, batch, sizes, kind)


def _vanished(url: str, kind: type[CkptauditError]) -> CkptauditError:
    return kind("an object vanished while it was read (deleted by a prune or a writer?): try again", url)


def _fetch_big(fs: Any, root: str, url: str, local: str, key: str, size: int, kind: type[CkptauditError]) -> None:
    dest = os.path.join(local, *key.split("/"))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    try:
        fs.get_file(f"{root}/{key}", dest + ".part")
    except FileNotFoundError:
        raise _vanished(url, kind) from None
    except Exception as exc:  # noqa: BLE001 - the server's error, said in one line
        raise remote_error(url, "cannot read", exc, kind) from None
    if os.path.getsize(dest + ".part") != size:
        raise kind("an object changed while it was read: try again", f"{url}/{key}")
    os.replace(dest + ".part", dest)


def _fetch_batch(
    fs: Any, root: str, url: str, local: str, keys: list[str], sizes: Mapping[str, int], kind: type[CkptauditError]
) -> None:
    paths = [f"{root}/{k}" for k in keys]
    try:
        data = fs.cat(paths, on_error="raise")
    except FileNotFoundError:
        raise _vanished(url, kind) from None
    except Exception as exc:  # noqa: BLE001 - the server's error, said in one line
        raise remote_error(url, "cannot read", exc, kind) from None
    if not isinstance(data, dict):
        data = {paths[0]: data}
    for key, path in zip(keys, paths, strict=True):
        body = data.get(path)
        if body is None:
            body = data.get(fs._strip_protocol(path))  # NOTE: some filesystems key the answer without the root marker
        if not isinstance(body, bytes) or len(body) != sizes[key]:
            raise kind("an object changed while it was read: try again", f"{url}/{key}")
        dest = os.path.join(local, *key.split("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        tmp = dest + ".part"
        with open(tmp, "wb") as fh:
            fh.write(body)
        os.replace(tmp, dest)


def placeholders(local: str | os.PathLike[str], keys: list[str], sizes: Mapping[str, int]) -> None:
    """Sparse files of the listed sizes for ``keys`` in ``local`` (no byte downloaded)."""
    for key in keys:
        dest = os.path.join(os.fspath(local), *key.split("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "wb") as fh:
            fh.truncate(sizes[key])
