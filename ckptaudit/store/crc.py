"""CRC-32 of the prediction archives' members: the fastest implementation available.

Every stored member's CRC-32 is checked when it is read (a corrupt file is refused, never
scored), so on wide outputs (50,000 rows x 1,000 float32 logits: 200 MB a checkpoint) the
checksum is a large share of ``rank``'s time: zlib's took 44% of a checkpoint's 63 ms
(issue 21). ISA-L (the optional ``isal`` package, extra ``ckptaudit[fast]``) computes the
same CRC-32 with carry-less multiplication, ~6x faster (200 MB: 8 ms against 50 ms on this
machine); without it zlib's is used. Both give the same value for the same bytes (the
zip format's CRC-32, ISO-HDLC), so nothing else changes.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any


def _fastest() -> tuple[Callable[[Any, int], int], str]:
    """ISA-L's crc32 when the optional package imports and agrees with zlib, else zlib's."""
    try:
        from isal import isal_zlib  # optional: ckptaudit[fast]
    except Exception:  # not installed, or a broken build: zlib is always there
        return zlib.crc32, "zlib"
    probe = b"ckptaudit crc-32 probe \x00\xff" * 3
    # NOTE: checked once, on a few bytes: a build that disagreed would refuse every file
    if isal_zlib.crc32(probe, 12345) != zlib.crc32(probe, 12345):
        return zlib.crc32, "zlib"
    return isal_zlib.crc32, "isal"


_CRC32, IMPLEMENTATION = _fastest()


def crc32(data: Any, value: int = 0) -> int:
    """CRC-32 of ``data`` (a bytes-like object) continuing from ``value``, as zlib.crc32."""
    return _CRC32(data, value)
