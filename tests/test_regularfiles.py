"""The small-file reader (ckptaudit.store.regularfiles): it reads what the size stat gave
plus one byte, and more only when the file grew, never past the limit (issue 21: a read of
the limit itself made a 64 MiB buffer for every meta.json)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ckptaudit.errors import RunFormatError
from ckptaudit.store import regularfiles


def _read(path: Path, size: int, most: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return regularfiles._read_up_to(fd, size, most)
    finally:
        os.close(fd)


@pytest.mark.parametrize("size", [0, 1, 99, 100, 150])  # what fstat said; the file holds 100 bytes
def test_a_file_is_read_whole_whatever_its_stat_said(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f"
    body = bytes(range(100))
    path.write_bytes(body)
    assert _read(path, size, 10**6) == body


def test_a_file_that_grew_is_read_up_to_the_limit_and_no_further(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * (3 << 20))  # three of the reader's 1 MiB steps
    assert len(_read(path, 10, (2 << 20) + 1)) == (2 << 20) + 1
    assert len(_read(path, 10, 51)) == 51


def test_read_small_and_read_json_keep_their_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "meta.json"
    path.write_text('{"epoch": 3, "logged": {"val_loss": 0.25}}')
    size = path.stat().st_size
    assert regularfiles.read_json(path) == {"epoch": 3, "logged": {"val_loss": 0.25}}
    monkeypatch.setenv("CKPTAUDIT_MAX_JSON_BYTES", str(size))
    assert regularfiles.read_small(path) == path.read_bytes()
    monkeypatch.setenv("CKPTAUDIT_MAX_JSON_BYTES", str(size - 1))
    with pytest.raises(RunFormatError, match="CKPTAUDIT_MAX_JSON_BYTES"):
        regularfiles.read_small(path)


def test_read_small_refuses_a_folder_and_passes_a_missing_file_through(tmp_path: Path) -> None:
    with pytest.raises(RunFormatError, match="a folder"):
        regularfiles.read_small(tmp_path)
    with pytest.raises(FileNotFoundError):
        regularfiles.read_small(tmp_path / "missing.json")
