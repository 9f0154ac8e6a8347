"""The README's examples are the tool's real output: every ``$ ckptaudit ...`` line of a
``console`` block is run, and each line shown after it must be a line of the real output
(``...`` stands for the rest of a line). The prose about the fraud run says what `check`
says (issue 17: the README said epoch 9 was better "beyond the noise" while check and the
report said "within the noise")."""

from __future__ import annotations

import re
import shlex

import pytest
from typer.testing import CliRunner

from ckptaudit.cli import app
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _examples() -> list[tuple[str, list[str]]]:
    """(command, expected lines) of every command in the README's console blocks."""
    out: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", README, re.DOTALL):
        for line in block.splitlines():
            if line.startswith("$ "):
                out.append((line[2:], []))
            elif line.strip() and out:
                out[-1][1].append(line)
    return out


def _matches(expected: str, actual: str) -> bool:
    want = " ".join(expected.split())
    got = " ".join(actual.split())
    if want.endswith("..."):
        return got.startswith(want[:-3].rstrip())
    return got == want


EXAMPLES = _examples()


def test_the_readme_has_console_examples():
    assert len(EXAMPLES) >= 3 and all(lines for _, lines in EXAMPLES)


@pytest.mark.parametrize(("command", "expected"), EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_a_readme_example_is_the_real_output(command, expected, monkeypatch):
    monkeypatch.chdir(ROOT)
    argv = shlex.split(command)
    assert argv[0] == "ckptaudit"
    result = CliRunner().invoke(app, argv[1:])
    assert result.exit_code in (0, 1), result.output
    lines = result.stdout.splitlines()
    for want in expected:
        assert any(_matches(want, got) for got in lines), f"README shows {want!r}; the tool prints:\n{result.stdout}"


def test_the_readme_prose_on_the_fraud_run_says_what_check_says():
    """Whatever the statistics decide, the README's sentence must agree with `check`."""
    result = CliRunner().invoke(app, ["check", str(ROOT / "fixtures/runs/fraud"), "--metric", "recall", "-f", "json"])
    import json

    best = json.loads(result.stdout)["rules"][0]
    tied = best["details"]["chosen_in_tied_best"]
    prose = " ".join(README.split())
    if tied:
        assert "within the noise" in prose and "epoch 11 cannot be told apart from the best" in prose
        assert "beyond the noise" not in prose
    else:
        assert "beyond the noise" in prose and "within the noise" not in prose
    import numpy as np

    val = np.load(ROOT / "fixtures/runs/fraud/checkpoints/epoch-0001/val.npz")
    assert f"{int(val['target'].sum())} fraud rows among the {val['target'].size:,} validation rows" in prose
