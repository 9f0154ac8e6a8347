"""`prune` reads the run's own small files bounded and regular-only: the pins file, every
provenance file and the prune journal. A FIFO (which would block a read forever) or a
sparse file of gigabytes (which would exhaust memory) in their place ends the command at
once with exit 2 and one line naming the file, never a hang or an internal error; the
run is left untouched. Each case runs in a capped child process (tests/capped.py)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from ckptaudit.picking import PROVENANCE_SUFFIX
from ckptaudit.store.pins import PINS_FILE
from ckptaudit.store.prunefs import LOG_FILE, TRASH_DIR
from tests.capped import assert_one_error_line, run_capped

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "fixtures" / "runs"

#: the file under test, relative to the run, and what the error line must name
FILES = {
    "pins": PINS_FILE,
    "provenance": f"best{PROVENANCE_SUFFIX}",
    "journal": LOG_FILE,
}


def _make(path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    else:
        with open(path, "wb") as fh:
            fh.truncate(3 << 30)  # sparse: 3 GB of NUL bytes, no line end


def _digest(root: Path) -> dict[str, str]:
    """Every regular file's content hash and every folder, by path (FIFOs and sparse files by name only)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_dir():
            out[rel] = "dir"
        elif p.is_file() and p.stat().st_size < 1 << 20:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "special-or-large"
    return out


@pytest.mark.parametrize("kind", ["fifo", "sparse"])
@pytest.mark.parametrize("which", sorted(FILES))
def test_prune_refuses_a_fifo_or_a_sparse_giant_in_place_of_its_small_files(which: str, kind: str, tmp_path: Path) -> None:
    run = tmp_path / "fraud"
    shutil.copytree(RUNS / "fraud", run)
    if which == "journal":
        # NOTE: the journal is read to finish an interrupted prune: something must wait in the trash
        (run / "checkpoints" / TRASH_DIR / "epoch-0000").mkdir(parents=True)
    name = FILES[which]
    _make(run / name, kind)
    before = _digest(run)
    result = run_capped(["prune", str(run), "-m", "recall", "--keep", "2", "--yes"], cwd=tmp_path, seconds=60)
    line = assert_one_error_line(result, name)
    if kind == "fifo" and which != "pins":
        assert "FIFO" in line, line
    if kind == "sparse":
        assert "3,221,225,472 bytes" in line, line
    assert _digest(run) == before, "a refused prune changed the run"
