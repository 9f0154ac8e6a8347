"""Warm `rank --cache` checks the files by stat where that is safe (issue 21): the members'
CRC-32s are read from each central directory only for files whose times are close to the
cache's build (a rewrite within one timestamp tick could keep their stat)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ckptaudit.cli import app
from ckptaudit.store import cache
from ckptaudit.store.cache import CACHE_DIR, open_cache
from ckptaudit.store.reader import read_run

runner = CliRunner()


def _built(copy_run):
    run = copy_run("fraud")
    result = runner.invoke(app, ["rank", str(run), "-m", "accuracy", "--format", "json", "--cache"])
    assert result.exit_code == 0 and (run / CACHE_DIR / "index.json").is_file()
    return run


def _count_fingerprints(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = cache.fingerprint

    def counted(run):
        calls.append(1)
        return real(run)

    monkeypatch.setattr(cache, "fingerprint", counted)
    return calls


def _corrupt_recorded_crcs(run) -> None:
    """The index's CRCs made wrong, the stats left as they are: only a CRC check sees it."""
    path = run / CACHE_DIR / "index.json"
    index = json.loads(path.read_text())
    for entry in index["checkpoints"]:
        entry[5] = [[name, (crc + 1) % 2**32, size] for name, crc, size in entry[5]]
    path.write_text(json.dumps(index))


def test_files_older_than_the_index_are_checked_by_stat_alone(copy_run, monkeypatch):
    run = _built(copy_run)
    monkeypatch.setattr(cache, "RACY_NS", 0)  # as if every file were old
    calls = _count_fingerprints(monkeypatch)
    assert open_cache(read_run(run)) is not None
    assert calls == []  # no central directory read


def test_racy_files_have_their_crcs_compared(copy_run, monkeypatch):
    run = _built(copy_run)  # files written just now: within RACY_NS of the index
    calls = _count_fingerprints(monkeypatch)
    assert open_cache(read_run(run)) is not None
    assert calls == [1]
    _corrupt_recorded_crcs(run)
    assert open_cache(read_run(run)) is None  # the CRCs differ: not served
    monkeypatch.setattr(cache, "RACY_NS", 0)
    # NOTE: rewriting index.json made the files older than it; now stat alone decides
    assert open_cache(read_run(run)) is not None


def test_a_changed_stat_is_never_served(copy_run, monkeypatch):
    run = _built(copy_run)
    monkeypatch.setattr(cache, "RACY_NS", 0)
    path = run / "checkpoints" / "epoch-0004" / "val.npz"
    path.write_bytes(path.read_bytes())  # same bytes, same size: a new change time
    assert open_cache(read_run(run)) is None
    removed = run / "checkpoints" / "epoch-0003" / "val.npz"
    removed.unlink()
    assert open_cache(read_run(run)) is None
