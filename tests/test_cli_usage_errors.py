"""Usage errors and install problems as ONE line, worded the same on every admitted typer,
and the guards that keep a typer/click release from changing an exit code (issue 17).

CI runs this file again in the venv with every direct dependency at its lowest admitted
version (.ci/run), where typer words its errors click's way, not pydantic's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import ckptaudit
from ckptaudit.cli import application
from ckptaudit.cli.application import _typed, _version_callback
from ckptaudit.cli.registry import COMMANDS

FRAUD = str(Path(__file__).resolve().parents[1] / "fixtures" / "runs" / "fraud")


def run(*args: str):
    from ckptaudit.cli import app

    return CliRunner().invoke(app, list(args))


def error_line(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args,line",
    [
        (
            ["rank", FRAUD, "-m", "recall", "--format", "yaml"],
            "ckptaudit: error: --format: 'yaml' is not one of 'table', 'json', 'csv', 'markdown' (see 'ckptaudit rank --help')",
        ),
        (
            ["rank", FRAUD, "-m", "recall", "--top", "0"],
            "ckptaudit: error: --top: must be at least 1 (see 'ckptaudit rank --help')",
        ),
        (
            ["rank", FRAUD, "-m", "recall", "--top", "x"],
            "ckptaudit: error: --top: must be a whole number (see 'ckptaudit rank --help')",
        ),
        (
            ["audit", FRAUD, "--fail-on", "bogus"],
            "ckptaudit: error: --fail-on: 'bogus' is not one of 'error', 'warning', 'info', 'never' (see 'ckptaudit audit --help')",
        ),
        (["report", FRAUD, "-m", "recall"], "ckptaudit: error: missing option --output (see 'ckptaudit report --help')"),
        (
            ["plot", FRAUD, "-o", "x.png", "--dpi", "601"],
            "ckptaudit: error: --dpi: must be at most 600 (see 'ckptaudit plot --help')",
        ),
        (
            ["check", FRAUD, "--threshold", "abc"],
            "ckptaudit: error: --threshold: must be a number (see 'ckptaudit check --help')",
        ),
        (["rank"], "ckptaudit: error: missing argument PATHS (see 'ckptaudit rank --help')"),
        (["bogus"], "ckptaudit: error: no such command 'bogus' (see 'ckptaudit --help')"),
        (["--nope"], "ckptaudit: error: no such option --nope (see 'ckptaudit --help')"),
    ],
)
def test_usage_errors_are_one_line_in_one_wording(args, line):
    assert error_line(run(*args)) == line


def test_bare_explain_lists_the_finding_codes():
    from ckptaudit.auditing.rules import CODES

    line = error_line(run("explain"))
    assert line.startswith("ckptaudit: error: missing argument CODE (a finding code: ")
    assert all(code in line for code in CODES) and "accuracy-paradox" in line


def test_a_mistyped_checkpoint_name_suggests_the_real_one():
    line = error_line(run("check", FRAUD, "--metric", "recall", "--chosen", "epoch-11"))
    assert line.endswith("(did you mean 'epoch-0011'?)")
    line = error_line(run("check", FRAUD, "--metric", "recall", "--chosen", "nothing-like-it"))
    assert "did you mean" not in line


def test_a_report_into_a_missing_folder_names_the_folder(tmp_path):
    target = tmp_path / "missing" / "dir" / "r.html"
    line = error_line(run("report", FRAUD, "-m", "recall", "-o", str(target), "--resamples", "100"))
    assert line == f"ckptaudit: error: {target.parent}: no such directory"


def test_a_missing_extra_names_the_extra_to_install(tmp_path, monkeypatch):
    """`import files` on the light install (no torch): the extra, not an internal error."""
    (tmp_path / "model_1.pt").write_bytes(b"not really weights")
    monkeypatch.setitem(sys.modules, "torch", None)  # NOTE: `import torch` now fails as on a torch-free install
    line = error_line(run("import", "files", str(tmp_path / "*.pt"), str(tmp_path / "run"), "--task", "binary"))
    assert line == (
        "ckptaudit: error: this needs torch, which is not installed: install ckptaudit with its [inference] extra "
        '(from the checkout: pip install -e ".[inference]")'
    )


# --------------------------------------------------------------------------- guards


def test_a_flag_typer_parses_wrongly_fails_closed():
    """typer 0.12 with click 8.3+ hands every flag over as the string 'False' (truthy): the
    --version callback printed the version and exited 0 for every command, gate included."""
    with pytest.raises(typer.Exit) as exc:
        _version_callback("False")  # type: ignore[arg-type]
    assert exc.value.exit_code == 2
    _version_callback(False)  # a real bool passes through

    def gate(require_best: bool = False, count: int = 1, name: str | None = None) -> str:
        return "ran"

    checked = _typed(gate)
    assert checked(require_best=True, count=2, name=None) == "ran"
    for bad in ({"require_best": "False"}, {"require_best": None}, {"count": "2"}, {"name": 3}):
        with pytest.raises(typer.Exit) as exc:
            checked(**bad)
        assert exc.value.exit_code == 2


def test_every_command_checks_what_typer_parsed():
    for name in COMMANDS:
        callback = application.load_command(name).callback
        assert any(getattr(f, "checks_types", False) for f in _wrapped(callback)), name


def _wrapped(func):
    while func is not None:
        yield func
        func = getattr(func, "__wrapped__", None)


def test_without_the_typer_shortcut_the_results_are_the_same(monkeypatch):
    """The plain coercion leans on typer's private parts; switched off (as it is on a typer
    of another shape) every command gives the same exit code and message."""
    cases = [
        ["rank", FRAUD, "-m", "recall", "--top", "0"],
        ["rank", FRAUD, "-m", "recall", "--format", "yaml"],
        ["check", FRAUD, "--metric", "recall", "--chosen", "epoch-0011", "--require-best", "--resamples", "200"],
        ["check", FRAUD, "--metric", "recall", "--chosen", "epoch-0009", "--resamples", "200"],
    ]
    shortcut = [(r.exit_code, r.stdout, r.stderr) for r in map(lambda a: run(*a), cases)]
    monkeypatch.setattr(application, "_PLAIN", False)
    public = [(r.exit_code, r.stdout, r.stderr) for r in map(lambda a: run(*a), cases)]
    assert public == shortcut
    assert [code for code, _, _ in public] == [2, 2, 1, 0]


def test_the_shortcut_switches_off_on_a_typer_of_another_shape(monkeypatch):
    core = pytest.importorskip("typer.core")
    if not hasattr(core, "_TyperParameter"):
        assert application._plain_supported() is False
        return
    assert application._plain_supported() is True
    monkeypatch.delattr(core._TyperParameter, "get_runtime_param")
    assert application._plain_supported() is False


def test_dir_lists_the_public_names_only():
    names = dir(ckptaudit)
    assert "Recorder" in names and "rank" in names and "check" in names
    assert not {"Any", "Path", "Sequence", "TYPE_CHECKING", "annotations"} & set(names)
    assert set(names) == set(ckptaudit.__all__)
