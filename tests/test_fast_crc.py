"""The CRC-32 of the prediction files' integrity check (ckptaudit.store.crc): the optional
ISA-L implementation gives zlib's values, and zlib's is used when it is missing or broken."""

from __future__ import annotations

import importlib
import sys
import zlib

import numpy as np
import pytest

from ckptaudit.store import crc


def test_crc32_is_zlibs_on_every_size_and_start_value() -> None:
    rng = np.random.default_rng(0)
    for size in (0, 1, 7, 64, 4095, 1 << 20):
        data = rng.bytes(size)
        for start in (0, 1, 0xFFFFFFFF, zlib.crc32(b"header")):
            assert crc.crc32(data, start) == zlib.crc32(data, start), (size, start)
        assert crc.crc32(memoryview(data)) == zlib.crc32(data)


def test_isal_is_used_when_installed_and_agrees() -> None:
    isal = pytest.importorskip("isal.isal_zlib")
    assert crc.IMPLEMENTATION == "isal"
    assert crc._CRC32 is isal.crc32


@pytest.mark.parametrize("broken", ["missing", "disagrees"])
def test_zlib_when_isal_is_missing_or_disagrees(monkeypatch: pytest.MonkeyPatch, broken: str) -> None:
    import types

    if broken == "missing":
        monkeypatch.setitem(sys.modules, "isal", None)  # import fails
    else:
        fake = types.ModuleType("isal")
        fake.isal_zlib = types.SimpleNamespace(crc32=lambda data, value=0: 0)  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "isal", fake)
        monkeypatch.setitem(sys.modules, "isal.isal_zlib", fake.isal_zlib)
    try:
        fresh = importlib.reload(crc)
        assert fresh.IMPLEMENTATION == "zlib" and fresh._CRC32 is zlib.crc32
        assert fresh.crc32(b"abc") == zlib.crc32(b"abc")
    finally:
        monkeypatch.undo()
        importlib.reload(crc)


def test_a_corrupt_member_is_still_refused(tmp_path) -> None:
    """The integrity check goes through the module: one flipped byte of a stored array is
    found (whichever implementation is in use)."""
    from ckptaudit.errors import RunFormatError
    from ckptaudit.store.npzread import read_npz

    path = tmp_path / "val.npz"
    np.savez(path, target=np.arange(1000, dtype=np.int64), output=np.linspace(0, 1, 1000, dtype=np.float32))
    raw = bytearray(path.read_bytes())
    at = raw.index(np.linspace(0, 1, 1000, dtype=np.float32)[500:502].tobytes())
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(RunFormatError, match="bad CRC-32"):
        read_npz(path, ("target", "output"))
