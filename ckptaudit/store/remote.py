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
is met (the ``s3`` extra: ``pip install -e ".[s3]"``), so local runs never pay for them.
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


#: bounded retries and timeouts for S3 (a server that fails every request must end in a
#: one-line error within seconds, not hang): botocore's standard retry mode, 3 attempts a
#: request, and s3fs's own wrapper, 3 tries more at most; the user's fsspec configuration
#: (``FSSPEC_S3_*``, ~/.config/fsspec) wins over each of these; ``AWS_MAX_ATTEMPTS`` does not
#: (botocore prefers the explicit setting). Writers (the Recorder, prune) get the same, as every
#: remote filesystem is made by :func:`filesystem`
S3_RETRIES = 3
S3_CONFIG_DEFAULTS: dict[str, Any] = {
    "retries": {"max_attempts": 3, "mode": "standard"},
    "connect_timeout": 5,
    "read_timeout": 30,
}


def _storage_options(protocol: str) -> dict[str, Any]:
    """Options for the protocol's filesystem: a fresh instance each time (the environment,
    ``AWS_ENDPOINT_URL`` included, is read when it is made), and for S3 the bounded retries
    above under whatever fsspec's own configuration sets."""
    options: dict[str, Any] = {"skip_instance_cache": True}
    if protocol not in ("s3", "s3a"):
        return options
    import fsspec.config

    user = dict(fsspec.config.conf.get(protocol, {}))
    config = dict(S3_CONFIG_DEFAULTS)
    config.update(user.get("config_kwargs") or {})
    options["config_kwargs"] = config
    return options


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem serving ``url`` and the path within it (no scheme).

    Raises a one-line :class:`UsageError` when fsspec or the protocol's package is missing.
    """
    try:
        import fsspec.core
    except ImportError:
        raise UsageError(f"{url}: reading URLs needs fsspec: install the s3 extra (pip install -e '.[s3]')") from None
    try:
        fs, root = fsspec.core.url_to_fs(url, **_storage_options(url_scheme(url) or ""))
        if url_scheme(url) in ("s3", "s3a") and getattr(fs, "retries", 0) > S3_RETRIES:
            fs.retries = S3_RETRIES  # NOTE: s3fs's own retry loop (a class setting, not an option)
    except ImportError as exc:
        raise UsageError(f"{url}: {exc}".splitlines()[0]) from None
    except ValueError as exc:
        raise UsageError(f"{url}: {exc}".splitlines()[0]) from None
    return fs, root.rstrip("/")


# --------------------------------------------------------------------------- what a command reads


class _Reading:
    """What the running command asks of remote reads (set by the CLI, reset when it ends)."""

    def __init__(self) -> None:
        self.keep = False  #: keep copies in the local cache (``--cache``)
        self.unread: set[str] = set()  #: file names the command never reads: not fetched

    def keep_cache(self, enabled: bool = True) -> None:
        """Keep the copies of remote runs in the cache folder (``--cache``) rather than in a
        temporary folder removed at the end of the command."""
        self.keep = enabled

    def leave_out(self, *names: str) -> None:
        """Fetch no file of these names (``rank`` without ``--flags`` reads no train.npz)."""
        self.unread.update(names)

    def reset(self) -> None:
        """Back to the defaults (a command ended)."""
        self.keep = False
        self.unread.clear()


READING = _Reading()


# --------------------------------------------------------------------------- what users see

#: local mirror folder -> the URL it copies (see :mod:`ckptaudit.store.mirror`)
_SHOWN: dict[str, str] = {}


def register_mirror(local: str, url: str) -> None:
    """Record that the local folder ``local`` holds a copy of ``url``: :func:`shown` then
    names the URL wherever a path below ``local`` would be shown."""
    _SHOWN[os.fspath(local).rstrip(os.sep)] = url.rstrip("/")


def forget_mirror(local: str) -> None:
    """Stop naming ``local`` (and anything registered below it) by its URL (the mirror was removed)."""
    root = os.fspath(local).rstrip(os.sep)
    for key in [k for k in _SHOWN if k == root or k.startswith(root + os.sep)]:
        del _SHOWN[key]


def shown(path: str | os.PathLike[str]) -> str:
    """``path`` as users see it: a path inside a mirror of a remote run is named by its URL
    (``/tmp/ckptaudit-remote-x/checkpoints/epoch-3`` -> ``s3://b/run/checkpoints/epoch-3``);
    any other path as ``str(path)``."""
    text = os.fspath(path)
    if not _SHOWN:
        return text
    for local, url in _SHOWN.items():
        if text == local:
            return url
        if text.startswith(local + os.sep):
            return url + "/" + text[len(local) + 1 :].replace(os.sep, "/")
    return text


def location(path: str | os.PathLike[str]) -> str:
    """Where a run lives, for records that must find it again (provenance files): the URL of
    a copy of a remote run, else the resolved local path."""
    named = shown(path)
    return named if named != os.fspath(path) else os.path.realpath(path)


def is_copy(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` lies in a local copy of a remote run."""
    return bool(_SHOWN) and shown(path) != os.fspath(path)


def shown_text(text: str) -> str:
    """``text`` with every mirror folder it names replaced by the URL the folder copies
    (messages and documents built from paths the library saw)."""
    if not _SHOWN:
        return text
    for local, url in sorted(_SHOWN.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(local, url)
    return text
