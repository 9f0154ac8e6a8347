"""Shared fixtures: the real training runs in fixtures/runs and writable copies of them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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
