"""`rank --cache` builds by writing each checkpoint's outputs as it is read (issue 10 §4:
memory bounded by one checkpoint), reads warm through one reused buffer, and checks the
archives' central directories with one small read each, agreeing with zipfile."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ckptaudit.cli import app
from ckptaudit.store import safeio
from ckptaudit.store.cache import CacheWriter, open_cache
from ckptaudit.store.reader import PassReader, read_run

ROOT = Path(__file__).resolve().parents[1]


def test_each_checkpoint_is_on_disk_once_added(copy_run):
    run = read_run(copy_run("fraud"))
    writer = CacheWriter(run)
    reader = PassReader(run)
    sizes = []
    for ckpt in run.checkpoints:
        preds = reader.read(ckpt)
        writer.add(preds)
        assert writer.out is not None
        writer.out.flush()
        sizes.append((writer.tmp / "outputs.npy").stat().st_size)
    per = preds.output.nbytes
    assert [b - a for a, b in zip(sizes, sizes[1:], strict=False)] == [per] * (len(sizes) - 1)
    writer.finish()
    cached = open_cache(run)
    assert cached is not None
    for (ckpt, got), expected_ckpt in zip(cached.predictions(), run.checkpoints, strict=True):
        assert ckpt is expected_ckpt
        assert np.array_equal(got.output, PassReader(run).read(ckpt).output)


def test_warm_cache_gives_the_plain_ranking_for_every_fixture(copy_run):
    for name, metric in (("fraud", "recall"), ("digits", "accuracy"), ("overfit", "mse")):
        run = copy_run(name)
        args = ["rank", str(run), "-m", metric, "-f", "json"]
        plain = CliRunner().invoke(app, args).stdout
        built = CliRunner().invoke(app, [*args, "--cache"]).stdout
        assert open_cache(read_run(run)) is not None
        warm = CliRunner().invoke(app, [*args, "--cache"]).stdout
        assert plain == built == warm and json.loads(plain)


def _zipfile_fingerprint(path: Path) -> list:
    with zipfile.ZipFile(path) as zf:
        return [[i.filename, i.CRC, i.file_size] for i in zf.infolist()]


def test_the_quick_fingerprint_agrees_with_zipfile_on_every_fixture():
    paths = sorted((ROOT / "fixtures" / "runs").rglob("*.npz"))
    assert paths
    for path in paths:
        assert safeio._quick_fingerprint(path) == _zipfile_fingerprint(path)


@pytest.mark.parametrize("kind", ["comment", "compressed", "zip64", "utf8-name"])
def test_unusual_archives_still_fingerprint_as_zipfile_reads_them(tmp_path: Path, kind: str):
    path = tmp_path / "val.npz"
    arrays = {"target": np.arange(10), "output": np.linspace(0, 1, 10)}
    if kind == "compressed":
        np.savez_compressed(path, **arrays)
    elif kind == "utf8-name":
        np.savez(path, **arrays, **{"ünï": np.zeros(2)})
    else:
        np.savez(path, **arrays)
    if kind == "comment":
        with zipfile.ZipFile(path, "a") as zf:
            zf.comment = b"written by hand"
    if kind == "zip64":
        with zipfile.ZipFile(path, "w") as zf:
            for name, arr in arrays.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, arr)
    assert safeio.zip_fingerprint(path) == _zipfile_fingerprint(path)


def test_damaged_archives_have_no_fingerprint(tmp_path: Path):
    path = tmp_path / "val.npz"
    np.savez(path, target=np.arange(10))
    path.write_bytes(path.read_bytes()[:-5])
    assert safeio.zip_fingerprint(path) is None


def test_read_npy_reads_as_numpy_and_refuses_what_numpy_would_not_trust(tmp_path: Path):
    from test_direct_reader import ARRAYS

    for key, arr in ARRAYS.items():
        path = tmp_path / f"{key}.npy"
        np.save(path, arr)
        got, expected = safeio.read_npy(path), np.load(path)
        assert got.dtype == expected.dtype and got.shape == expected.shape and got.tobytes() == expected.tobytes()
        assert got.flags.f_contiguous == expected.flags.f_contiguous
    path = tmp_path / "short.npy"
    np.save(path, np.arange(100))
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ValueError):
        safeio.read_npy(path)
    np.save(path, np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        safeio.read_npy(path)
