"""The command line's allocator settings (ckptaudit.allocator): set once, the user's own
settings win, and they do what they are for (a curve's freed temporaries are reused, not
faulted in again)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

_FAULTS = r"""
import resource
import numpy as np
from ckptaudit.allocator import keep_freed_memory
from ckptaudit.metrics.operating import curve
print(keep_freed_memory())
rng = np.random.default_rng(0)
y = rng.random(100_000) < 0.05
s = (rng.normal(size=100_000) + 2 * y).astype(np.float32)
for _ in range(3):
    curve(y, s)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    curve(y, s)  # a checkpoint's curve: temporaries of 0.1-0.8 MB, freed at once
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _clean_env() -> dict[str, str]:
    """This process's environment without any allocator setting (the user's or ours)."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "CKPTAUDIT_MALLOC")
    }


def _run(env: dict[str, str]) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", _FAULTS], env={**_clean_env(), **env}, capture_output=True, text=True, check=True)
    flag, faults = out.stdout.split()
    return flag == "True", int(faults)


def test_freed_temporaries_are_reused_not_faulted_in_again():
    kept, faults_kept = _run({})
    system, faults_system = _run({"CKPTAUDIT_MALLOC": "system"})
    assert kept and not system
    # glibc's own thresholds give the freed blocks back: each curve faults its pages in again
    assert faults_system > 50 * 200, faults_system
    assert faults_kept < faults_system / 10, (faults_kept, faults_system)


def test_the_users_own_malloc_settings_win():
    kept, _ = _run({"MALLOC_MMAP_THRESHOLD_": "131072"})
    assert not kept


def test_the_command_line_sets_it_and_the_library_does_not():
    probe = (
        "import ckptaudit, ckptaudit.allocator as a, sys\n"
        "print(a._done)\n"
        "sys.argv = ['ckptaudit', 'metrics']\n"
        "from ckptaudit.cli import run\n"
        "try:\n    run()\nexcept SystemExit:\n    pass\n"
        "print(a._done, file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], env=_clean_env(), capture_output=True, text=True)
    assert out.stdout.splitlines()[0] == "False"
    assert out.stderr.strip().splitlines()[-1] == "True"
