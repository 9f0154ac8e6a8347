"""The direct reader of stored .npz members (issue 10 §1): the same arrays as numpy's own
reader for every layout, every damage still detected (CRC-32, truncation, a lying header),
and the buffers of a pass reused without ever handing one checkpoint's data to another."""

from __future__ import annotations

import datetime as _datetime
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ckptaudit import picking
from ckptaudit.cli import app
from ckptaudit.errors import RunFormatError
from ckptaudit.metrics.evaluation import iter_scores
from ckptaudit.metrics.spec import parse_metric
from ckptaudit.store import npzread
from ckptaudit.store.reader import PassReader, read_predictions, read_run
from ckptaudit.store.safeio import ReadBuffers, read_npz

ARRAYS = {
    "int64": np.arange(1000, dtype=np.int64),
    "float32-2d": np.random.default_rng(0).standard_normal((300, 7)).astype(np.float32),
    "fortran": np.asfortranarray(np.random.default_rng(1).standard_normal((40, 9))),
    "float16": np.linspace(0, 1, 33, dtype=np.float16),
    "bool": np.random.default_rng(2).random(77) > 0.5,
    "strings": np.array(["a", "bc", "def"]),
    "bytes": np.array([b"x", b"yz"]),
    "empty": np.zeros((0, 3), dtype=np.float32),
    "structured": np.zeros(5, dtype=[("a", "<i4"), ("b", "<f8")]),
    "big-endian": np.arange(10, dtype=">i4"),
    "odd-size": np.arange(13, dtype=np.int8),
}


@pytest.fixture(autouse=True, params=["whole file", "by member"])
def _read_whole(request, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test twice: a small file read whole in one call (as every file here is), and
    each member read from the descriptor (as a file over 256 KiB is)."""
    if request.param == "by member":
        monkeypatch.setattr(npzread, "_WHOLE_FILE", 0)


def _same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.flags.f_contiguous == b.flags.f_contiguous and a.flags.c_contiguous == b.flags.c_contiguous
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("reuse", [False, True])
def test_every_layout_reads_as_numpy_reads_it(tmp_path: Path, compressed: bool, reuse: bool) -> None:
    path = tmp_path / "a.npz"
    (np.savez_compressed if compressed else np.savez)(path, **ARRAYS)
    buffers = ReadBuffers(volatile=("float32-2d", "fortran")) if reuse else None
    got = read_npz(path, tuple(ARRAYS), reuse=buffers)
    with np.load(path) as npz:
        for key in ARRAYS:
            _same(got[key], npz[key])


def _member_data_offset(path: Path, name: str) -> tuple[int, int]:
    """(offset of the member's .npy data, its length) in the file."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    raw = path.read_bytes()
    name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    header_len = struct.unpack_from("<H", raw, start + 8)[0]
    return start + 10 + header_len, info.file_size - 10 - header_len


@pytest.mark.parametrize("member", ["target.npy", "output.npy"])
@pytest.mark.parametrize("reuse", [False, True])
def test_a_flipped_byte_in_a_stored_member_is_a_crc_error(tmp_path: Path, member: str, reuse: bool) -> None:
    path = tmp_path / "val.npz"
    np.savez(path, target=np.arange(100), output=np.linspace(0, 1, 100))
    buffers = ReadBuffers() if reuse else None
    if reuse:  # a first, intact read: later reads compare with it
        read_npz(path, ("target", "output"), reuse=buffers)
    offset, _ = _member_data_offset(path, member)
    data = bytearray(path.read_bytes())
    data[offset + 17] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(RunFormatError, match="corrupt.*CRC-32"):
        read_npz(path, ("target", "output"), reuse=buffers)


def test_equal_bytes_under_another_recorded_crc_are_refused(tmp_path: Path) -> None:
    """A target whose bytes equal the one verified before but whose central directory
    records another CRC-32: the archive is inconsistent, and says so."""
    path = tmp_path / "val.npz"
    np.savez(path, target=np.arange(100), output=np.linspace(0, 1, 100))
    buffers = ReadBuffers()
    read_npz(path, ("target", "output"), reuse=buffers)
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    (cd_offset,) = struct.unpack_from("<I", data, end + 16)
    assert data[cd_offset : cd_offset + 4] == b"PK\x01\x02"
    name_len = struct.unpack_from("<H", data, cd_offset + 28)[0]
    assert data[cd_offset + 46 : cd_offset + 46 + name_len] == b"target.npy"
    crc = struct.unpack_from("<I", data, cd_offset + 16)[0]
    struct.pack_into("<I", data, cd_offset + 16, crc ^ 1)
    path.write_bytes(bytes(data))
    with pytest.raises(RunFormatError, match="CRC-32"):
        read_npz(path, ("target", "output"), reuse=buffers)


@pytest.mark.parametrize("cut", [1, 50, 400])
def test_a_truncated_stored_archive_is_refused(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "val.npz"
    np.savez(path, target=np.arange(100), output=np.linspace(0, 1, 100))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - cut])
    with pytest.raises(RunFormatError, match="corrupt"):
        read_npz(path, ("target", "output"))


def test_a_local_header_naming_another_member_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "val.npz"
    np.savez(path, target=np.arange(100), output=np.linspace(0, 1, 100))
    data = path.read_bytes().replace(b"output.npy", b"outpux.npy", 1)  # the local header's name only
    path.write_bytes(data)
    with pytest.raises(RunFormatError, match="corrupt"):
        read_npz(path, ("target", "output"))


def test_an_npy_header_that_lies_about_its_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "val.npz"
    np.savez(path, target=np.arange(100), output=np.linspace(0, 1, 100))
    data = path.read_bytes().replace(b"'shape': (100,)", b"'shape': (900,)", 1)
    path.write_bytes(data)
    with pytest.raises(RunFormatError, match="declares shape"):
        read_npz(path, ("target", "output"))


def test_npy_headers_are_parsed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = npzread._header
    monkeypatch.setattr(npzread, "_header", lambda f: calls.append(1) or real(f))
    monkeypatch.setattr(npzread, "_NPY_HEADERS", {})
    for i in range(5):
        np.savez(tmp_path / f"{i}.npz", target=np.arange(100), output=np.full(100, float(i)))
        assert read_npz(tmp_path / f"{i}.npz", ("target", "output"))["output"][0] == i
    assert len(calls) == 2  # one per distinct header (target, output)


def _run_with_outputs(root: Path, outputs: list[np.ndarray], target: np.ndarray) -> Path:
    (root / "checkpoints").mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({"format": "ckptaudit/1", "task": "binary", "output": "probability"}))
    for e, out in enumerate(outputs):
        ckpt = root / "checkpoints" / f"epoch-{e:04d}"
        ckpt.mkdir()
        (ckpt / "meta.json").write_text(json.dumps({"epoch": e}))
        np.savez(ckpt / "val.npz", target=target, output=out, id=np.arange(target.shape[0]))
    return root


def test_a_pass_shares_targets_and_reuses_the_output_buffer(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    target = (rng.random(500) < 0.3).astype(np.int64)
    outputs = [rng.random(500).astype(np.float32) for _ in range(4)]
    run = read_run(_run_with_outputs(tmp_path / "run", outputs, target))
    reader = PassReader(run)
    seen = []
    for ckpt, expected in zip(run.checkpoints, outputs, strict=True):
        preds = read_predictions(run, ckpt, "val", reader)
        fresh = read_predictions(run, ckpt, "val")
        assert np.array_equal(preds.output, expected) and np.array_equal(fresh.output, expected)
        assert np.array_equal(preds.target, fresh.target) and np.array_equal(preds.ids, fresh.ids)
        assert not preds.target.flags.writeable and fresh.target.flags.writeable
        seen.append(preds)
    assert all(p.target is seen[0].target and p.ids is seen[0].ids for p in seen)
    # NOTE: the contract: output is valid until the next read (one buffer for the pass)
    assert all(np.shares_memory(p.output, seen[0].output) for p in seen)
    assert np.array_equal(seen[0].output, outputs[-1])


def test_a_changed_target_in_a_pass_is_a_new_array_and_still_caught(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    target = (rng.random(300) < 0.3).astype(np.int64)
    outputs = [rng.random(300).astype(np.float32) for _ in range(3)]
    root = _run_with_outputs(tmp_path / "run", outputs, target)
    changed = target.copy()
    changed[7] = 1 - changed[7]
    np.savez(root / "checkpoints" / "epoch-0002" / "val.npz", target=changed, output=outputs[2], id=np.arange(300))
    result = CliRunner().invoke(app, ["rank", str(root), "-m", "recall"])
    assert result.exit_code == 2 and "validation set changed at epoch 2" in result.stderr


def test_statistics_from_a_pass_equal_those_from_fresh_arrays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever an observer keeps from a pass (per-row data, intervals) must be a copy: the
    same command with buffer reuse turned off gives the same output."""
    rng = np.random.default_rng(5)
    target = (rng.random(400) < 0.4).astype(np.int64)
    outputs = [np.clip(target * 0.2 * e + rng.random(400) * 0.8, 0, 1).astype(np.float32) for e in range(5)]
    root = _run_with_outputs(tmp_path / "run", outputs, target)
    # pick stamps its record with the second it ran: both runs get the same one, so the outputs
    # compare whole (across a second's turn they differed in that stamp alone)
    monkeypatch.setattr(picking, "_dt", _FixedClock)
    commands = [
        ["rank", str(root), "-m", "recall", "--ci", "--resamples", "200", "-f", "json"],
        ["pick", str(root), "-m", "recall", "--resamples", "200", "-f", "json"],
        ["check", str(root), "-m", "recall", "--resamples", "200", "-f", "json"],
    ]
    reused = [CliRunner().invoke(app, c).stdout for c in commands]
    original = ReadBuffers.__init__

    def fresh_buffers(self: ReadBuffers, volatile: tuple[str, ...] = ()) -> None:
        """ReadBuffers that reuse nothing: no volatile member, and no earlier array to share."""
        original(self, volatile=())
        self._known = _Forgetful()

    monkeypatch.setattr(ReadBuffers, "__init__", fresh_buffers)
    fresh = [CliRunner().invoke(app, c).stdout for c in commands]
    assert reused == fresh and all(reused)


class _FixedClock:
    """``picking``'s ``datetime`` module with a clock that always reads the same second."""

    timezone = _datetime.timezone

    class datetime:  # noqa: N801 - stands in for the module's class of that name
        @staticmethod
        def now(tz=None):
            return _datetime.datetime(2026, 1, 1, tzinfo=tz)


class _Forgetful(dict):
    def get(self, key, default=None):  # noqa: ARG002 - never found: every array is read afresh
        return default


def test_iter_scores_matches_scores_from_fresh_reads(copy_run) -> None:
    run = read_run(copy_run("digits"))
    spec = parse_metric("balanced_accuracy")
    from ckptaudit.metrics import kernels
    from ckptaudit.metrics.evaluation import prepare_predictions

    for score in iter_scores(run, [spec]):
        prep = prepare_predictions(run, read_predictions(run, score.checkpoint))
        assert score.values[0] == kernels.KERNELS["balanced_accuracy"](prep, spec)


def _archive(path: Path, kind: str) -> dict[str, np.ndarray]:
    """An archive of ``kind``: numpy's usual one, or one the direct directory read leaves to zipfile."""
    arrays = {"target": np.arange(10), "output": np.linspace(0, 1, 10), "id": np.arange(10) * 3}
    (np.savez_compressed if kind == "compressed" else np.savez)(path, **arrays)
    if kind == "comment":
        with zipfile.ZipFile(path, "a") as zf:
            zf.comment = b"written by hand"
    elif kind == "prepended":  # (a self-extracting stub before the archive: zipfile shifts every offset)
        path.write_bytes(b"#!stub\n" * 10 + path.read_bytes())
    elif kind == "extra-field":
        with zipfile.ZipFile(path, "w") as zf:
            for name, arr in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy")
                info.extra = struct.pack("<HH4s", 0xCAFE, 4, b"abcd")
                with zf.open(info, "w") as fh:
                    np.lib.format.write_array(fh, arr)
    return arrays


@pytest.mark.parametrize("kind", ["usual", "comment", "prepended", "extra-field", "compressed"])
@pytest.mark.parametrize("reuse", [False, True])
def test_the_directory_read_directly_or_by_zipfile_gives_numpys_arrays(tmp_path: Path, kind: str, reuse: bool) -> None:
    path = tmp_path / "val.npz"
    arrays = _archive(path, kind)
    from ckptaudit.store.zipstamp import central_directory

    with open(path, "rb") as fh:
        listed = central_directory(fh.fileno(), path.stat().st_size)
    with zipfile.ZipFile(path) as zf:
        theirs = [
            (i.filename, i.flag_bits, i.compress_type, i.compress_size, i.file_size, i.CRC, i.header_offset)
            for i in zf.infolist()
        ]
    assert (listed is not None) == (kind in ("usual", "compressed"))
    if listed is not None:
        assert [tuple(m) for m in listed] == theirs
    got = read_npz(path, ("target", "output"), ("id",), reuse=ReadBuffers() if reuse else None)
    for key, arr in arrays.items():
        _same(got[key], arr)


def test_the_usual_archive_is_read_without_zipfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "val.npz"
    arrays = _archive(path, "usual")

    def refused(*args, **kwargs):
        raise AssertionError("zipfile opened the usual archive")

    monkeypatch.setattr(npzread.zipfile, "ZipFile", refused)
    got = read_npz(path, ("target", "output", "id"))
    for key, arr in arrays.items():
        _same(got[key], arr)


def test_a_member_needing_a_newer_zip_version_is_refused_as_zipfile_refuses_it(tmp_path: Path) -> None:
    path = tmp_path / "val.npz"
    _archive(path, "usual")
    data = bytearray(path.read_bytes())
    at = data.rfind(b"PK\x01\x02")  # the last member's central directory entry: version needed = 9.9
    data[at + 6] = 99
    path.write_bytes(bytes(data))
    with pytest.raises(RunFormatError, match="NotImplementedError: zip file version 9.9"):
        read_npz(path, ("target", "output"))
