"""The house's layout: no import circle between rooms (issue 17: metrics.evaluation and
parallel imported each other). A room is a package under ``ckptaudit`` (``metrics``,
``stats``, ``verdict``, ``gate``, ...) or a top-level module (``ranking``, ``parallel``, ...);
every ``from ... import`` counts, at the top of a module or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ckptaudit"


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "ckptaudit"


def room_imports(package: Path = PACKAGE) -> dict[tuple[str, str], set[str]]:
    """(importing room, imported room) -> the module-level edges that make it."""
    edges: dict[tuple[str, str], set[str]] = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        here = module if parts[-1] == "__init__" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("ckptaudit"):
                continue
            a, b = _room(module), _room(target)
            if a != b and b != "ckptaudit":
                edges.setdefault((a, b), set()).add(f"{module} -> {target}")
    return edges


def test_no_import_circle_between_two_rooms():
    edges = room_imports()
    circles = sorted({tuple(sorted(k)) for k in edges if (k[1], k[0]) in edges})
    assert not circles, [(a, b, sorted(edges[(a, b)]), sorted(edges[(b, a)])) for a, b in circles]


def test_the_evaluation_pass_never_imports_the_pool():
    assert ("metrics", "parallel") not in room_imports()
    assert ("verdict", "gate") not in room_imports()  # the gate reads the verdict, not the reverse
