"""scripts/lowest_requirements.py: the pins CI's lowest-versions install uses (issue 17 §4)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import lowest_requirements as lr  # noqa: E402


def test_every_direct_dependency_is_pinned_at_its_lower_bound():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lowest_requirements.py")], capture_output=True, text=True, check=True
    ).stdout
    pins = dict(line.split("==") for line in out.splitlines())
    project = lr.tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {
        lr._REQUIREMENT.match(r).group(1) for r in project["dependencies"] if lr.marker_applies(lr._REQUIREMENT.match(r).group(4))
    }
    assert set(pins) == names and {"numpy", "pandas", "scikit-learn", "typer", "tabulate", "threadpoolctl"} <= names
    assert pins["typer"] == "0.18"  # the lowest typer whose flags and required options parse on the newest click


def test_markers_and_extras():
    assert lr.lowest_pins(["tomli>=2.0; python_version < '3.11'", "numpy>=1.24,<3"]) == (
        ["tomli==2.0", "numpy==1.24"] if sys.version_info < (3, 11) else ["numpy==1.24"]
    )
    project = {"dependencies": ["a>=1"], "optional-dependencies": {"x": ["b>=2"], "y": ["ckptaudit[x]", "c>=3"]}}
    assert lr.lowest_pins(lr.requirements_of(project, ["y"])) == ["a==1", "c==3", "b==2"]


@pytest.mark.parametrize("requirement", ["numpy", "numpy<3", "numpy>=1,>=2", "numpy>=1; os_name == 'nt'"])
def test_a_requirement_without_one_testable_lower_bound_is_refused(requirement):
    with pytest.raises(SystemExit):
        lr.lowest_pins([requirement])
