"""Shared fixtures: the real training runs in fixtures/runs and writable copies of them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# NOTE: the tests compare predicted outputs with the recorded ones bit for bit; on a GPU
# `predict --device auto` would use CUDA, whose float32 differs by up to ~4e-7 (measured on an
# H200, docs/inference.md). Hidden before torch is imported, unless asked for.
if not os.environ.get("CKPTAUDIT_TEST_GPU"):
    os.environ["CUDA_VISIBLE_DEVICES"] = ""

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "fixtures" / "runs"


@pytest.fixture(scope="session")
def runs_dir() -> Path:
    """The shipped fixture runs (read-only by convention: copy before changing)."""
    assert RUNS.is_dir(), "fixtures/runs is missing: run python scripts/make_fixtures.py"
    return RUNS


@pytest.fixture
def copy_run(tmp_path: Path):
    """Copy a fixture run into tmp_path and return the copy's path."""

    def _copy(name: str, dest_name: str | None = None) -> Path:
        dest = tmp_path / (dest_name or name)
        shutil.copytree(RUNS / name, dest, symlinks=True)
        return dest

    return _copy


def _tree_state(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.fixture(autouse=True)
def _shipped_fixtures_stay_untouched():
    """Fail the test that writes into the shipped fixtures (a pin, a cache, a journal...):
    tests must work on copies (``copy_run``), or the next run compares against altered data."""
    before = _tree_state(RUNS)
    yield
    after = _tree_state(RUNS)
    if after != before:
        changed = sorted(set(after.items()) ^ set(before.items()))
        pytest.fail(f"the test changed the shipped fixtures/runs: {changed[:5]}")


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API server (moto's server mode) in a child process on localhost, shared by
    the session; tests create their own bucket with ``tests.s3server.make_bucket``."""
    pytest.importorskip("moto.server", reason="moto[server] is in the dev extra")
    from s3server import start_moto

    server = start_moto()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """Point every S3 client of this test (s3fs, boto3, a ckptaudit child process) at the
    test server through the usual AWS_* variables, and return the endpoint."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return s3_server.endpoint
