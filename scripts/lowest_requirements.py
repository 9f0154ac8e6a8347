"""Print ``name==lower`` for every direct dependency in pyproject.toml, at its lowest admitted version.

pip has no lowest-version resolution, so CI installs with these pins as constraints
(``pip install -c lowest.txt -e .``): every direct dependency at the lower bound pyproject
names, everything they pull in at whatever the registry resolves (typer's click at its
newest, for instance). The CLI's tests run there (.ci/run), so a lower bound is only as low
as a tested install.

    python scripts/lowest_requirements.py                # [project] dependencies
    python scripts/lowest_requirements.py --extra plot   # and an extra's (repeatable)

Every requirement must have a ``>=`` lower bound (a dependency without one has no lowest
version to test, and the script says so and exits 2); markers are evaluated for this
interpreter (``python_version`` and ``sys_platform``, the only ones pyproject uses).
"""

from __future__ import annotations

import argparse
import operator
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef,import-not-found]

ROOT = Path(__file__).resolve().parents[1]
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(?:;\s*(.+))?$")
_MARKER = re.compile(r"^\s*(python_version|sys_platform)\s*(==|!=|<=|>=|<|>)\s*['\"]([^'\"]+)['\"]\s*$")
_OPS = {"==": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def marker_applies(marker: str | None) -> bool:
    """Whether ``marker`` (``python_version < '3.11'`` and the like, joined by ``and``) holds here."""
    if not marker:
        return True
    for clause in re.split(r"\s+and\s+", marker.strip()):
        m = _MARKER.match(clause)
        if m is None:
            raise SystemExit(f"lowest_requirements: cannot evaluate the marker {marker!r}")
        name, op, value = m.groups()
        holds = _OPS[op](sys.version_info[:2], _version(value)) if name == "python_version" else _OPS[op](sys.platform, value)
        if not holds:
            return False
    return True


def lowest_pins(requirements: list[str]) -> list[str]:
    """``name==lower`` for each requirement that applies here, in the given order."""
    pins = []
    for requirement in requirements:
        m = _REQUIREMENT.match(requirement)
        if m is None:
            raise SystemExit(f"lowest_requirements: cannot read the requirement {requirement!r}")
        name, extras, specifiers, marker = m.groups()
        if not marker_applies(marker):
            continue
        if name.lower() == "ckptaudit":  # a self-reference (ckptaudit[inference]) adds that extra's own
            continue
        lower = [s.strip()[2:].strip() for s in specifiers.split(",") if s.strip().startswith(">=")]
        if len(lower) != 1:
            raise SystemExit(f"lowest_requirements: {requirement!r} has no single >= lower bound to test")
        pins.append(f"{name}{extras or ''}=={lower[0]}")
    return pins


def requirements_of(project: dict, extras: list[str]) -> list[str]:
    """The [project] dependencies and those of ``extras`` (following ``ckptaudit[...]`` self-references)."""
    optional = project.get("optional-dependencies", {})
    found = list(project.get("dependencies", []))
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop(0)
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"lowest_requirements: pyproject has no extra {extra!r}")
        seen.add(extra)
        for requirement in optional[extra]:
            m = re.match(r"^\s*ckptaudit\[([^\]]+)\]", requirement)
            if m:
                todo.extend(e.strip() for e in m.group(1).split(","))
            elif requirement not in found:
                found.append(requirement)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extra", action="append", default=[], help="also pin this extra's dependencies (repeatable)")
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    args = parser.parse_args(argv)
    project = tomllib.loads(args.pyproject.read_text(encoding="utf-8"))["project"]
    sys.stdout.write("".join(f"{pin}\n" for pin in lowest_pins(requirements_of(project, args.extra))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
