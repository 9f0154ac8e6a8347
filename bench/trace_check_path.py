"""Follow the run's path through `ckptaudit check` and count package transitions.

Every Python function of ckptaudit is attributed to its package (the first name below
``ckptaudit``: cli, gate, verdict, store, metrics, stats, auditing, parallel, ...). Control
*moves* when the innermost ckptaudit frame changes package (a call into another package, or
the return to it); a *re-entry* is a move into a package that control had already left.
``--depth D`` follows only the ckptaudit frames at most D deep (the CLI command is depth 1):
the orchestration, without each checkpoint's loop inside the evaluation pass. Prints, per
depth, the moves, the re-entries and how often each package was entered::

    python bench/trace_check_path.py fixtures/runs/fraud --metric recall
"""

from __future__ import annotations

import sys
from collections import Counter

DEPTHS = (4, 5, 6, 8, None)


def package(module: str | None) -> str | None:
    """The ckptaudit package of ``module`` (None: not ckptaudit's)."""
    if not module or not module.startswith("ckptaudit"):
        return None
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "ckptaudit"


def trace(argv: list[str], depth: int | None) -> tuple[int, int, Counter[str]]:
    """(moves, re-entries, entries per package) of one `check` run, following frames at
    most ``depth`` ckptaudit frames deep (None: all)."""
    from typer.main import get_command

    from ckptaudit.cli import app

    command = get_command(app)
    stack: list[str | None] = []  # one entry per frame: its package, None when not ckptaudit's
    entered: Counter[str] = Counter()
    left: set[str] = set()
    state: dict[str, object] = {"here": None, "moves": 0, "reentries": 0}
    started = [False]

    def visible() -> str | None:
        deep = 0
        last = None
        for pkg in stack:
            if pkg is None or pkg == "cli" and not started[0]:
                continue
            deep += 1
            if depth is not None and deep > depth:
                break
            last = pkg
        return last

    def move() -> None:
        to = visible()
        here = state["here"]
        if to is None or to == here:
            return
        if here is not None:
            state["moves"] += 1  # type: ignore[operator]
            left.add(here)  # type: ignore[arg-type]
        if to in left:
            state["reentries"] += 1  # type: ignore[operator]
        entered[to] += 1
        state["here"] = to

    def profile(frame, event, arg):  # noqa: ANN001
        if event == "call":
            pkg = package(frame.f_globals.get("__name__"))
            if pkg == "cli" and frame.f_code.co_name == "check":
                started[0] = True
            stack.append(pkg if started[0] else None)
            move()
        elif event == "return" and stack:
            stack.pop()
            move()

    if depth != 0:
        sys.setprofile(profile)
    try:
        command.main(["check", *argv], standalone_mode=False, prog_name="ckptaudit")
    except SystemExit:
        pass
    except Exception as exc:  # noqa: BLE001 - the gate's exit 1 arrives as an exception here
        if type(exc).__name__ != "Exit":
            print(type(exc).__name__, exc, file=sys.stderr)
    finally:
        sys.setprofile(None)
    return state["moves"], state["reentries"], entered  # type: ignore[return-value]


def main(argv: list[str]) -> None:
    import contextlib
    import io

    from ckptaudit.cli import app  # noqa: F401 - start-up is not the path

    # NOTE: one untraced run first: the lazy imports of the first run would count their
    # modules' top-level code as moves into those packages.
    with contextlib.redirect_stdout(io.StringIO()):
        trace(argv, 0)
    for depth in (1, 2, 3, *DEPTHS):
        with contextlib.redirect_stdout(io.StringIO()):
            moves, reentries, entered = trace(argv, depth)
        label = "all frames" if depth is None else f"depth <= {depth}"
        print(
            f"{label:>12}: {moves:5d} moves between packages, {reentries:5d} re-entries; entered: "
            + ", ".join(f"{p} {n}" for p, n in entered.most_common())
        )


if __name__ == "__main__":
    main(sys.argv[1:])
