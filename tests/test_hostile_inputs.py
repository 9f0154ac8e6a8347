"""Hostile and broken inputs: each is built from a copy of a real fixture run, and every
verb it applies to must answer with exit code 2 and one clear line naming the file, never
a traceback, an internal error or a hang (FIFOs and devices run under a deadline)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ckptaudit.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "fixtures" / "runs"


class Hung(BaseException):
    """Raised by the deadline: a BaseException, so no error handler can swallow it."""


@pytest.fixture(autouse=True)
def deadline():
    """Fail (instead of hanging the suite) when a command blocks for 90 s."""

    def on_alarm(signum, frame):
        raise Hung("the command did not finish within 90 s (a blocking read?)")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(90)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------ building broken runs


def rewrite(npz: Path, **changes: np.ndarray) -> None:
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez(npz, **arrays)


def every_val(run: Path) -> list[Path]:
    return sorted(run.glob("checkpoints/*/val.npz"))


def ckpt(run: Path, name: str = "epoch-0003") -> Path:
    return run / "checkpoints" / name


def deep_run_json(run: Path) -> None:
    (run / "run.json").write_text("[" * 100_000 + "]" * 100_000)


def deep_meta_json(run: Path) -> None:
    (ckpt(run) / "meta.json").write_text('{"epoch": 3, "logged": ' + '{"a": ' * 50_000 + "1" + "}" * 50_001)


def huge_epoch(run: Path) -> None:
    (ckpt(run) / "meta.json").write_text('{"epoch": ' + "9" * 5000 + "}")


def huge_logged_value(run: Path) -> None:
    (ckpt(run) / "meta.json").write_text('{"epoch": 3, "logged": {"val_loss": 1' + "0" * 400 + "}}")


def negative_epoch(run: Path) -> None:
    (ckpt(run) / "meta.json").write_text('{"epoch": -3}')


def truncated_run_json(run: Path) -> None:
    text = (run / "run.json").read_text()
    (run / "run.json").write_text(text[: len(text) // 2])


def latin1_meta_json(run: Path) -> None:
    (ckpt(run) / "meta.json").write_bytes('{"epoch": 3, "logged": {"pr\xe9cision": 0.5}}'.encode("latin-1"))


def structured_ids(run: Path) -> None:
    path = ckpt(run) / "val.npz"
    with np.load(path) as z:
        n = z["target"].shape[0]
    ids = np.zeros(n, dtype=[("a", "<i4"), ("b", "<f8")])
    ids["a"] = np.arange(n)
    rewrite(path, id=ids)


def object_ids(run: Path) -> None:
    path = ckpt(run) / "val.npz"
    with np.load(path) as z:
        n = z["target"].shape[0]
    rewrite(path, id=np.array([f"row-{i}" for i in range(n)], dtype=object))


def label_target_2_62(run: Path) -> None:
    """digits as hard labels, with one target of 2**62 (an OverflowError in the kernels before)."""
    data = json.loads((run / "run.json").read_text())
    data["output"] = "label"
    (run / "run.json").write_text(json.dumps(data))
    for path in every_val(run):
        with np.load(path) as z:
            target, labels = z["target"].astype(np.int64), z["output"].argmax(axis=1)
        if path.parent.name == "epoch-0003":
            target[0] = 2**62
        rewrite(path, target=target, output=labels)


def regression_target(value: float) -> Callable[[Path], None]:
    def build(run: Path) -> None:
        for path in every_val(run):
            with np.load(path) as z:
                target = z["target"].copy()
            target[7] = value
            rewrite(path, target=target)

    return build


def zip_directory_claims(size: int) -> Callable[[Path], None]:
    """A val.npz whose central directory says ``output.npy`` inflates to ``size`` bytes:
    refused from the directory alone, before anything is inflated."""

    def build(run: Path) -> None:
        path = ckpt(run) / "val.npz"
        data = bytearray(path.read_bytes())
        end = data.rfind(b"PK\x05\x06")
        (cd_offset,) = struct.unpack_from("<I", data, end + 16)
        pos = cd_offset
        while data[pos : pos + 4] == b"PK\x01\x02":
            name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, pos + 28)
            name = bytes(data[pos + 46 : pos + 46 + name_len])
            if name == b"output.npy":
                struct.pack_into("<I", data, pos + 24, size)
            pos += 46 + name_len + extra_len + comment_len
        path.write_bytes(bytes(data))

    return build


def real_zip_bomb(run: Path) -> None:
    """An 'output' of 43 MB of zeros deflated to ~50 kB (the limit is lowered to 10 MB for it)."""
    path = ckpt(run) / "val.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["output"] = np.zeros((arrays["target"].shape[0], 3000))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, arr, allow_pickle=False)


def fifo(relative: str) -> Callable[[Path], None]:
    def fifo_case(run: Path) -> None:
        target = run / relative
        target.unlink()
        os.mkfifo(target)

    return fifo_case


def device(relative: str) -> Callable[[Path], None]:
    def device_case(run: Path) -> None:
        target = run / relative
        target.unlink()
        os.symlink("/dev/zero", target)

    return device_case


@dataclass
class Isolated:
    """A child process's result, shaped like CliRunner's."""

    exit_code: int
    stdout: str
    stderr: str
    exception: None = None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _cap_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def isolated(args: list[str], cwd: Path) -> Isolated:
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "ckptaudit", *args],
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(ROOT)},  # the ckptaudit under test, wherever cwd is
            capture_output=True,
            text=True,
            timeout=30,
            preexec_fn=_cap_memory,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"ckptaudit {' '.join(args)} hung for 30 s")
    return Isolated(proc.returncode, proc.stdout, proc.stderr)


# (id, fixture run, metric, builder, fragments the error line must hold, verbs that apply)
ALL = ("rank", "audit", "pick", "check")
NPZ_VERBS = ("rank", "audit", "pick")  # check: the gate's handling of unreadable checkpoints is issue 8 section 2
CASES = [
    ("deep-run-json", "fraud", "recall", deep_run_json, ["run.json", "nested too deeply"], ALL),
    ("deep-meta-json", "fraud", "recall", deep_meta_json, ["epoch-0003/meta.json", "nested too deeply"], ALL),
    ("5000-digit-epoch", "fraud", "recall", huge_epoch, ["epoch-0003/meta.json", "5000 digits"], ALL),
    ("401-digit-logged-value", "fraud", "recall", huge_logged_value, ["epoch-0003/meta.json", "401 digits"], ALL),
    ("negative-epoch", "fraud", "recall", negative_epoch, ["epoch-0003/meta.json", "'epoch' must be from 0"], ALL),
    ("truncated-run-json", "fraud", "recall", truncated_run_json, ["run.json", "malformed JSON"], ALL),
    ("latin1-meta-json", "fraud", "recall", latin1_meta_json, ["epoch-0003/meta.json", "not UTF-8"], ALL),
    (
        "structured-ids",
        "fraud",
        "recall",
        structured_ids,
        ["epoch-0003/val.npz", "'id' must hold integers or strings"],
        NPZ_VERBS,
    ),
    ("object-ids", "fraud", "recall", object_ids, ["epoch-0003/val.npz", "Python objects"], NPZ_VERBS),
    (
        "label-target-2**62",
        "digits",
        "accuracy",
        label_target_2_62,
        ["epoch-0003/val.npz", "holds class 4611686018427387904"],
        NPZ_VERBS,
    ),
    ("nan-regression-target", "friedman", "mse", regression_target(np.nan), ["val.npz", "NaN or infinite", "row 7"], NPZ_VERBS),
    ("inf-regression-target", "friedman", "mse", regression_target(np.inf), ["val.npz", "NaN or infinite", "row 7"], NPZ_VERBS),
    (
        "zip-directory-claims-3GB",
        "fraud",
        "recall",
        zip_directory_claims(3_000_000_000),
        ["epoch-0003/val.npz", "zip bomb"],
        NPZ_VERBS,
    ),
    ("fifo-meta-json", "fraud", "recall", fifo("checkpoints/epoch-0003/meta.json"), ["epoch-0003/meta.json", "FIFO"], ALL),
    ("fifo-run-json", "fraud", "recall", fifo("run.json"), ["run.json", "FIFO"], ALL),
    ("fifo-val-npz", "fraud", "recall", fifo("checkpoints/epoch-0003/val.npz"), ["epoch-0003/val.npz", "FIFO"], NPZ_VERBS),
    ("device-meta-json", "fraud", "recall", device("checkpoints/epoch-0003/meta.json"), ["meta.json", "character device"], ALL),
    ("device-val-npz", "fraud", "recall", device("checkpoints/epoch-0003/val.npz"), ["val.npz", "character device"], NPZ_VERBS),
]


def command(verb: str, run: Path, metric: str) -> list[str]:
    extra = {"rank": [], "audit": ["--resamples", "100"], "pick": ["--resamples", "100"], "check": ["--resamples", "100"]}
    return [verb, str(run), "--metric", metric, *extra[verb]]


def assert_one_line_error(result, fragments: list[str]) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("ckptaudit: error:")]
    for fragment in fragments:
        assert any(fragment in line for line in errors), (fragment, result.stderr)


@pytest.mark.parametrize(
    ("verb", "case"),
    [(verb, case) for case in CASES for verb in case[5]],
    ids=[f"{verb}-{case[0]}" for case in CASES for verb in case[5]],
)
def test_hostile_input_is_one_clear_error(verb, case, tmp_path, monkeypatch):
    _, source, metric, build, fragments, _ = case
    run = tmp_path / source
    shutil.copytree(RUNS / source, run)
    build(run)
    monkeypatch.chdir(tmp_path)  # no policy file of this repository applies to `check`
    if build.__name__ in ("fifo_case", "device_case"):
        # NOTE: a regression would block on the FIFO or read /dev/zero until memory runs
        # out: run it in a child process with a deadline and a memory cap instead.
        result = isolated(command(verb, run, metric), cwd=tmp_path)
    else:
        result = runner.invoke(app, command(verb, run, metric))
    assert_one_line_error(result, fragments)


def test_a_real_zip_bomb_is_refused_under_a_lowered_limit_and_read_under_a_raised_one(tmp_path, monkeypatch):
    run = tmp_path / "fraud"
    shutil.copytree(RUNS / "fraud", run)
    real_zip_bomb(run)
    path = ckpt(run) / "val.npz"
    assert path.stat().st_size < 1_000_000
    monkeypatch.setenv("CKPTAUDIT_MAX_NPZ_BYTES", "10000000")
    assert_one_line_error(runner.invoke(app, ["rank", str(run), "-m", "recall"]), ["epoch-0003/val.npz", "zip bomb"])
    # under a raised limit the array is inflated and read: its shape is then the problem
    monkeypatch.setenv("CKPTAUDIT_MAX_NPZ_BYTES", "60000000")
    result = runner.invoke(app, ["rank", str(run), "-m", "recall"])
    assert_one_line_error(result, ["epoch-0003/val.npz", "got (1800, 3000)"])
    monkeypatch.setenv("CKPTAUDIT_MAX_NPZ_BYTES", "lots")
    assert_one_line_error(runner.invoke(app, ["rank", str(run), "-m", "recall"]), ["CKPTAUDIT_MAX_NPZ_BYTES"])


def test_an_npy_header_that_lies_about_its_size_is_refused(tmp_path):
    run = tmp_path / "fraud"
    shutil.copytree(RUNS / "fraud", run)
    path = ckpt(run) / "val.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    with zipfile.ZipFile(path, "w") as zf:
        for name, arr in arrays.items():
            raw = np.lib.format.header_data_from_array_1_0(arr)
            if name == "output":
                raw["shape"] = (10**15,)  # would allocate petabytes before reading a byte
            with zf.open(f"{name}.npy", "w") as fh:
                np.lib.format.write_array_header_1_0(fh, raw)
                fh.write(arr.tobytes())
    assert_one_line_error(runner.invoke(app, ["rank", str(run), "-m", "recall"]), ["epoch-0003/val.npz", "declares shape"])


def test_duplicated_epochs_are_ordered_by_step_then_name(tmp_path):
    """The documented rule: two checkpoints may share an epoch; step, then the folder name, orders them."""
    run = tmp_path / "fraud"
    shutil.copytree(RUNS / "fraud", run)
    for name in ("epoch-0004", "epoch-0005"):
        (ckpt(run, name) / "meta.json").write_text('{"epoch": 4}')
    shutil.copytree(ckpt(run, "epoch-0009"), ckpt(run, "epoch-0009-again"))
    result = runner.invoke(app, ["rank", str(run), "-m", "recall", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    first_two = [r["checkpoint"] for r in rows[:2]]
    assert first_two == ["epoch-0009", "epoch-0009-again"]  # a tie at the same epoch and step: by name
    from ckptaudit.store.reader import read_run

    order = [c.name for c in read_run(run).checkpoints]
    assert order.index("epoch-0004") + 1 == order.index("epoch-0005")


# ------------------------------------------------------------------ policy files (check)


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("ckptaudit.toml", 'metric = "r\xe9call"\n'.encode("latin-1"), "not UTF-8"),
        ("pyproject.toml", b'tool = "ckptaudit"\n', "`tool` must be a table"),
        ("ckptaudit.toml", b"a = " + b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
    ids=["latin1-ckptaudit-toml", "tool-is-a-string", "deep-toml"],
)
def test_malformed_policy_files_are_one_clear_error(tmp_path, name, content, fragment):
    config = tmp_path / name
    config.write_bytes(content)
    result = runner.invoke(app, ["check", str(RUNS / "fraud"), "-m", "recall", "--config", str(config)])
    assert_one_line_error(result, [name, fragment])


def test_policy_search_passes_over_a_pyproject_whose_tool_is_not_a_table(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('tool = "ckptaudit"\n')
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["check", str(RUNS / "fraud"), "-m", "recall", "--resamples", "100", "--format", "json"])
    assert result.exit_code in (0, 1) and json.loads(result.stdout)["policy_source"] is None, result.output


def test_a_fifo_as_policy_file_is_refused(tmp_path):
    os.mkfifo(tmp_path / "ckptaudit.toml")
    result = runner.invoke(app, ["check", str(RUNS / "fraud"), "-m", "recall", "--config", str(tmp_path / "ckptaudit.toml")])
    assert_one_line_error(result, ["ckptaudit.toml", "FIFO"])


# ------------------------------------------------------------------ the output side


def cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ckptaudit", *args], **kwargs)


def test_stdout_closed_by_the_reader_exits_quietly():
    """`ckptaudit rank ... | head -0`: no traceback, no 'Exception ignored', exit 141 like SIGPIPE."""
    proc = cli("rank", str(RUNS / "fraud"), "-m", "recall", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141, err
    assert err == b"", err


def test_stdout_not_open_at_all_is_one_line():
    proc = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -m ckptaudit rank "{RUNS / "fraud"}" -m recall >&-'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stderr.strip() == "ckptaudit: error: cannot write the output: standard output is closed"


def _as_nobody(tmp_root: Path) -> list[str] | None:
    """A command prefix that drops root (root ignores file modes); [] when not root."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        return None
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_a_read_only_run_folder_ranks_with_cache_and_refuses_to_pick_into_it(tmp_path):
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="ckptaudit-ro-"))
    try:
        base.chmod(0o755)
        run = base / "fraud"
        shutil.copytree(RUNS / "fraud", run)
        for path in [run, *run.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        prefix = _as_nobody(base)
        if prefix is None:
            pytest.skip("running as root without setpriv: a read-only folder cannot be made")
        base_cmd = [*prefix, sys.executable, "-m", "ckptaudit"]
        plain = subprocess.run(
            [*base_cmd, "rank", str(run), "-m", "recall", "--format", "json"], capture_output=True, text=True, timeout=120
        )
        cached = subprocess.run(
            [*base_cmd, "rank", str(run), "-m", "recall", "--format", "json", "--cache"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert plain.returncode == 0 and cached.returncode == 0, (plain.stderr, cached.stderr)
        assert json.loads(plain.stdout) == json.loads(cached.stdout) and cached.stderr == ""
        assert not (run / ".ckptaudit-cache").exists()
        picked = subprocess.run(
            [*base_cmd, "pick", str(run), "-m", "recall", "--resamples", "100", "--link", str(run / "best")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert picked.returncode == 2, picked.stderr
        assert "Traceback" not in picked.stderr and "internal error" not in picked.stderr
        assert "Permission denied" in picked.stderr and str(run) in picked.stderr
    finally:
        for path in [base, *base.rglob("*")]:
            if not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(base)


def test_no_internal_error_from_zlib_corruption(tmp_path):
    """A deflated member whose bytes were damaged: a CRC or zlib error, reported as corrupt."""
    run = tmp_path / "fraud"
    shutil.copytree(RUNS / "fraud", run)
    path = ckpt(run) / "val.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez_compressed(path, **arrays)
    data = bytearray(path.read_bytes())
    start = data.find(b"output.npy") + len(b"output.npy") + 200
    data[start : start + 64] = zlib.compress(b"x" * 64)[:64].ljust(64, b"\0")
    path.write_bytes(bytes(data))
    assert_one_line_error(runner.invoke(app, ["rank", str(run), "-m", "recall"]), ["epoch-0003/val.npz", "corrupt"])
