"""`rank --cache` gives the same ranking as reading every val.npz, and never serves stale data."""

from __future__ import annotations

import json
import os

import numpy as np
from typer.testing import CliRunner

from ckptaudit.cli import app
from ckptaudit.store.cache import CACHE_DIR, open_cache
from ckptaudit.store.reader import read_run

runner = CliRunner()


def rank(run, *extra):
    result = runner.invoke(app, ["rank", str(run), "-m", "recall", "-m", "roc_auc", "--format", "json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cached_ranking_equals_the_plain_one(copy_run):
    run = copy_run("fraud")
    plain = rank(run)
    assert open_cache(read_run(run)) is None
    built = rank(run, "--cache")  # builds the cache while ranking
    assert open_cache(read_run(run)) is not None
    warm = rank(run, "--cache")  # reads it
    assert plain == built == warm


def test_a_changed_val_npz_invalidates_the_cache(copy_run):
    run = copy_run("fraud")
    rank(run, "--cache")
    path = run / "checkpoints" / "epoch-0004" / "val.npz"
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["output"] = arrays["output"] + 5.0  # epoch 4 now predicts "fraud" for everything
    np.savez(path, **arrays)
    assert open_cache(read_run(run)) is None
    fresh = {r["checkpoint"]: r["recall"] for r in rank(run, "--cache")}
    assert fresh["epoch-0004"] == 1.0
    assert fresh == {r["checkpoint"]: r["recall"] for r in rank(run)}


def test_a_rewrite_with_the_same_size_and_mtime_invalidates_the_cache(copy_run):
    run = copy_run("fraud")
    rank(run, "--cache")
    path = run / "checkpoints" / "epoch-0004" / "val.npz"
    before = path.stat()
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["output"] = arrays["output"] + 5.0  # same shape and dtype: the same file size
    np.savez(path, **arrays)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert open_cache(read_run(run)) is None
    fresh = {r["checkpoint"]: r["recall"] for r in rank(run, "--cache")}
    assert fresh["epoch-0004"] == 1.0
    assert fresh == {r["checkpoint"]: r["recall"] for r in rank(run)}


def test_pruned_checkpoints_invalidate_the_cache(copy_run):
    run = copy_run("fraud")
    rank(run, "--cache")
    assert runner.invoke(app, ["prune", str(run), "-m", "recall", "--keep", "2", "--all", "--yes"]).exit_code == 0
    assert open_cache(read_run(run)) is None
    assert len(rank(run, "--cache")) == len(rank(run))


def test_a_default_prune_keeps_the_cache_valid_and_the_ranking_the_same(copy_run):
    run = copy_run("fraud")
    before = rank(run, "--cache")
    assert runner.invoke(app, ["prune", str(run), "-m", "recall", "--keep", "2", "--yes"]).exit_code == 0
    assert open_cache(read_run(run)) is not None  # predictions were kept: nothing to rebuild
    assert rank(run, "--cache") == before == rank(run)


def test_no_cache_is_written_for_a_run_with_an_unreadable_checkpoint(copy_run):
    run = copy_run("fraud")
    (run / "checkpoints" / "epoch-0003" / "val.npz").write_bytes(b"junk")
    result = runner.invoke(app, ["rank", str(run), "-m", "recall", "--cache"])
    assert result.exit_code == 2
    assert not (run / CACHE_DIR).exists()
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
