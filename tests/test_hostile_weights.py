"""Hostile and broken weights files: what `check --chosen`, `import` and `predict` read must
end in one clear line and exit code 2, bounded in time and memory, and never in advice to
enable code execution for a file that is merely broken (issue 18 items 10, 12, 13, 15).

Each case runs ckptaudit in a child process capped in CPU time and address space
(``resource.setrlimit`` in ``preexec_fn``) under a wall-clock deadline: a regression hangs
or runs out of memory there, not in the test suite. The files are built here, small, by
hand (a zip bomb's deflate stream is one compressed block repeated), except the legitimate
ones, which torch, safetensors and h5py write.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "fixtures" / "runs"
CPU_SECONDS = 60
ADDRESS_SPACE = 2 << 30  # below every bomb here: inflating one fails, refusing it does not


def _cap() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def capped(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m ckptaudit ARGS`` in a child capped in CPU time and address space; a hang
    past 90 s fails the test."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "ckptaudit", *map(str, args)],
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(ROOT), "CKPTAUDIT_DEBUG": ""},
            capture_output=True,
            text=True,
            timeout=90,
            preexec_fn=_cap,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"ckptaudit {' '.join(map(str, args))} hung for 90 s")


def assert_one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# --------------------------------------------------------------------------- building files


def _zip(path: Path, members: list[tuple[str, bytes, int, int, int]]) -> None:
    """A zip written field by field: (name, stored bytes, method, crc, declared size). Lets
    a member hold a deflate stream built without inflating it here."""
    out = io.BytesIO()
    central = []
    for name, data, method, crc, size in members:
        offset = out.tell()
        raw = name.encode()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data), size, len(raw), 0))
        out.write(raw + data)
        central.append(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                0,
                method,
                0,
                0x21,
                crc,
                len(data),
                size,
                len(raw),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + raw
        )
    start = out.tell()
    for entry in central:
        out.write(entry)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), out.tell() - start, start, 0))
    path.write_bytes(out.getvalue())


def _stored(name: str, data: bytes) -> tuple[str, bytes, int, int, int]:
    return (name, data, 0, zlib.crc32(data), len(data))


def _deflated_zeros(name: str, size: int) -> tuple[str, bytes, int, int, int]:
    """A member that inflates to ``size`` zero bytes from about size/1000 on disk. Its CRC is
    left 0: a reader that inflates before it checks finds out only after the damage."""
    block = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    one = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)  # after a full flush, every block compresses alike
    stream = one * (size // len(block)) + c.compress(bytes(size % len(block))) + c.flush()
    return (name, stream, 8, 0, size)


def _binint(value: int) -> bytes:
    if 0 <= value < 1 << 31:
        return b"J" + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw  # LONG1


def _tensor_pickle(numel: int, size: tuple[int, ...], stride: tuple[int, ...]) -> bytes:
    """torch's pickle of ``{"w": tensor}`` for a float32 storage "0" of ``numel`` elements,
    written opcode by opcode (what torch.save writes, without allocating the tensor)."""
    tup = lambda xs: b"(" + b"".join(_binint(x) for x in xs) + b"t"  # noqa: E731
    return (
        b"\x80\x02}X\x01\x00\x00\x00w"
        + b"ctorch._utils\n_rebuild_tensor_v2\n("
        + b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu"
        + _binint(numel)
        + b"tQ"
        + _binint(0)
        + tup(size)
        + tup(stride)
        + b"\x89ccollections\nOrderedDict\n)RtRs."
    )


def torch_zip(path: Path, pickle_bytes: bytes, storage: tuple[str, bytes, int, int, int] | None) -> Path:
    members = [
        _stored("archive/data.pkl", pickle_bytes),
        _stored("archive/byteorder", b"little"),
        _stored("archive/version", b"3\n"),
    ]
    if storage is not None:
        members.append(storage)
    _zip(path, members)
    return path


def zip_bomb_pt(path: Path) -> Path:
    """A 2.4 MB zip-format .pt whose one storage inflates to 2.5 GB."""
    numel = 2_500_000_000 // 4
    return torch_zip(path, _tensor_pickle(numel, (numel,), (1,)), _deflated_zeros("archive/data/0", numel * 4))


def strided_bomb_pt(path: Path) -> Path:
    """A tensor of 10**12 elements viewing one float with stride 0: tiny on disk, 4 TB once copied."""
    return torch_zip(path, _tensor_pickle(1, (10**12,), (0,)), _stored("archive/data/0", b"\0\0\0\0"))


def shared_lists_pt(path: Path, depth: int = 64) -> Path:
    """A 1 KB .pt whose pickle is ``depth`` nested lists, each holding its child twice: a
    tree walk visits 2**depth leaves."""
    node: list = []
    for _ in range(depth):
        node = [node, node]
    return torch_zip(path, pickle.dumps({"state_dict": {"w": node}}, protocol=2), None)


def deep_lists_pt(path: Path, depth: int = 100_000) -> Path:
    # NOTE: written as opcodes (pickle.dumps itself recurses): push the lists, append each into the one below
    return torch_zip(path, b"\x80\x02}X\x01\x00\x00\x00w" + b"]" * depth + b"a" * (depth - 1) + b"s.", None)


def cyclic_pt(path: Path) -> Path:
    loop: list = []
    loop.append(loop)
    return torch_zip(path, pickle.dumps({"w": loop}, protocol=2), None)


def gzip_bomb_h5(path: Path) -> Path:
    """A 4.5 KB HDF5 file declaring a 2.8 GB gzip dataset (never written: every chunk reads
    as the fill value, all 2.8 GB of it)."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "layers/dense/vars/0", shape=(700_000_000,), dtype="f4", chunks=(1 << 20,), compression="gzip", fillvalue=1.0
        )
    return path


def gzip_bomb_keras(path: Path) -> Path:
    h5 = gzip_bomb_h5(path.with_suffix(".h5"))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", '{"keras_version": "3.15.1"}')
        zf.writestr("config.json", "{}")
        zf.write(h5, "model.weights.h5")
    return path


def safetensors_bytes(header: bytes, data: bytes) -> bytes:
    return struct.pack("<Q", len(header)) + header + data


def safetensors_overflow(path: Path) -> Path:
    path.write_bytes(safetensors_bytes(b'{"w": {"dtype": "F32", "shape": [1e999], "data_offsets": [0, 4]}}', b"\0" * 4))
    return path


# --------------------------------------------------------------------------- check --chosen FILE


@pytest.fixture
def run(tmp_path: Path) -> Path:
    dest = tmp_path / "fraud"
    shutil.copytree(RUNS / "fraud", dest)
    return dest


GATE_CASES = [
    ("zip-bomb-pt-2.5GB", zip_bomb_pt, "best.pt", ["best.pt", "members would take 2,500,000,", "CKPTAUDIT_MAX_NPZ_BYTES"]),
    ("stride-0-view-4TB", strided_bomb_pt, "best.pt", ["best.pt", "would take 4,000,000,000,000 bytes"]),
    ("64-lists-sharing-one-child", shared_lists_pt, "best.pt", ["best.pt", "values", "shared"]),
    ("100000-nested-lists", deep_lists_pt, "best.pt", ["best.pt", "nested more than"]),
    ("list-holding-itself", cyclic_pt, "best.pt", ["best.pt", "cycle"]),
    ("gzip-bomb-h5-2.8GB", gzip_bomb_h5, "best.h5", ["best.h5", "would take 2,800,000,000 bytes"]),
    ("gzip-bomb-keras-2.8GB", gzip_bomb_keras, "best.keras", ["best.keras", "would take 2,800,000,000 bytes"]),
    ("safetensors-1e999", safetensors_overflow, "best.safetensors", ["best.safetensors", "'shape' must be a list of counts"]),
]


@pytest.mark.parametrize(("build", "name", "fragments"), [c[1:] for c in GATE_CASES], ids=[c[0] for c in GATE_CASES])
def test_check_chosen_hostile_weights_file_is_one_line_bounded(run, tmp_path, build, name, fragments):
    chosen = build(tmp_path / name)
    assert chosen.stat().st_size < 3 << 20  # small on disk: the danger is in what it declares
    done = capped("check", run, "--metric", "recall", "--resamples", "100", "--chosen", chosen, cwd=tmp_path)
    assert_one_line_error(done, *fragments)


def test_a_planted_hostile_file_does_not_hang_check_for_every_shipped_file(tmp_path):
    """Planted in a checkpoint as an extra weights file, the 2**64-path pickle is read when
    any shipped file is compared by content: it must be one unreadable file among the run's."""
    torch = pytest.importorskip("torch")
    run = tmp_path / "fraud"
    shutil.copytree(RUNS / "fraud", run)
    torch.save({"w": torch.ones(3)}, run / "checkpoints" / "epoch-0002" / "model.pt")
    shared_lists_pt(run / "checkpoints" / "epoch-0003" / "extra.pt")
    shipped = tmp_path / "shipped.pt"
    torch.save({"w": torch.zeros(3)}, shipped)
    done = capped("check", run, "--metric", "recall", "--resamples", "100", "--chosen", shipped, cwd=tmp_path)
    assert_one_line_error(done, "matches no weights file", "could not be read", "extra.pt")


def test_a_bomb_is_read_under_a_raised_limit(run, tmp_path):
    """The limit is the documented one: raised, the same .h5 is read (and matches nothing)."""
    chosen = gzip_bomb_h5(tmp_path / "best.h5")
    small = chosen.with_name("small.h5")
    h5py = pytest.importorskip("h5py")
    with h5py.File(small, "w") as f:
        f.create_dataset("w", shape=(1_000_000,), dtype="f4", chunks=(1 << 16,), compression="gzip", fillvalue=1.0)
    os.environ["CKPTAUDIT_MAX_NPZ_BYTES"] = "1000000"
    try:
        refused = capped("check", run, "--metric", "recall", "--resamples", "100", "--chosen", small, cwd=tmp_path)
        assert_one_line_error(refused, "would take 4,000,000 bytes")
        os.environ["CKPTAUDIT_MAX_NPZ_BYTES"] = "5000000"
        read = capped("check", run, "--metric", "recall", "--resamples", "100", "--chosen", small, cwd=tmp_path)
        assert_one_line_error(read, "matches no weights file")
    finally:
        del os.environ["CKPTAUDIT_MAX_NPZ_BYTES"]


# --------------------------------------------------------------------------- import / predict: corrupt is not "needs code"


def _corrupt_files(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    files = {"random-bytes": folder / "model_epoch_1.pt"}
    files["random-bytes"].write_bytes(rng.bytes(4096))
    np.save(folder / "a.npy", np.arange(10.0))
    files["npy"] = (folder / "a.npy").rename(folder / "model_epoch_2.pt")
    h5py = pytest.importorskip("h5py")
    with h5py.File(folder / "model_epoch_3.pt", "w") as f:
        f["w"] = np.zeros(4)
    files["hdf5"] = folder / "model_epoch_3.pt"
    pk = folder / "model_epoch_4.pt"  # a pickle header, then garbage
    pk.write_bytes(b"\x80\x02" + rng.bytes(500))
    files["pickle-header-then-garbage"] = pk
    return files


@pytest.mark.parametrize("trust", [False, True], ids=["default", "trust-pickle"])
@pytest.mark.parametrize("kind", ["random-bytes", "npy", "hdf5", "pickle-header-then-garbage"])
def test_import_of_a_corrupt_weights_file_never_suggests_trust_pickle(tmp_path, kind, trust):
    pytest.importorskip("torch")
    files = _corrupt_files(tmp_path / "src")
    glob = str(files[kind])
    args = ["import", "files", glob, tmp_path / "run", "--task", "multiclass", *(["--trust-pickle"] if trust else [])]
    done = capped(*args, cwd=tmp_path)
    line = assert_one_line_error(done, files[kind].name)
    assert "trust-pickle" not in line and "needs code" not in line, line
    assert "not a torch file" in line or "corrupt" in line, line


def test_import_of_a_torch_zip_bomb_is_refused_before_torch_inflates_it(tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "src").mkdir()
    zip_bomb_pt(tmp_path / "src" / "model_epoch_1.pt")
    done = capped("import", "files", tmp_path / "src" / "*.pt", tmp_path / "run", "--task", "binary", cwd=tmp_path)
    assert_one_line_error(done, "model_epoch_1.pt", "members would take 2,500,000,")


def test_a_file_needing_code_is_still_refused_with_the_advice(tmp_path):
    """The one case the advice is for: a well-formed torch file whose pickle imports a global."""
    torch = pytest.importorskip("torch")
    (tmp_path / "src").mkdir()

    class Payload:
        def __reduce__(self):
            return (os.getcwd, ())

    torch.save({"w": torch.zeros(2), "x": Payload()}, tmp_path / "src" / "model_epoch_1.pt")
    done = capped("import", "files", tmp_path / "src" / "*.pt", tmp_path / "run", "--task", "binary", cwd=tmp_path)
    assert_one_line_error(done, "needs code", "posix.getcwd", "--trust-pickle")
