"""Reading a prediction archive's arrays (``val.npz``/``train.npz``) without inflating a bomb.

This module owns :func:`read_npz` and :func:`read_npy`: each array's size is measured from
the zip's central directory and its ``.npy`` header before anything is inflated (limit:
``CKPTAUDIT_MAX_NPZ_BYTES``), stored members are read straight into reusable buffers
(:class:`ReadBuffers`) with their CRC checked, and compressed ones through zipfile.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import CkptauditError, RunFormatError, UsageError
from .crc import crc32
from .regularfiles import _CHUNK, _open_regular_fd, open_regular
from .zipstamp import _TAIL, parse_central

#: the environment variable that sets how many bytes one prediction file's arrays may inflate to
MAX_NPZ_ENV = "CKPTAUDIT_MAX_NPZ_BYTES"
DEFAULT_MAX_NPZ_BYTES = 2 << 30


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
    try:
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(member)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(member)
    except (ValueError, SyntaxError, TypeError) as exc:
        # NOTE: numpy's messages can run to several lines, and one (a header over 10,000
        # bytes) advises allow_pickle=True, which this tool never sets: only its first line.
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ValueError(f"malformed .npy header ({first.removesuffix('.')})") from None
    raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")


def _checked_layout(shape: tuple[int, ...], dtype: np.dtype, key: str, path: Path) -> int:
    """The byte count of an array of ``shape`` and ``dtype`` (refusing objects, which need pickle)."""
    if dtype.hasobject:
        raise RunFormatError(f"array {key!r} holds Python objects, which need pickle (never allowed)", path)
    if any(d < 0 for d in shape):
        raise RunFormatError(f"array {key!r} declares a negative dimension {shape} (corrupt)", path)
    return math.prod(shape) * dtype.itemsize


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, path: Path) -> np.ndarray:
    with zf.open(info) as member:
        shape, fortran, dtype = _header(member)
        nbytes = _checked_layout(shape, dtype, key, path)
        count = math.prod(shape)
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


# --------------------------------------------------------------------------- stored members, read directly

#: a local file header: signature, versions, flags, method, time, date, CRC, sizes, name and extra lengths
_LOCAL = struct.Struct("<4s2B4HL2L2H")
_LOCAL_MAGIC = b"PK\x03\x04"
#: how much is read at once from a member's start: its local header, name, extra field and
#: (typically) its whole .npy header, so that one pread usually finds everything
_HEAD_GUESS = 1024
#: parsed .npy headers by their bytes (the same few recur across a sweep's checkpoints);
#: parsing one with numpy costs a literal_eval, far more than reading a small array
_NPY_HEADERS: dict[bytes, tuple[tuple[int, ...], bool, np.dtype]] = {}
_NPY_HEADERS_MAX = 256


def _pread_exact(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` from ``fd`` at ``offset``; the bytes read (fewer only at the end of the file)."""
    done = 0
    total = view.nbytes
    while done < total:
        got = os.preadv(fd, [view[done:]], offset + done)
        if got <= 0:
            break
        done += got
    return done


#: a file up to this size is read whole, in one call, and its members taken from memory
#: (a sweep of small runs: one read a file instead of seven, issue 21)
_WHOLE_FILE = 256 << 10


class _Window:
    """Reads of one open file, served from ``data`` (the file's bytes from ``base`` to its
    end) where they lie in it, else from the descriptor."""

    __slots__ = ("fd", "data", "base", "_view")

    def __init__(self, fd: int, data: bytes, base: int) -> None:
        self.fd, self.data, self.base = fd, data, base
        self._view = memoryview(data)

    def pread(self, n: int, offset: int) -> bytes:
        """Up to ``n`` bytes at ``offset`` (fewer only at the end of the file), as ``os.pread``."""
        if offset >= self.base:
            return self.data[offset - self.base : offset - self.base + n]
        return os.pread(self.fd, n, offset)

    def readinto(self, view: memoryview, offset: int) -> int:
        """Fill ``view`` from ``offset``; the bytes read (fewer only at the end of the file)."""
        at = offset - self.base
        if at >= 0 and at + view.nbytes <= len(self.data):
            view.cast("B")[:] = self._view[at : at + view.nbytes]
            return view.nbytes
        return _pread_exact(self.fd, view, offset)


def _npy_header(prefix: bytes) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype of a ``.npy`` header (magic through padding), parsed
    by numpy once per distinct header."""
    found = _NPY_HEADERS.get(prefix)
    if found is None:
        found = _header(io.BytesIO(prefix))
        if len(_NPY_HEADERS) >= _NPY_HEADERS_MAX:
            _NPY_HEADERS.clear()
        _NPY_HEADERS[prefix] = found
    return found


class _Stored:
    """Where a stored (uncompressed) member's array lies in its file, and its .npy header."""

    __slots__ = ("header", "offset", "shape", "fortran", "dtype", "nbytes", "count")

    def __init__(self, src: _Window, size: int, info: zipfile.ZipInfo, key: str, path: Path) -> None:
        name = info.filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
        head = src.pread(_HEAD_GUESS + len(name), info.header_offset)
        if len(head) < _LOCAL.size:
            raise RunFormatError(f"array {key!r} ends early (truncated or corrupt)", path)
        fields = _LOCAL.unpack_from(head)
        if fields[0] != _LOCAL_MAGIC:
            raise RunFormatError(f"unreadable (truncated or corrupt): bad local header of {info.filename!r}", path)
        name_len, extra_len = fields[-2], fields[-1]
        if head[_LOCAL.size : _LOCAL.size + name_len] != name:
            raise RunFormatError(
                f"unreadable (truncated or corrupt): the local header of {info.filename!r} names another file", path
            )
        start = info.header_offset + _LOCAL.size + name_len + extra_len
        rel = start - info.header_offset
        # NOTE: magic (6 bytes), version (2), header length (2 for 1.0, 4 for 2.0), header
        fixed = head[rel : rel + 12]
        if len(fixed) < 10 or fixed[:6] != b"\x93NUMPY":
            raise RunFormatError(f"unreadable (truncated or corrupt): array {key!r} is not a .npy array", path)
        if fixed[6:8] == b"\x01\x00":
            hlen = 10 + int.from_bytes(fixed[8:10], "little")
        elif fixed[6:8] == b"\x02\x00" and len(fixed) == 12:
            hlen = 12 + int.from_bytes(fixed[8:12], "little")
        else:
            raise RunFormatError(
                f"unreadable (truncated or corrupt): ValueError: unsupported .npy format version {fixed[6]}.{fixed[7]}", path
            )
        if hlen > info.file_size:
            raise RunFormatError(f"array {key!r} ends early (truncated or corrupt)", path)
        prefix = head[rel : rel + hlen]
        if len(prefix) < hlen:
            prefix = src.pread(hlen, start)
            if len(prefix) < hlen:
                raise RunFormatError(f"array {key!r} ends early (truncated or corrupt)", path)
        self.shape, self.fortran, self.dtype = _npy_header(prefix)
        self.nbytes = _checked_layout(self.shape, self.dtype, key, path)
        self.count = math.prod(self.shape)
        if hlen + self.nbytes != info.file_size:
            raise RunFormatError(
                f"array {key!r} declares shape {self.shape} of {self.dtype} ({self.nbytes} bytes) but its archive member "
                f"holds {info.file_size - hlen} bytes (truncated or corrupt)",
                path,
            )
        if start + info.file_size > size:
            raise RunFormatError(f"array {key!r} ends early (truncated or corrupt)", path)
        self.header = prefix
        self.offset = start + hlen

    def shaped(self, flat: np.ndarray) -> np.ndarray:
        """``flat`` (this member's bytes, viewed as its dtype) in the array's shape."""
        return flat.reshape(self.shape[::-1]).T if self.fortran else flat.reshape(self.shape)

    def new_flat(self) -> tuple[np.ndarray, np.ndarray]:
        """A new 1-D array for this member's values, and its bytes."""
        flat = np.empty(self.count, dtype=self.dtype)
        raw = flat.view(np.uint8).reshape(-1) if self.nbytes else np.empty(0, dtype=np.uint8)
        return flat, raw


def _is_stored(info: Any) -> bool:  # (a zipfile.ZipInfo or a zipstamp.Member)
    # NOTE: flag bit 0 is encryption, 0x20 compressed patched data: both left to zipfile.
    return info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x21 and info.compress_size == info.file_size


def _crc_error(key: str, path: Path) -> RunFormatError:
    return RunFormatError(f"unreadable (truncated or corrupt): bad CRC-32 of array {key!r}", path)


class ReadBuffers:
    """Memory reused from one prediction file to the next of a pass over a run.

    Reading hundreds of checkpoints into fresh arrays spends more time in page faults
    (each array lands on new zeroed pages) than in reading. A pass that reads one file at
    a time gives :func:`read_npz` one of these, and then:

    - the arrays named in ``volatile`` (``output``) are read into a buffer that the next
      read overwrites: they are valid until then, and whatever is kept longer must be
      copied;
    - every other array (``target``, ``id``, ``input_hash``) is compared with the one last
      returned under its name; when its bytes (and .npy header and CRC-32) are the same,
      that earlier array is returned again, read-only, so that every checkpoint of a run
      shares one copy of its targets. Equal bytes under the same recorded CRC-32 as an
      array already verified are the CRC check for that member.
    """

    def __init__(self, volatile: tuple[str, ...] = ("output",)) -> None:
        self.volatile = frozenset(volatile)
        self._buffers: dict[str, np.ndarray] = {}
        self._scratch = np.empty(0, dtype=np.uint8)
        #: name -> (.npy header bytes, CRC-32, its bytes, the read-only array) of the last array kept
        self._known: dict[str, tuple[bytes, int, np.ndarray, np.ndarray]] = {}

    def _buffer(self, key: str, nbytes: int) -> np.ndarray:
        buf = self._buffers.get(key)
        if buf is None or buf.nbytes < nbytes:
            # NOTE: float64-typed storage keeps every dtype's view aligned.
            buf = np.empty((nbytes + 7) // 8, dtype=np.float64).view(np.uint8)
            self._buffers[key] = buf
        return buf[:nbytes]

    def _scratch_of(self, nbytes: int) -> np.ndarray:
        if self._scratch.nbytes < nbytes:
            self._scratch = np.empty((nbytes + 7) // 8, dtype=np.float64).view(np.uint8)
        return self._scratch[:nbytes]

    def read(self, src: _Window, info: zipfile.ZipInfo, member: _Stored, key: str, path: Path) -> np.ndarray:
        """One stored member's array, through the buffers."""
        if key in self.volatile and member.nbytes:
            raw = self._buffer(key, member.nbytes)
            _read_raw(src, member, raw, info, key, path)
            return member.shaped(raw.view(member.dtype))
        if key in self.volatile or not member.nbytes:
            return _read_stored(src, info, member, key, path)
        raw = self._scratch_of(member.nbytes)
        if src.readinto(raw.data, member.offset) != member.nbytes:
            raise RunFormatError(f"array {key!r} ends early (truncated or corrupt)", path)
        known = self._known.get(key)
        if known is not None and known[0] == member.header and known[2].nbytes == member.nbytes:
            same = _same_bytes(raw, known[2])
            if same and known[1] == info.CRC:
                return known[3]
            if same:
                raise _crc_error(key, path)
        if crc32(raw.data, crc32(member.header)) != info.CRC:
            raise _crc_error(key, path)
        flat, mine = member.new_flat()
        mine[...] = raw
        flat.flags.writeable = False
        arr = member.shaped(flat)
        self._known[key] = (member.header, info.CRC, mine, arr)
        return arr


def _same_bytes(raw: np.ndarray, theirs: np.ndarray) -> bool:
    """Whether two byte arrays (aligned, as :class:`ReadBuffers` allocates them) are equal."""
    wide = np.uint64 if raw.nbytes % 8 == 0 else np.uint8
    return bool(np.array_equal(raw.view(wide), theirs.view(wide)))


def _read_raw(src: _Window, member: _Stored, raw: np.ndarray, info: zipfile.ZipInfo, key: str, path: Path) -> None:
    """Read a stored member's data into ``raw`` (bytes) and check its CRC-32."""
    if src.readinto(raw.data, member.offset) != member.nbytes:
        raise RunFormatError(f"array {key!r} ends early (truncated or corrupt)", path)
    if crc32(raw.data, crc32(member.header)) != info.CRC:
        raise _crc_error(key, path)


def _read_stored(src: _Window, info: zipfile.ZipInfo, member: _Stored, key: str, path: Path) -> np.ndarray:
    """One stored member's array, read straight into a new array."""
    flat, raw = member.new_flat()
    _read_raw(src, member, raw, info, key, path)
    return member.shaped(flat)


def _read_members(
    listed: Sequence[Any],
    zf: zipfile.ZipFile | None,
    src: _Window,
    size: int,
    path: Path,
    required: tuple[str, ...],
    optional: tuple[str, ...],
    matching: Callable[[str], bool] | None,
    reuse: ReadBuffers | None,
    limit: int,
) -> dict[str, np.ndarray]:
    """:func:`read_npz`'s arrays from the archive's members ``listed`` (zipfile's, or
    :func:`~ckptaudit.store.zipstamp.central_directory`'s, every one stored: ``zf`` None)."""
    members = {i.filename[: -len(".npy")]: i for i in listed if i.filename.endswith(".npy")}
    missing = [k for k in required if k not in members]
    if missing:
        raise RunFormatError(f"missing array {', '.join(sorted(missing))}", path)
    if matching is not None:
        optional = (*optional, *sorted(k for k in members if matching(k) and k not in optional))
    wanted = [(k, members[k]) for k in (*required, *optional) if k in members]
    total = sum(info.file_size for _, info in wanted)
    if total > limit:
        raise RunFormatError(
            f"its arrays would inflate to {total:,} bytes from {os.path.getsize(path):,} on disk, more than "
            f"the limit of {limit:,} (a zip bomb?); set {MAX_NPZ_ENV} to raise the limit",
            path,
        )
    out: dict[str, np.ndarray] = {}
    for key, info in wanted:
        if not _is_stored(info):
            assert zf is not None  # (a compressed member is listed by zipfile only)
            out[key] = _read_member(zf, info, key, path)
            continue
        member = _Stored(src, size, info, key, path)
        if reuse is not None:
            out[key] = reuse.read(src, info, member, key, path)
        else:
            out[key] = _read_stored(src, info, member, key, path)
    return out


def read_npz(
    path: Path,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    reuse: ReadBuffers | None = None,
    matching: Callable[[str], bool] | None = None,
) -> dict[str, np.ndarray]:
    """The named arrays of a ``numpy.savez`` archive, read without pickle.

    Sizes are checked before inflating: the members' uncompressed sizes (from the zip's
    central directory) must add up to at most :func:`max_npz_bytes`, and each ``.npy``
    header must describe exactly its member's bytes. Raises :class:`RunFormatError`.

    Stored (uncompressed) members, which ``numpy.savez`` writes, are read directly: the
    local header and ``.npy`` header with one small read, then the data straight into its
    array, and the CRC-32 of the member (header and data) is checked against the central
    directory as zipfile would. Compressed members go through zipfile. With ``reuse`` (a
    :class:`ReadBuffers`), buffers are reused as it describes. ``matching`` adds every
    member whose name it accepts to ``optional`` (the group columns, whose names vary).
    """
    limit = max_npz_bytes()
    try:
        fd, st = _open_regular_fd(path, RunFormatError)
        try:
            size = st.st_size
            # NOTE: the usual archive's directory from one read of its end (of all of it, when
            # small), straight from the descriptor; anything else, or a compressed member,
            # through zipfile on a file object of it (issue 21: 28 -> 8 us a file)
            tail = _WHOLE_FILE if size <= _WHOLE_FILE else _TAIL
            src = _Window(fd, os.pread(fd, min(size, tail), max(size - tail, 0)), max(size - tail, 0))
            listed = parse_central(src.data, size)
            if listed is not None and all(_is_stored(i) for i in listed):
                return _read_members(listed, None, src, size, path, required, optional, matching, reuse, limit)
            with os.fdopen(fd, "rb", closefd=False) as fh, zipfile.ZipFile(fh) as zf:
                return _read_members(zf.infolist(), zf, src, size, path, required, optional, matching, reuse, limit)
        finally:
            os.close(fd)
    except CkptauditError:
        raise
    except FileNotFoundError:
        raise RunFormatError(f"no {path.name}", path.parent) from None
    except zipfile.BadZipFile as exc:
        raise RunFormatError(f"unreadable (truncated or corrupt): not a numpy .npz archive ({exc})", path) from None
    except Exception as exc:  # EOFError, OSError, zlib.error, ValueError from a bad header, ...
        raise RunFormatError(f"unreadable (truncated or corrupt): {type(exc).__name__}: {exc}", path) from None


def npy_layout(fd: int) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Shape, Fortran order, dtype and data offset of the ``.npy`` file open as ``fd``
    (headers parsed once per distinct header, as in :func:`read_npz`); ValueError when
    it is not one."""
    head = os.pread(fd, _HEAD_GUESS, 0)
    if head[:6] != b"\x93NUMPY" or len(head) < 10:
        raise ValueError("not a .npy file")
    if head[6:8] == b"\x01\x00":
        hlen = 10 + int.from_bytes(head[8:10], "little")
    elif head[6:8] == b"\x02\x00" and len(head) >= 12:
        hlen = 12 + int.from_bytes(head[8:12], "little")
    else:
        raise ValueError(f"unsupported .npy format version {head[6]}.{head[7]}")
    prefix = head[:hlen] if len(head) >= hlen else os.pread(fd, hlen, 0)
    if len(prefix) < hlen:
        raise ValueError("the .npy header ends early")
    shape, fortran, dtype = _npy_header(prefix)
    if dtype.hasobject or any(d < 0 for d in shape):
        raise ValueError("not an array of plain values")
    return shape, fortran, dtype, hlen


def read_npy(path: Path) -> np.ndarray:
    """A ``.npy`` file's array (a regular file, no pickle); ValueError when it is not one
    whose size matches its header."""
    try:
        with open_regular(path) as fh:
            fd = fh.fileno()
            shape, fortran, dtype, offset = npy_layout(fd)
            flat = np.empty(math.prod(shape), dtype=dtype)
            raw = flat.view(np.uint8).reshape(-1) if flat.nbytes else np.empty(0, dtype=np.uint8)
            if offset + raw.nbytes != os.fstat(fd).st_size or _pread_exact(fd, raw.data, offset) != raw.nbytes:
                raise ValueError(f"{path.name} does not hold the array its header declares")
    except CkptauditError as exc:
        raise ValueError(str(exc)) from None
    return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
