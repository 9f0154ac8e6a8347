"""The integrations import their framework only in their own module: `import ckptaudit`, the
CLI and the shared helpers stay light, and a missing framework breaks only its own module."""

from __future__ import annotations

import subprocess
import sys

FRAMEWORKS = ("torch", "lightning", "pytorch_lightning", "transformers", "accelerate", "keras")


def test_cli_and_the_shared_helpers_import_no_framework():
    code = f"import sys, ckptaudit, ckptaudit.cli, ckptaudit.integrations; print([m for m in {FRAMEWORKS!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
