"""Start-up of the command line (issue 10 §3): `ckptaudit --help` without typer, each verb
importing only its own module, and parameters converted without typer's pydantic models;
each shortcut gives exactly what typer gives."""

from __future__ import annotations

import enum
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ckptaudit.cli import app
from ckptaudit.cli.application import load_command
from ckptaudit.cli.fasthelp import top_help
from ckptaudit.cli.registry import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "fixtures" / "runs"


def _modules_after(args: list[str]) -> set[str]:
    """The modules a fresh `python -m ckptaudit ARGS` has imported when it exits."""
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: sys.stderr.write('MODULES ' + ' '.join(sorted(sys.modules)) + '\\n'))\n"
        f"sys.argv = ['ckptaudit', *{args!r}]\n"
        "import runpy; runpy.run_module('ckptaudit', run_name='__main__')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES "))
    return set(line.split()[1:])


def test_top_level_help_imports_no_typer_and_no_command():
    modules = _modules_after(["--help"])
    assert "typer" not in modules and "numpy" not in modules
    assert not any(
        m.startswith("ckptaudit.cli.") and m not in ("ckptaudit.cli.fasthelp", "ckptaudit.cli.registry") for m in modules
    )


def test_rank_imports_only_what_it_uses():
    modules = _modules_after(["rank", str(RUNS / "fraud"), "-m", "recall", "-f", "json"])
    assert "ckptaudit.ranking" in modules and "ckptaudit.cli.rank" in modules
    unrelated = {
        "pydantic",
        "ckptaudit.cli.audit",
        "ckptaudit.cli.check",
        "ckptaudit.cli.pick",
        "ckptaudit.cli.prune",
        "ckptaudit.cli.report",
        "ckptaudit.cli.inference",
        "ckptaudit.auditing",
        "ckptaudit.gate",
        "ckptaudit.picking",
        "ckptaudit.pruning",
        "ckptaudit.config",
        "ckptaudit.store.weights",
        # (issue 21: a plain rank computes no statistic, and marks no combination on a run without one)
        "ckptaudit.stats.selection",
        "ckptaudit.combining",
    }
    assert not modules & unrelated, modules & unrelated


@pytest.mark.parametrize("width", [50, 58, 60, 61, 66, 70, 77, 78, 79, 80, 100, 200])
@pytest.mark.parametrize("prog", ["ckptaudit", "python -m ckptaudit"])
def test_fast_help_is_typers_help(width: int, prog: str, monkeypatch, capsys):
    # NOTE: not CliRunner, which forces click's width to 80 whatever COLUMNS says.
    monkeypatch.setenv("COLUMNS", str(width))
    app(["--help"], prog_name=prog, standalone_mode=False)
    typers = capsys.readouterr().out
    fast = top_help(max(min(width, 80) - 2, 50), prog)
    if fast is not None:  # None: left to typer
        assert fast == typers
    assert width < 62 or fast is not None  # every usual width is answered fast


def test_the_registry_lists_each_commands_own_help():
    group = typer.main.get_command(app)
    for name, (_, _, _, listed) in COMMANDS.items():
        command = group.commands[name]
        assert command.name == name
        assert (command.help or "").split("\n\n")[0] == listed


def test_version_is_answered_without_typer():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    fast = subprocess.run([sys.executable, "-m", "ckptaudit", "--version"], capture_output=True, text=True, env=env)
    slow = CliRunner().invoke(app, ["--version"])
    assert fast.returncode == 0 and fast.stdout == slow.stdout


def _samples(annotation, info) -> list:
    """Values a user could give for a parameter of this type, valid and not."""
    if annotation is int:
        return ["0", "1", "7", "-3", "100", "99", "20", "600", "601", "007", "1_000", " 5", "+4", "1.5", "x", "", 5, 100]
    if annotation is float:
        return ["0", "1.5", "-2.25", "3", "0.0001", "1e3", "x", "", "1.", ".5", 2.5]
    if annotation is str:
        return ["recall", "", "a b", "ü"]
    if annotation is bool:
        return [True, False]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [m.value for m in annotation] + [next(iter(annotation)), "JSON", "bogus", ""]
    if annotation is Path:
        return [str(RUNS / "fraud"), str(RUNS / "nope"), "relative/path", "-", "", str(RUNS / "fraud" / "run.json")]
    return []


def test_plain_coercion_gives_typers_values_and_errors():
    from ckptaudit.cli import application

    if not application._PLAIN:  # NOTE: a typer without the private shape: typer's own path, nothing to compare
        pytest.skip("this typer has no pydantic coercion; the plain shortcut is off")
    from typer._coercion import build_runtime_param

    checked = 0
    for name in COMMANDS:
        command = load_command(name)
        ctx = command.make_context(name, ["--help"], resilient_parsing=True)
        for param in command.params:
            plain = getattr(param, "_runtime_param", None)
            if plain is None or not hasattr(param, "type_descriptor"):
                continue
            descriptor = param.type_descriptor
            theirs = build_runtime_param(descriptor)
            item = typer._typing.get_args(descriptor.annotation)[0] if descriptor.is_list else descriptor.annotation
            values = _samples(item, descriptor.parameter_info)
            cases = [(v,) for v in values] if descriptor.is_list else values
            if descriptor.is_list:
                cases = [tuple(c) for c in cases] + [(), tuple(values[:2])]
            for value in cases:
                outcomes = []
                for runtime in (plain, theirs):
                    try:
                        outcomes.append(("ok", runtime.coerce(value, param=param, ctx=ctx)))
                    except Exception as exc:  # the same error, worded the same
                        outcomes.append(("error", type(exc).__name__, str(exc)))
                assert outcomes[0] == outcomes[1], (name, param.name, value, outcomes)
                if outcomes[0][0] == "ok":
                    assert type(outcomes[0][1]) is type(outcomes[1][1])
                checked += 1
    assert checked > 100
