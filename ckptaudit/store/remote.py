"""Runs on object storage: which paths are URLs, and the filesystem that serves them.

ckptaudit reads and writes runs through fsspec wherever a path may be a URL (``s3://``,
``gs://``, ``memory://``, ...). Credentials and endpoints come from the filesystem package's
own configuration (``AWS_*`` variables including ``AWS_ENDPOINT_URL``, fsspec's
``FSSPEC_S3_*`` config, gcloud's defaults); ckptaudit stores none of them.

The commit rule every remote writer and reader shares (object stores have no atomic rename):
a checkpoint's objects are written first and its ``meta.json`` last, so a checkpoint is
visible exactly when its ``meta.json`` exists; a run is visible when its ``run.json`` exists.
A crashed writer leaves objects without a ``meta.json``, which readers skip as in progress
and the next write or prune of the run removes.

fsspec and the protocol packages (s3fs, gcsfs) are imported here only, and only when a URL
is met (``pip install 'ckptaudit[s3]'``), so local runs never pay for them.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ..errors import UsageError

#: scheme://... (a Windows drive letter such as C:\ is one letter, so it never matches)
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")

#: the object whose presence commits a checkpoint (written last, read first)
COMMIT_OBJECT = "meta.json"


def url_scheme(path: str | os.PathLike[str]) -> str | None:
    """The scheme of a URL (``"s3"``), or None for a local path."""
    m = _URL.match(os.fspath(path)) if isinstance(path, str) else None
    return m.group(1).lower() if m else None


def is_remote(path: str | os.PathLike[str]) -> bool:
    """True for a URL served by an fsspec filesystem other than the local one.

    ``file://`` URLs are local paths (they go through the local reader unchanged).
    """
    scheme = url_scheme(path)
    return scheme is not None and scheme not in ("file", "local")


def local_path(path: str | os.PathLike[str]) -> str:
    """A ``file://`` URL as a plain local path; anything else unchanged."""
    text = os.fspath(path)
    if url_scheme(text) in ("file", "local"):
        return text.split("://", 1)[1]
    return text


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem serving ``url`` and the path within it (no scheme).

    Raises a one-line :class:`UsageError` when fsspec or the protocol's package is missing.
    """
    try:
        import fsspec.core
    except ImportError:
        raise UsageError(f"{url}: reading URLs needs fsspec: pip install 'ckptaudit[s3]'") from None
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        raise UsageError(f"{url}: {exc}".splitlines()[0]) from None
    except ValueError as exc:
        raise UsageError(f"{url}: {exc}".splitlines()[0]) from None
    return fs, root.rstrip("/")
