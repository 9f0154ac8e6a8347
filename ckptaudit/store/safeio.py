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

import io
import json
import math
import os
import stat
import struct
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import CkptauditError, RunFormatError, UsageError
from ..limits import MAX_JSON_ENV, max_json_bytes

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


def read_small(path: str | Path, error: type[CkptauditError] = RunFormatError) -> bytes:
    """The bytes of a regular file of at most ``CKPTAUDIT_MAX_JSON_BYTES`` (64 MiB by
    default): a larger one (a sparse ``meta.json`` of gigabytes) is ``error`` from its size
    alone, before anything is read, and never more than the limit is read (a file that
    grows meanwhile). ``FileNotFoundError`` passes through."""
    limit = max_json_bytes()
    try:
        with open_regular(path, error) as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > limit:
                raise error(_too_big(size, limit), path)
            data = fh.read(limit + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror or exc}", path) from None
    if len(data) > limit:
        raise error(_too_big(len(data), limit), path)
    return data


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

    def __init__(self, fd: int, size: int, info: zipfile.ZipInfo, key: str, path: Path) -> None:
        name = info.filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
        head = os.pread(fd, _HEAD_GUESS + len(name), info.header_offset)
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
            prefix = os.pread(fd, hlen, start)
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


def _is_stored(info: zipfile.ZipInfo) -> bool:
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

    def read(self, fd: int, info: zipfile.ZipInfo, member: _Stored, key: str, path: Path) -> np.ndarray:
        """One stored member's array, through the buffers."""
        if key in self.volatile and member.nbytes:
            raw = self._buffer(key, member.nbytes)
            _read_raw(fd, member, raw, info, key, path)
            return member.shaped(raw.view(member.dtype))
        if key in self.volatile or not member.nbytes:
            return _read_stored(fd, info, member, key, path)
        raw = self._scratch_of(member.nbytes)
        if _pread_exact(fd, raw.data, member.offset) != member.nbytes:
            raise RunFormatError(f"array {key!r} ends early (truncated or corrupt)", path)
        known = self._known.get(key)
        if known is not None and known[0] == member.header and known[2].nbytes == member.nbytes:
            same = _same_bytes(raw, known[2])
            if same and known[1] == info.CRC:
                return known[3]
            if same:
                raise _crc_error(key, path)
        if zlib.crc32(raw.data, zlib.crc32(member.header)) != info.CRC:
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


def _read_raw(fd: int, member: _Stored, raw: np.ndarray, info: zipfile.ZipInfo, key: str, path: Path) -> None:
    """Read a stored member's data into ``raw`` (bytes) and check its CRC-32."""
    if _pread_exact(fd, raw.data, member.offset) != member.nbytes:
        raise RunFormatError(f"array {key!r} ends early (truncated or corrupt)", path)
    if zlib.crc32(raw.data, zlib.crc32(member.header)) != info.CRC:
        raise _crc_error(key, path)


def _read_stored(fd: int, info: zipfile.ZipInfo, member: _Stored, key: str, path: Path) -> np.ndarray:
    """One stored member's array, read straight into a new array."""
    flat, raw = member.new_flat()
    _read_raw(fd, member, raw, info, key, path)
    return member.shaped(flat)


def read_npz(
    path: Path, required: tuple[str, ...], optional: tuple[str, ...] = (), reuse: ReadBuffers | None = None
) -> dict[str, np.ndarray]:
    """The named arrays of a ``numpy.savez`` archive, read without pickle.

    Sizes are checked before inflating: the members' uncompressed sizes (from the zip's
    central directory) must add up to at most :func:`max_npz_bytes`, and each ``.npy``
    header must describe exactly its member's bytes. Raises :class:`RunFormatError`.

    Stored (uncompressed) members, which ``numpy.savez`` writes, are read directly: the
    local header and ``.npy`` header with one small read, then the data straight into its
    array, and the CRC-32 of the member (header and data) is checked against the central
    directory as zipfile would. Compressed members go through zipfile. With ``reuse`` (a
    :class:`ReadBuffers`), buffers are reused as it describes.
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
            fd = fh.fileno()
            size = os.fstat(fd).st_size
            out: dict[str, np.ndarray] = {}
            for key, info in wanted:
                if not _is_stored(info):
                    out[key] = _read_member(zf, info, key, path)
                    continue
                member = _Stored(fd, size, info, key, path)
                if reuse is not None:
                    out[key] = reuse.read(fd, info, member, key, path)
                else:
                    out[key] = _read_stored(fd, info, member, key, path)
            return out
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


_EOCD = struct.Struct("<4s4H2LH")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
#: how much of a file's end is read at once to find its central directory
_TAIL = 4096


def _quick_fingerprint(path: Path) -> list[list[Any]] | None:
    """:func:`zip_fingerprint` of the usual archive (no comment, no zip64 fields, its
    central directory in the last 4 KiB) from one read of its end; None for anything
    else, which zipfile then reads."""
    with open_regular(path) as fh:
        fd = fh.fileno()
        size = os.fstat(fd).st_size
        tail = os.pread(fd, min(size, _TAIL), max(size - _TAIL, 0))
    if len(tail) < _EOCD.size:
        return None
    sig, disk, cd_disk, count, total, cd_size, cd_offset, comment = _EOCD.unpack_from(tail, len(tail) - _EOCD.size)
    if sig != b"PK\x05\x06" or comment or disk or cd_disk or count != total or cd_offset == 0xFFFFFFFF or count == 0xFFFF:
        return None
    start = len(tail) - _EOCD.size - cd_size
    if start < 0 or cd_offset + cd_size + _EOCD.size != size:
        return None
    out: list[list[Any]] = []
    pos = start
    for _ in range(count):
        if pos + _CENTRAL.size > len(tail):
            return None
        fields = _CENTRAL.unpack_from(tail, pos)
        if fields[0] != b"PK\x01\x02":
            return None
        flags, crc, file_size = fields[3], fields[7], fields[9]
        name_len, extra_len, comment_len = fields[10], fields[11], fields[12]
        if file_size == 0xFFFFFFFF or fields[8] == 0xFFFFFFFF or fields[-1] == 0xFFFFFFFF:
            return None  # NOTE: zip64 sizes or offsets: zipfile reads them
        raw = tail[pos + _CENTRAL.size : pos + _CENTRAL.size + name_len]
        name = raw.decode("utf-8" if flags & 0x800 else "cp437")
        if os.sep != "/" or "\x00" in name:
            return None
        out.append([name, crc, file_size])
        pos += _CENTRAL.size + name_len + extra_len + comment_len
    return out if pos == len(tail) - _EOCD.size else None


def zip_fingerprint(path: Path) -> list[list[Any]] | None:
    """(member name, CRC-32, size) of every member of a zip, read from its central
    directory only (a few hundred bytes); None when the file cannot be read as a zip."""
    try:
        quick = _quick_fingerprint(path)
        if quick is not None:
            return quick
    except Exception:  # anything unusual is left to zipfile below
        pass
    try:
        with open_regular(path) as fh, zipfile.ZipFile(fh) as zf:
            return [[i.filename, i.CRC, i.file_size] for i in zf.infolist()]
    except Exception:  # anything unreadable simply has no fingerprint: no cache is used
        return None


# --------------------------------------------------------------------------- writing


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: an exclusive temporary (``mkstemp``: a fresh,
    unpredictable name created with ``O_EXCL``, never through a link) in the target folder,
    fsynced, renamed over ``path``. An existing ``path`` that is not a regular file (a
    device such as ``/dev/full``, a FIFO, a folder or a symbolic link) is refused, never
    replaced or written through; a missing folder is named."""
    import tempfile

    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise UsageError(
            f"is {_kind(st.st_mode) if not stat.S_ISLNK(st.st_mode) else 'a symbolic link'}, not a regular file: "
            "ckptaudit writes only regular files; remove it or choose another path",
            path,
        )
    if not folder.is_dir():
        raise UsageError("no such directory", folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise UsageError(f"cannot write into this folder: {exc.strerror or exc}", folder) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def copy_regular_tree(src: str | Path, dst: str | Path) -> None:
    """Copy the folder ``src`` to the new folder ``dst``: folders, symbolic links (as
    links, never followed) and regular files only. A device, FIFO or socket inside (a
    character device restored by ``tar x`` as root reads without end) is refused with
    :class:`UsageError` before a byte of it is read."""
    src, dst = Path(src), Path(dst)
    os.mkdir(dst, 0o755)
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        source, target = src / entry.name, dst / entry.name
        st = os.lstat(source)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(source), target)
        elif stat.S_ISDIR(st.st_mode):
            copy_regular_tree(source, target)
        elif stat.S_ISREG(st.st_mode):
            rfd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                if not stat.S_ISREG(os.fstat(rfd).st_mode):  # swapped since the lstat
                    raise UsageError("is not a regular file; only regular files are copied", source)
                wfd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
                try:
                    while block := os.read(rfd, 1 << 20):
                        view = memoryview(block)
                        while view:
                            view = view[os.write(wfd, view) :]
                    os.fsync(wfd)
                finally:
                    os.close(wfd)
                os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(rfd)
        else:
            raise UsageError(f"is {_kind(st.st_mode)}, not a regular file: only regular files are copied", source)
