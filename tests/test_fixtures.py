"""The shipped fixtures are what scripts/make_fixtures.py produces: nothing is hand-edited."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_fixture_script_reproduces_the_shipped_runs(tmp_path, runs_dir):
    out = tmp_path / "runs"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_fixtures.py"), "--out", str(out)], check=True, capture_output=True
    )
    shipped = sorted(p.relative_to(runs_dir) for p in runs_dir.rglob("*") if p.is_file())
    made = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert shipped == made
    for rel in shipped:
        if rel.suffix == ".npz":
            with np.load(runs_dir / rel) as a, np.load(out / rel) as b:
                assert a.files == b.files
                for key in a.files:
                    if key == "output":
                        # training is seeded and single-threaded; allow for another BLAS
                        np.testing.assert_allclose(a[key], b[key], rtol=1e-3, atol=1e-3)
                    else:
                        np.testing.assert_array_equal(a[key], b[key])
        elif rel.suffix == ".json" and rel.name == "run.json":
            assert (runs_dir / rel).read_text() == (out / rel).read_text()


def test_fixtures_stay_small(runs_dir):
    total = sum(p.stat().st_size for p in runs_dir.rglob("*") if p.is_file())
    assert total < 5_000_000
