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
from typing import Any

from .regularfiles import open_regular

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
