"""`rank --cache` never serves what a plain `rank` would refuse (issue 18, item 11): bit rot
that keeps a file's size and mtime, a changed run.json, a tampered cache file."""

from __future__ import annotations

import json
import os

from typer.testing import CliRunner

from ckptaudit.cli import app
from ckptaudit.store.cache import CACHE_DIR, open_cache
from ckptaudit.store.reader import read_run

runner = CliRunner()


def rank(run, *extra):
    return runner.invoke(app, ["rank", str(run), "-m", "accuracy", "--format", "json", *extra])


def test_bit_rot_that_keeps_size_and_mtime_is_not_served_from_the_cache(copy_run):
    run = copy_run("fraud")
    assert rank(run, "--cache").exit_code == 0 and open_cache(read_run(run)) is not None
    path = run / "checkpoints" / "epoch-0004" / "val.npz"
    st = os.stat(path)
    data = bytearray(path.read_bytes())
    data[7388 + 30 + 10 + 128 + 40] ^= 0x40  # one bit inside output.npy's stored data
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime
    plain = rank(run)
    assert plain.exit_code == 2 and "CRC" in plain.output.upper()
    cached = rank(run, "--cache")
    assert cached.exit_code == 2 and cached.stdout == plain.stdout


def test_a_changed_run_json_output_kind_is_checked_as_without_the_cache(copy_run):
    run = copy_run("fraud")
    good = rank(run, "--cache")
    assert good.exit_code == 0 and open_cache(read_run(run)) is not None
    meta = json.loads((run / "run.json").read_text())
    meta["output"] = "probability"  # the stored logits are not probabilities
    (run / "run.json").write_text(json.dumps(meta))
    plain = rank(run)
    assert plain.exit_code == 2 and "probability" in plain.output
    cached = rank(run, "--cache")
    assert cached.exit_code == 2 and cached.stdout == plain.stdout


def test_a_tampered_cache_file_fails_the_readers_checks_and_is_not_used(copy_run):
    import numpy as np

    run = copy_run("fraud")
    plain = rank(run)
    assert rank(run, "--cache").exit_code == 0
    target = run / CACHE_DIR / "target.npy"
    arr = np.load(target)
    arr[:5] = 7  # class 7 does not exist in a binary run
    np.save(target, arr)
    assert open_cache(read_run(run)) is None
    again = rank(run, "--cache")
    assert again.exit_code == 0 and again.stdout == plain.stdout
