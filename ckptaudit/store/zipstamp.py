"""A cheap fingerprint of a zip archive from its central directory (for the cache).

This module owns :func:`zip_fingerprint`: the name, size and CRC of every member, read from
the archive's end in one read for the usual layout and through zipfile otherwise, so the
cache can tell a changed prediction file without reading its arrays.
"""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

from .regularfiles import open_regular

_EOCD = struct.Struct("<4s4H2LH")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
#: the newest zip version zipfile extracts (it refuses a member that needs a later one)
_MAX_EXTRACT = getattr(zipfile, "MAX_EXTRACT_VERSION", 63)
#: how much of a file's end is read at once to find its central directory
_TAIL = 4096


class Member(NamedTuple):
    """One member of a zip as its central directory lists it (the fields of
    :class:`zipfile.ZipInfo` that the readers use, by the same names)."""

    filename: str
    flag_bits: int
    compress_type: int
    compress_size: int
    file_size: int
    CRC: int
    header_offset: int


def central_directory(fd: int, size: int) -> list[Member] | None:
    """Every member of the usual archive (no comment, nothing before it, no zip64 field,
    no extra field, its central directory in the last 4 KiB of its ``size`` bytes) from one
    read of its end, in the directory's order; None for anything else, which zipfile then
    reads (and words any problem of), so that both give the same members wherever this
    one answers. numpy.savez writes the usual archive: 8 against 28 us a file through
    zipfile (issue 21)."""
    return parse_central(os.pread(fd, min(size, _TAIL), max(size - _TAIL, 0)), size)


def parse_central(tail: bytes, size: int) -> list[Member] | None:
    """:func:`central_directory` from the last bytes of the archive, ``tail`` (at least its
    last 4 KiB, or all of it), of a file of ``size`` bytes."""
    if len(tail) < _EOCD.size:
        return None
    sig, disk, cd_disk, count, total, cd_size, cd_offset, comment = _EOCD.unpack_from(tail, len(tail) - _EOCD.size)
    if sig != b"PK\x05\x06" or comment or disk or cd_disk or count != total or cd_offset == 0xFFFFFFFF or count == 0xFFFF:
        return None
    start = len(tail) - _EOCD.size - cd_size
    if start < 0 or cd_offset + cd_size + _EOCD.size != size:
        return None
    out: list[Member] = []
    pos = start
    for _ in range(count):
        if pos + _CENTRAL.size > len(tail):
            return None
        fields = _CENTRAL.unpack_from(tail, pos)
        if fields[0] != b"PK\x01\x02" or fields[2] & 0xFF > _MAX_EXTRACT:
            return None  # (zipfile refuses a version it cannot extract: left to it to say so)
        flags, crc, compress_size, file_size = fields[3], fields[7], fields[8], fields[9]
        name_len, extra_len, comment_len, offset = fields[10], fields[11], fields[12], fields[16]
        if 0xFFFFFFFF in (file_size, compress_size, offset) or extra_len:
            return None  # NOTE: zip64 sizes or offsets, or any extra field: zipfile reads them
        raw = tail[pos + _CENTRAL.size : pos + _CENTRAL.size + name_len]
        name = raw.decode("utf-8" if flags & 0x800 else "cp437")
        if os.sep != "/" or "\x00" in name:
            return None
        out.append(Member(name, flags, fields[4], compress_size, file_size, crc, offset))
        pos += _CENTRAL.size + name_len + extra_len + comment_len
    return out if pos == len(tail) - _EOCD.size else None


def _quick_fingerprint(path: Path) -> list[list[Any]] | None:
    """:func:`zip_fingerprint` of the usual archive (:func:`central_directory`); None for
    anything else, which zipfile then reads."""
    with open_regular(path) as fh:
        fd = fh.fileno()
        members = central_directory(fd, os.fstat(fd).st_size)
    return None if members is None else [[m.filename, m.CRC, m.file_size] for m in members]


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
