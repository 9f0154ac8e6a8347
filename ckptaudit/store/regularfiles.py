"""Opening and reading small files that anyone could have written: regular files only, bounded.

This module owns :func:`open_regular` (a FIFO, a device or a folder is refused after a
``stat`` and again after a non-blocking open), :func:`read_small` (a size limit checked
before and while reading) and the JSON and text readers built on them (nesting depth,
integer length and UTF-8 checked, one error naming the file). :mod:`ckptaudit.store.safeio`
re-exports all of it.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import IO, Any

from ..errors import CkptauditError, RunFormatError
from ..limits import MAX_JSON_ENV, max_json_bytes

#: longest integer literal accepted in JSON (an int64 has 19 digits)
MAX_JSON_INT_DIGITS = 40
_CHUNK = 1 << 20

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


def describe_mode(mode: int) -> str:
    """What a ``st_mode`` that is not a regular file is, in words ("a FIFO", "a folder", ...)."""
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


_kind = describe_mode


def open_regular(path: str | Path, error: type[CkptauditError] = RunFormatError) -> IO[bytes]:
    """Open ``path`` for binary reading if, and only if, it is a regular file.

    Raises ``error`` for anything else (checked before opening, so a device is never
    opened, and again on the open descriptor, so a file swapped meanwhile is caught);
    ``FileNotFoundError`` and other ``OSError`` pass through for the caller to word.
    """
    fd, _ = _open_regular_fd(path, error)
    try:
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _open_regular_fd(path: str | Path, error: type[CkptauditError]) -> tuple[int, os.stat_result]:
    """:func:`open_regular`'s descriptor, with its ``fstat``."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise error(f"is {_kind(st.st_mode)}, not a regular file; refusing to read it", path)
    # NOTE: O_NONBLOCK keeps open() of a FIFO from waiting for a writer; it does nothing
    # to reads of a regular file.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"is {_kind(st.st_mode)}, not a regular file; refusing to read it", path)
        return fd, st
    except BaseException:
        os.close(fd)
        raise


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_JSON_INT_DIGITS:
        raise ValueError(f"an integer with {digits} digits")
    return int(text)


#: one decoder for every file (json.loads with a hook makes a new one per call: 6,000 in a
#: 1,000-run sweep's discovery)
_DECODER = json.JSONDecoder(parse_int=_parse_int)


def parse_json_text(data: bytes, path: str | Path, error: type[CkptauditError] = RunFormatError) -> Any:
    """Decode UTF-8 JSON, turning every way it can fail into ``error`` naming ``path``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"not UTF-8 text (byte {exc.start})", path) from None
    try:
        if text.startswith("\ufeff"):  # (json.loads' own check, kept: the decoder is called directly)
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise error(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", path) from None
    except RecursionError:
        raise error("malformed JSON: nested too deeply", path) from None
    except ValueError as exc:
        raise error(f"malformed JSON: {exc}", path) from None


def read_small(path: str | Path, error: type[CkptauditError] = RunFormatError) -> bytes:
    """The bytes of a regular file of at most ``CKPTAUDIT_MAX_JSON_BYTES`` (64 MiB by
    default): a larger one (a sparse ``meta.json`` of gigabytes) is ``error`` from its size
    alone, before anything is read, and never more than the limit is read (a file that
    grows meanwhile). ``FileNotFoundError`` passes through."""
    limit = max_json_bytes()
    try:
        fd, st = _open_regular_fd(path, error)
        try:
            size = st.st_size
            if size > limit:
                raise error(_too_big(size, limit), path)
            data = _read_up_to(fd, size, limit + 1)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror or exc}", path) from None
    if len(data) > limit:
        raise error(_too_big(len(data), limit), path)
    return data


def _read_up_to(fd: int, size: int, most: int) -> bytes:
    """At most ``most`` bytes of ``fd`` (until end of file), expecting ``size``.

    Straight from the descriptor, asking for the size ``fstat`` gave plus one byte, and more
    only if the file grew: a read of ``most`` itself makes a buffer of ``most`` first (64 MiB,
    mapped and unmapped for every meta.json), and a buffered file object costs as much as the
    read: 71-90 -> 21 us a file, most of a 1,000-run sweep's discovery (issue 21)."""
    parts = []
    total = 0
    want = min(size + 1, most)
    while total < most:
        chunk = os.read(fd, want)
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
        want = min(_CHUNK, most - total)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _too_big(size: int, limit: int) -> str:
    return (
        f"holds {size:,} bytes, more than the {limit:,} a JSON or text file here may hold (set {MAX_JSON_ENV} to raise the limit)"
    )


def read_json(path: str | Path, error: type[CkptauditError] = RunFormatError) -> Any:
    """Read a JSON file (see :func:`read_small`); a missing file raises ``FileNotFoundError``,
    anything else ``error``."""
    return parse_json_text(read_small(path, error), path, error)


def read_text(path: str | Path, error: type[CkptauditError]) -> str:
    """A regular UTF-8 text file's contents (see :func:`read_small`; ``FileNotFoundError``
    passes through)."""
    data = read_small(path, error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"not UTF-8 text (byte {exc.start})", path) from None
