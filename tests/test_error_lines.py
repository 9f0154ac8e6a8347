"""Errors that mislead (issue 18 §16): malformed framework files at ``import``, a ``.npy``
header numpy refuses, odd names in ``report`` and ``plot``, a user's model that raises in
``predict``, and names or file contents that would break the one-line promise of every
message. Each case runs in a capped child process (tests/capped.py) and must answer with
exit 2 and one clear line (or succeed, where the input is legal), never a traceback, an
internal error or a line the input forged.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ckptaudit.errors import one_line
from tests.capped import PREFIX, assert_clean_lines, assert_one_error_line, run_capped
from tests.test_hostile_bounds import made, unpredicted_run  # noqa: F401 - `made` is a fixture

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "fixtures" / "runs"


# --------------------------------------------------------------------------- import: malformed framework files


def _hf(tmp: Path, state: str) -> Path:
    src = tmp / "trainer"
    (src / "checkpoint-10").mkdir(parents=True)
    (src / "checkpoint-10" / "trainer_state.json").write_text(state)
    return src


def _entry(**fields: object) -> str:
    return json.dumps({"global_step": 10, "log_history": [{"step": 10, "eval_loss": 0.5, **fields}]})


HF_CASES = [
    ("a-list", "[1, 2]", ["trainer_state.json", "must hold a JSON object"]),
    ("string-epoch", _entry(epoch="one"), ["trainer_state.json", "'epoch' must be a number", "'one'"]),
    ("negative-epoch", _entry(epoch=-4), ["trainer_state.json", "'epoch' must be a number from 0 to 2**63-1", "-4"]),
    ("20-digit-epoch", _entry(epoch=12345678901234567890), ["'epoch' must be a number from 0 to 2**63-1"]),
    ("infinite-epoch", _entry(epoch=1e999).replace("Infinity", "1e999"), ["'epoch' must be a number", "inf"]),
    ("string-step", json.dumps({"global_step": 10, "log_history": [{"step": "a", "eval_loss": 1}]}), ["'step' must be"]),
    ("history-not-a-list", json.dumps({"global_step": 10, "log_history": {"a": 1}}), ["'log_history' must be a list"]),
]


@pytest.mark.parametrize(("state", "fragments"), [c[1:] for c in HF_CASES], ids=[c[0] for c in HF_CASES])
def test_a_malformed_trainer_state_is_one_line_and_no_run(state: str, fragments: list[str], tmp_path: Path) -> None:
    src = _hf(tmp_path, state)
    result = run_capped(["import", "hf", str(src), str(tmp_path / "run")], seconds=60)
    assert_one_error_line(result, *fragments)
    assert not (tmp_path / "run").exists()  # nothing written that `rank` would refuse later


def test_odd_but_harmless_trainer_state_values_are_passed_over(tmp_path: Path) -> None:
    state = json.dumps(
        {
            "global_step": 10,
            "best_metric": 0.5,
            "best_global_step": "zz",
            "best_model_checkpoint": 5,
            "log_history": [{"step": 10, "eval_loss": 0.5, "loss": "x", "epoch": 2.0}, "not an entry"],
        }
    )
    result = run_capped(["import", "hf", str(_hf(tmp_path, state)), str(tmp_path / "run")])
    assert result.exit_code == 0, result.stderr
    meta = json.loads((tmp_path / "run" / "checkpoints" / "checkpoint-10" / "meta.json").read_text())
    assert (meta["epoch"], meta["step"], meta["logged"]) == (2, 10, {"eval_loss": 0.5})


@pytest.mark.parametrize(
    ("log", "fragments"),
    [
        ("epoch,val_loss\ninf,0.3\n", ["metrics.csv", "row 2", "epoch 'inf' is not a whole number"]),
        ("epoch,val_loss\n-4,0.3\n", ["metrics.csv", "row 2", "from 0 to 2**63-1", "-4"]),
        ("epoch,val_loss\n1e30,0.3\n", ["metrics.csv", "row 2", "from 0 to 2**63-1"]),
    ],
    ids=["inf", "negative", "1e30"],
)
def test_a_metrics_csv_epoch_outside_the_format_is_one_line(log: str, fragments: list[str], made: Path, tmp_path: Path) -> None:  # noqa: F811
    src = tmp_path / "lightning"
    shutil.copytree(made / "lightning", src)
    (src / "metrics.csv").write_text(log)
    result = run_capped(["import", "lightning", str(src), str(tmp_path / "run")])
    assert_one_error_line(result, *fragments)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("pattern", "fragments"),
    [
        (r"model_(?P<epoch>[a-z]+)_(?P<n>\d+)\.pt", ["model_epoch_0.pt", "the epoch read from the file name", "'epoch'"]),
        (r"model_(?P<loss>[a-z]+)_(?P<epoch>\d+)\.pt", ["model_epoch_0.pt", "the group 'loss' matched 'epoch'", "not a number"]),
        (r"model_epoch_(?P<epoch>\d)(?P<loss>[a-z]*)\.pt", []),  # an optional group that matched nothing: fine
    ],
    ids=["letters-as-epoch", "letters-as-metric", "empty-optional-group"],
)
def test_an_epoch_pattern_group_that_is_not_a_number_is_one_line(
    pattern: str,
    fragments: list[str],
    made: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    shutil.copytree(made / "weights", tmp_path / "w")
    result = run_capped(["import", "files", str(tmp_path / "w" / "*.pt"), str(tmp_path / "run"), "--epoch-pattern", pattern])
    if not fragments:
        assert result.exit_code == 0, result.stderr
        return
    assert_one_error_line(result, *fragments)
    assert not (tmp_path / "run").exists()


def test_an_epoch_in_a_file_name_beyond_the_format_is_refused_at_import(made: Path, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "w").mkdir()
    shutil.copy(made / "weights" / "model_epoch_0.pt", tmp_path / "w" / "model_epoch_99999999999999999999.pt")
    result = run_capped(["import", "files", str(tmp_path / "w" / "*.pt"), str(tmp_path / "run")])
    assert_one_error_line(result, "model_epoch_99999999999999999999.pt", "from 0 to 2**63-1")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- a .npy header numpy refuses


def test_an_npy_header_over_10000_bytes_is_one_line_without_pickle_advice(tmp_path: Path) -> None:
    run = tmp_path / "fraud"
    shutil.copytree(RUNS / "fraud", run)
    path = run / "checkpoints" / "epoch-0003" / "val.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arrays["output"], version=(2, 0))
    raw = buf.getvalue()
    hlen = int.from_bytes(raw[8:12], "little")
    header = raw[12 : 12 + hlen].rstrip() + b" " * 20_000 + b"\n"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("output.npy", raw[:8] + len(header).to_bytes(4, "little") + header + raw[12 + hlen :])
        for key in ("target",):
            out = io.BytesIO()
            np.lib.format.write_array(out, arrays[key])
            zf.writestr(f"{key}.npy", out.getvalue())
    result = run_capped(["rank", str(run), "-m", "recall"])
    line = assert_one_error_line(result, "epoch-0003/val.npz", "malformed .npy header")
    assert "allow_pickle" not in result.stderr and "pickle" not in line


# --------------------------------------------------------------------------- names in report and plot


def test_a_lone_surrogate_in_class_names_still_writes_the_report(tmp_path: Path) -> None:
    run = tmp_path / "fraud"
    shutil.copytree(RUNS / "fraud", run)
    data = json.loads((run / "run.json").read_text())
    data["classes"] = ["legit", "fr\udcffaud"]
    (run / "run.json").write_text(json.dumps(data))  # written as the JSON escape "\udcff"
    result = run_capped(["report", str(run), "-o", str(tmp_path / "page.html"), "-m", "recall"])
    assert result.exit_code == 0, result.stderr
    assert "internal error" not in result.stderr
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert "fr\ufffdaud" in page


def test_a_run_folder_named_like_mathtext_is_plotted_literally(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    run = tmp_path / "run$\\frac{$"
    shutil.copytree(RUNS / "fraud", run)
    out = tmp_path / "curves.svg"
    result = run_capped(["plot", str(run), "-o", str(out), "-m", "recall"])
    assert result.exit_code == 0, result.stderr
    assert "internal error" not in result.stderr
    # NOTE: SVG text is drawn as glyph paths; matplotlib writes each text shown in a comment.
    assert "run$\\frac{$: ring: chosen" in out.read_text()


# --------------------------------------------------------------------------- user code in predict


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_model_that_raises_fails_each_checkpoint_in_one_line(workers: str, made: Path, tmp_path: Path) -> None:  # noqa: F811
    run = unpredicted_run(made, tmp_path)
    mod = made / "usermod.py"
    result = run_capped(
        ["predict", str(run), "--model", f"{mod}:raising", "--data", f"{mod}:data", "--workers", workers], seconds=120
    )
    lines = assert_clean_lines(result, 3, "the model raised ValueError: the input has the wrong shape")
    assert [line.split(":")[2].strip() for line in lines] == ["epoch-0000", "epoch-0001", "epoch-0002"]
    assert "second line" not in result.stderr
    assert len(result.lines) == 4  # the summary and one line per checkpoint


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(
    ("option", "function", "fragment"),
    [
        ("--model", "broken_builder", "building the model raised RuntimeError: cannot build the model"),
        ("--data", "broken_data", "the function raised OSError: no data here"),
    ],
)
def test_a_user_function_that_raises_is_one_line_naming_it(
    option: str,
    function: str,
    fragment: str,
    workers: str,
    made: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    run = unpredicted_run(made, tmp_path)
    mod = made / "usermod.py"
    specs = {"--model": f"{mod}:model", "--data": f"{mod}:data"}
    specs[option] = f"{mod}:{function}"
    args = ["predict", str(run), "--model", specs["--model"], "--data", specs["--data"], "--workers", workers]
    result = run_capped(args, seconds=120)
    assert_one_error_line(result, option, fragment)


# --------------------------------------------------------------------------- names and contents in messages


def test_one_line_escapes_what_a_terminal_would_act_on() -> None:
    text = "a\nb\r\x1b]0;title\x07\u202e\u2028\udcff\tz é ✓"
    assert one_line(text) == "a\\nb\\r\\x1b]0;title\\x07\\u202e\\u2028\\udcff\\tz é ✓"
    assert one_line(one_line(text)) == one_line(text)  # nothing left to escape


def test_a_folder_named_with_a_newline_and_an_escape_sequence_stays_one_line(tmp_path: Path) -> None:
    name = "run\nckptaudit: done, all good\x1b]0;owned\x07"
    run = tmp_path / name
    shutil.copytree(RUNS / "fraud", run)
    (run / "run.json").write_text("{")
    result = run_capped(["rank", str(run), "-m", "recall"], cwd=tmp_path)
    line = assert_one_error_line(result, "run\\nckptaudit: done, all good\\x1b]0;owned\\x07", "malformed JSON")
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert not any(other.startswith("ckptaudit: done") for other in result.stderr.split("\n")), line


def test_a_lock_file_cannot_forge_a_line(tmp_path: Path) -> None:
    run = tmp_path / "fraud"
    shutil.copytree(RUNS / "fraud", run)
    (run / ".ckptaudit-prune.lock").write_text("elsewhere 1 prune\nckptaudit: prune: done, all good\x1b]0;owned\x07")
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    result = run_capped(["prune", str(run), "-m", "recall", "--yes"], cwd=tmp_path)
    line = assert_one_error_line(result, "another prune holds this run's lock", "elsewhere 1 prune\\nckptaudit: prune: done")
    assert "\x1b" not in result.stderr and line.startswith(PREFIX)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
