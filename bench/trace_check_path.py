"""Follow the run's path through `ckptaudit check` and count package transitions.

Every Python call inside ckptaudit is attributed to its package (the first part below
``ckptaudit``: gate, store, metrics, stats, parallel, ...). A *transition* is a call or
return that moves control from one package to another; a *re-entry* is a move into a
package that control had already left once before. Prints both, and the packages by
how often they were entered::

    python bench/trace_check_path.py fixtures/runs/fraud --metric recall
"""

from __future__ import annotations

import sys
from collections import Counter


def package(module: str | None) -> str | None:
    if not module or not module.startswith("ckptaudit"):
        return None
    parts = module.split(".")
    if len(parts) == 1:
        return "ckptaudit"
    return parts[1]


def main(argv: list[str]) -> None:
    from ckptaudit.cli import app  # noqa: F401 - import before tracing: start-up is not the path

    stack: list[str] = []
    current: list[str | None] = [None]
    entered: Counter[str] = Counter()
    left: set[str] = set()
    counts = {"transitions": 0, "reentries": 0}
    edges: set[tuple[str, str]] = set()

    def move(to: str | None) -> None:
        here = current[0]
        if to is None or to == here:
            return
        if here is not None:
            counts["transitions"] += 1
            edges.add((here, to))
            left.add(here)
        if to in left:
            counts["reentries"] += 1
        entered[to] += 1
        current[0] = to

    def profile(frame, event, arg):  # noqa: ANN001
        if event == "call":
            pkg = package(frame.f_globals.get("__name__"))
            stack.append(pkg or (stack[-1] if stack else None))  # type: ignore[arg-type]
            move(pkg)
        elif event == "return":
            if stack:
                stack.pop()
            # back in the caller's package (a non-ckptaudit caller keeps the last one)
            back = next((p for p in reversed(stack) if p is not None), None)
            move(back)

    from typer.main import get_command

    from ckptaudit.cli import app as cli_app

    command = get_command(cli_app)
    sys.setprofile(profile)
    try:
        command.main(["check", *argv], standalone_mode=False)
    except SystemExit:
        pass
    except Exception as exc:  # noqa: BLE001 - the gate's exit 1 arrives as typer.Exit
        print(type(exc).__name__, exc, file=sys.stderr)
    finally:
        sys.setprofile(None)
    print(f"package transitions: {counts['transitions']}; re-entries into a package already left: {counts['reentries']}")
    print(f"distinct package-to-package edges: {len(edges)}: " + ", ".join(f"{a}->{b}" for a, b in sorted(edges)))
    print("entered: " + ", ".join(f"{p} {n}" for p, n in entered.most_common()))


if __name__ == "__main__":
    main(sys.argv[1:])
