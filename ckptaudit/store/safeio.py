"""Reading files that anyone could have written, without hanging, crashing or inflating.

Every file ckptaudit reads from a run (run.json, meta.json, val.npz, train.npz) and every
policy file goes through here, so that hostile or broken input becomes one clear error
naming the file:

- only regular files are opened: a FIFO, a device or a folder named ``meta.json`` is
  refused after a ``stat`` and again after a non-blocking open (a FIFO would block the
  open forever, ``/dev/zero`` would be read forever);
- JSON that is nested too deeply, holds an integer of absurd length, or is not UTF-8 is
  an error, not a RecursionError or ValueError from deep inside the parser;
- a prediction archive's arrays are measured from the zip's central directory and each
  ``.npy`` header before anything is inflated, so a small ``val.npz`` that would inflate
  to gigabytes (a zip bomb) is refused (limit: ``CKPTAUDIT_MAX_NPZ_BYTES``, default 2 GiB).
"""

from __future__ import annotations

import json
import math
import os
import stat
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import CkptauditError, RunFormatError, UsageError

#: the environment variable that sets how many bytes one prediction file's arrays may inflate to
MAX_NPZ_ENV = "CKPTAUDIT_MAX_NPZ_BYTES"
DEFAULT_MAX_NPZ_BYTES = 2 << 30
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


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def open_regular(path: str | Path, error: type[CkptauditError] = RunFormatError) -> IO[bytes]:
    """Open ``path`` for binary reading if, and only if, it is a regular file.

    Raises ``error`` for anything else (checked before opening, so a device is never
    opened, and again on the open descriptor, so a file swapped meanwhile is caught);
    ``FileNotFoundError`` and other ``OSError`` pass through for the caller to word.
    """
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
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_JSON_INT_DIGITS:
        raise ValueError(f"an integer with {digits} digits")
    return int(text)


def parse_json_text(data: bytes, path: str | Path, error: type[CkptauditError] = RunFormatError) -> Any:
    """Decode UTF-8 JSON, turning every way it can fail into ``error`` naming ``path``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"not UTF-8 text (byte {exc.start})", path) from None
    try:
        return json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise error(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", path) from None
    except RecursionError:
        raise error("malformed JSON: nested too deeply", path) from None
    except ValueError as exc:
        raise error(f"malformed JSON: {exc}", path) from None


def read_json(path: str | Path, error: type[CkptauditError] = RunFormatError) -> Any:
    """Read a JSON file; a missing file raises ``FileNotFoundError``, anything else ``error``."""
    try:
        with open_regular(path, error) as fh:
            data = fh.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror or exc}", path) from None
    return parse_json_text(data, path, error)


def read_text(path: str | Path, error: type[CkptauditError]) -> str:
    """A regular UTF-8 text file's contents (``FileNotFoundError`` passes through)."""
    try:
        with open_regular(path, error) as fh:
            data = fh.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror or exc}", path) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"not UTF-8 text (byte {exc.start})", path) from None


def max_npz_bytes() -> int:
    """The most bytes one prediction file's arrays may inflate to (``CKPTAUDIT_MAX_NPZ_BYTES``)."""
    raw = os.environ.get(MAX_NPZ_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_MAX_NPZ_BYTES
    try:
        value = int(raw.strip())
    except ValueError:
        raise UsageError(f"{MAX_NPZ_ENV} must be a number of bytes, got {raw!r}") from None
    if value < 1:
        raise UsageError(f"{MAX_NPZ_ENV} must be positive, got {raw!r}")
    return value


def _header(member: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(member)
    raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, path: Path) -> np.ndarray:
    with zf.open(info) as member:
        shape, fortran, dtype = _header(member)
        if dtype.hasobject:
            raise RunFormatError(f"array {key!r} holds Python objects, which need pickle (never allowed)", path)
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        if member.tell() + nbytes != info.file_size:
            raise RunFormatError(
                f"array {key!r} declares shape {shape} of {dtype} ({nbytes} bytes) but its archive member holds "
                f"{info.file_size - member.tell()} bytes (truncated or corrupt)",
                path,
            )
        arr = np.empty(count, dtype=dtype)
        raw = arr.view(np.uint8).reshape(-1) if nbytes else None
        done = 0
        while done < nbytes:
            chunk = member.read(min(_CHUNK, nbytes - done))
            if not chunk:
                raise RunFormatError(f"array {key!r} ends early (truncated or corrupt)", path)
            assert raw is not None
            raw[done : done + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
            done += len(chunk)
        # NOTE: reading the member to its end makes zipfile check its CRC-32.
        member.read(1)
    return arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)


def read_npz(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The named arrays of a ``numpy.savez`` archive, read without pickle.

    Sizes are checked before inflating: the members' uncompressed sizes (from the zip's
    central directory) must add up to at most :func:`max_npz_bytes`, and each ``.npy``
    header must describe exactly its member's bytes. Raises :class:`RunFormatError`.
    """
    limit = max_npz_bytes()
    try:
        with open_regular(path) as fh, zipfile.ZipFile(fh) as zf:
            members = {i.filename[: -len(".npy")]: i for i in zf.infolist() if i.filename.endswith(".npy")}
            missing = [k for k in required if k not in members]
            if missing:
                raise RunFormatError(f"missing array {', '.join(sorted(missing))}", path)
            wanted = [(k, members[k]) for k in (*required, *optional) if k in members]
            total = sum(info.file_size for _, info in wanted)
            if total > limit:
                raise RunFormatError(
                    f"its arrays would inflate to {total:,} bytes from {os.path.getsize(path):,} on disk, more than "
                    f"the limit of {limit:,} (a zip bomb?); set {MAX_NPZ_ENV} to raise the limit",
                    path,
                )
            return {k: _read_member(zf, info, k, path) for k, info in wanted}
    except CkptauditError:
        raise
    except FileNotFoundError:
        raise RunFormatError(f"no {path.name}", path.parent) from None
    except zipfile.BadZipFile as exc:
        raise RunFormatError(f"unreadable (truncated or corrupt): not a numpy .npz archive ({exc})", path) from None
    except Exception as exc:  # EOFError, OSError, zlib.error, ValueError from a bad header, ...
        raise RunFormatError(f"unreadable (truncated or corrupt): {type(exc).__name__}: {exc}", path) from None


def zip_fingerprint(path: Path) -> list[list[Any]] | None:
    """(member name, CRC-32, size) of every member of a zip, read from its central
    directory only (a few hundred bytes); None when the file cannot be read as a zip."""
    try:
        with open_regular(path) as fh, zipfile.ZipFile(fh) as zf:
            return [[i.filename, i.CRC, i.file_size] for i in zf.infolist()]
    except Exception:  # anything unreadable simply has no fingerprint: no cache is used
        return None
