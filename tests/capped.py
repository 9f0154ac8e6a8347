"""Running ckptaudit in a child process capped in wall time and address space.

For inputs that could hang a command (a FIFO, an endless file, an unreachable cluster, a
dead worker) or exhaust memory (a sparse file of gigabytes, a billion bins): a regression
then fails one test, quickly, instead of hanging or killing the suite. The child runs in
its own session, so a timeout kills its workers too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "ckptaudit: error: "


@dataclass(frozen=True)
class Capped:
    """What the child did: exit code, output, and whether it was killed at the deadline."""

    args: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool

    @property
    def lines(self) -> list[str]:
        """The non-empty lines of stderr."""
        return [line for line in self.stderr.splitlines() if line.strip()]


def _limits(memory: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))


def run_capped(
    args: list[str],
    *,
    cwd: Path | None = None,
    seconds: float = 60,
    memory: int = 3 << 30,
    env: dict[str, str] | None = None,
    code: str | None = None,
) -> Capped:
    """``python -m ckptaudit ARGS`` (or ``python -c CODE ARGS``) under a deadline of
    ``seconds`` and an address-space cap of ``memory`` bytes, with this checkout's ckptaudit."""
    command = [sys.executable, "-c", code, *args] if code is not None else [sys.executable, "-m", "ckptaudit", *args]
    child_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    child_env.pop("CKPTAUDIT_DEBUG", None)
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="backslashreplace",
        preexec_fn=lambda: _limits(memory),
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=seconds)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        timed_out = True
    return Capped(tuple(args), proc.returncode, out, err, timed_out)


def assert_one_error_line(result: Capped, *fragments: str) -> str:
    """Exit 2 within the deadline, exactly one line on stderr (``ckptaudit: error: ...``),
    no traceback and no internal error; each fragment in that line. Returns the line."""
    assert not result.timed_out, f"ckptaudit {' '.join(result.args)} did not finish (a hang?)\n{result.stderr[-2000:]}"
    assert result.exit_code == 2, (result.exit_code, result.stderr[-2000:])
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr[-3000:]
    assert len(result.lines) == 1, result.lines[:10]
    line = result.lines[0]
    assert line.startswith(PREFIX), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def assert_clean_lines(result: Capped, errors: int, *fragments: str) -> list[str]:
    """Exit 2 within the deadline, no traceback, no internal error, no line on stderr that
    is neither an error nor the command's own summary, and ``errors`` error lines, each
    holding every fragment. Returns the error lines."""
    assert not result.timed_out, f"ckptaudit {' '.join(result.args)} did not finish (a hang?)\n{result.stderr[-2000:]}"
    assert result.exit_code == 2, (result.exit_code, result.stderr[-2000:])
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr[-3000:]
    found = [line for line in result.lines if line.startswith(PREFIX)]
    assert len(found) == errors, result.lines
    for line in found:
        for fragment in fragments:
            assert fragment in line, (fragment, line)
    return found
