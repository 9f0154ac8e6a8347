"""Every exit-code path of `ckptaudit check`, through the INSTALLED console script (issue 17 §4).

The in-process runner skips what a CI job runs: the console-script entry point, the start-up
fast path and whatever typer/click the environment resolved. These tests run the
`ckptaudit` script of the interpreter running the tests (CI runs them again in a venv with
every direct dependency at its lowest admitted version: .ci/run, scripts/lowest_requirements.py),
so a typer/click pair that parses the command line wrongly cannot make the gate pass.
0 pass, 1 a rule failed (each rule on its own), 2 usage error or unreadable input (one line).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gate_cases import ONE_RULE_FAILURES  # noqa: E402  (tests/ is on sys.path under pytest)

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "fixtures" / "runs"


def console_script() -> str:
    """The `ckptaudit` script installed beside this interpreter (pip install -e .)."""
    found = shutil.which("ckptaudit", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"no ckptaudit console script beside {sys.executable}: install the project (pip install -e .)")
    return found


def ckptaudit(*args: object) -> subprocess.CompletedProcess[str]:
    # NOTE: PYTHONPATH makes the script import this checkout whatever the venv installed
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    env.pop("CKPTAUDIT_DEBUG", None)
    return subprocess.run(
        [console_script(), *map(str, args)], capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL
    )


def failing_rules(proc: subprocess.CompletedProcess[str]) -> set[str]:
    doc = json.loads(proc.stdout)
    return {rule["name"] for rule in doc["rules"] if not rule["passed"]}


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ckptaudit: error: "), proc.stderr
    assert "Traceback" not in proc.stderr and "Usage:" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_the_installed_script_prints_the_version_and_help():
    proc = ckptaudit("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("ckptaudit ")
    proc = ckptaudit("check", "--help")
    assert proc.returncode == 0 and "--require-best" in proc.stdout


@pytest.mark.parametrize(
    "run,args",
    [
        ("fraud", ["--metric", "recall", "--chosen", "epoch-0009"]),
        ("digits", ["--metric", "val_loss"]),
    ],
)
def test_check_passes_with_exit_0(run, args):
    proc = ckptaudit("check", RUNS / run, *args, "--resamples", "200", "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["passed"] is True and failing_rules(proc) == set()


def test_a_wrong_pick_exits_1_with_require_best():
    """The issue's reproducer: on typer 0.12 with click 8.3+ this printed the version, exit 0."""
    proc = ckptaudit("check", RUNS / "fraud", "--metric", "recall", "--chosen", "epoch-0011", "--require-best")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL chosen-is-best" in proc.stdout and "epoch-0009 should have been chosen" in proc.stdout


@pytest.mark.parametrize(
    "run,args,failing",
    ONE_RULE_FAILURES,
)
def test_each_failing_rule_exits_1(run, args, failing):
    proc = ckptaudit("check", RUNS / run, *args, "--resamples", "200", "--format", "json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert failing_rules(proc) == {failing}


def test_no_chosen_checkpoint_fails_unless_allowed(tmp_path):
    run = tmp_path / "fraud"
    shutil.copytree(RUNS / "fraud", run)
    doc = json.loads((run / "run.json").read_text())
    doc.pop("chosen", None)
    (run / "run.json").write_text(json.dumps(doc))
    args = ("check", run, "--metric", "recall", "--resamples", "200", "--fail-on", "never")
    proc = ckptaudit(*args)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    proc = ckptaudit(*args, "--allow-unchosen", "--format", "json")
    assert "chosen-is-best" not in failing_rules(proc)


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--metric", "recall", "--format", "yaml"], ["--format: 'yaml' is not one of", "see 'ckptaudit check --help'"]),
        (["--metric", "recall", "--threshold", "abc"], ["--threshold: must be a number"]),
        (["--metric", "recall", "--resamples", "1.5"], ["--resamples: must be a whole number"]),
        (["--metric", "recall", "--fail-on", "bogus"], ["--fail-on: 'bogus' is not one of 'error', 'warning', 'info', 'never'"]),
        (["--metric", "recall", "--no-such-option"], ["no such option --no-such-option"]),
        (["--metric", "recall", "--chosen", "epoch-11"], ["neither a checkpoint", "did you mean 'epoch-0011'?"]),
        (["--metric", "recall", "--resamples", "5"], ["resamples"]),
        (["--metric", "recall", "--fail-code", "nonsense"], ["unknown finding code nonsense"]),
        ([], ["no metric"]),
    ],
)
def test_usage_errors_exit_2_in_one_line(args, needles):
    proc = ckptaudit("check", RUNS / "fraud", *args)
    assert_one_line_error(proc, *needles)


def test_a_missing_run_argument_exits_2_in_one_line():
    assert_one_line_error(ckptaudit("check"), "missing argument PATH", "see 'ckptaudit check --help'")


def test_unreadable_input_exits_2_in_one_line(tmp_path):
    assert_one_line_error(ckptaudit("check", tmp_path / "nope", "--metric", "recall"), "no such file or folder")
    run = tmp_path / "broken"
    shutil.copytree(RUNS / "fraud", run)
    (run / "run.json").write_text("{not json")
    assert_one_line_error(ckptaudit("check", run, "--metric", "recall"), "run.json")
    config = tmp_path / "ckptaudit.toml"
    config.write_text("metric = [unclosed\n")
    assert_one_line_error(ckptaudit("check", RUNS / "fraud", "--config", config), "ckptaudit.toml")
