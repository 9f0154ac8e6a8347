"""Every command has help text and is documented in the README; exit codes are documented."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ckptaudit.auditing.rules import CODES
from ckptaudit.cli import app
from ckptaudit.exitcodes import ExitCode
from ckptaudit.metrics.spec import BUILTINS
from ckptaudit.render import Format

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
COMMANDS = [c.name or c.callback.__name__ for c in typer.main.get_command(app).commands.values()]


def test_commands_are_the_expected_set():
    assert set(COMMANDS) == {
        "rank", "audit", "explain", "pick", "prune", "unpin", "check", "metrics", "report", "plot", "import", "predict",
        "combine", "replay",
    }  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_and_a_readme_entry(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert len(result.stdout.strip().splitlines()) > 2
    assert f"ckptaudit {command}" in README


def test_readme_opens_with_the_two_commands():
    block = re.search(r"```bash\n(.*?)```", README, re.DOTALL).group(1).strip().splitlines()
    assert block[0].startswith("pip install -e . && ckptaudit rank fixtures/runs")
    assert block[1] == 'pip install -c constraints.txt torch==2.13.0 -e ".[dev]" && python -m pytest -q'
    # CI runs the same two commands (the second split around its torch check).
    ci = (ROOT / ".ci" / "run").read_text()
    assert block[0] in ci
    for part in block[1].split(" && "):
        assert part in ci
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text()


def test_exit_codes_and_codes_are_documented():
    for code in ExitCode:
        assert f"| {int(code)} |" in README
    for code in CODES:
        assert f"`{code}`" in README
    metrics_doc = (ROOT / "docs" / "metrics.md").read_text()
    for name in BUILTINS:
        assert name in metrics_doc


def test_every_renderer_module_exists():
    from importlib import import_module

    for fmt in Format:
        assert callable(import_module(f"ckptaudit.render.{fmt.value}_format").render)


def test_cli_start_does_not_import_heavy_modules():
    code = "import sys, ckptaudit.cli; heavy = [m for m in ('torch', 'pandas', 'sklearn') if m in sys.modules]; print(heavy)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_library_has_the_same_verbs_as_the_cli(runs_dir):
    import ckptaudit

    assert ckptaudit.rank(runs_dir / "fraud", "recall").iloc[0]["checkpoint"] == "epoch-0009"
    assert {f.code for f in ckptaudit.audit(runs_dir / "fraud", resamples=200).findings} >= {"accuracy-paradox"}
    assert ckptaudit.pick(runs_dir / "fraud", "recall", resamples=200)[0].checkpoint.name == "epoch-0009"
    plans = ckptaudit.prune(runs_dir / "fraud", "recall", keep=2)
    assert not plans[0].executed and plans[0].reclaimed > 0
    assert not ckptaudit.check(runs_dir / "fraud", "recall", resamples=200).passed
    assert ckptaudit.check(runs_dir / "fraud", "recall", chosen="epoch-0009", resamples=200).passed
