"""What the install instructions and the optional integrations say (issue 17, issue 19 item 14).

ckptaudit is not on PyPI, so `pip install "ckptaudit[lightning]"` cannot work; and
constraints.txt pins torch's version, not its build (from PyPI torch==2.13.0 is the CUDA
build), so the docs must say where the CPU build comes from."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = {name: (ROOT / name).read_text(encoding="utf-8") for name in ("README.md", "docs/integrations.md", "constraints.txt")}


@pytest.mark.parametrize("name", ["README.md", "docs/integrations.md"])
def test_no_install_from_a_registry_that_does_not_have_ckptaudit(name):
    text = DOCS[name]
    assert not re.search(r"pip install[^\n`]*[\"' ]ckptaudit\[", text), "ckptaudit is not on PyPI"
    assert '-e ".[lightning]"' in text and "ckptaudit-0.1.0-py3-none-any.whl[lightning]" in text


@pytest.mark.parametrize("name", ["README.md", "docs/integrations.md", "constraints.txt"])
def test_the_cpu_build_comes_from_pytorchs_cpu_index(name):
    text = DOCS[name]
    assert "--index-url https://download.pytorch.org/whl/cpu" in text
    assert not re.search(r"so that no install pulls a multi-GB CUDA build", text)


def test_the_docs_say_the_tests_need_no_gpu():
    assert "tests need no GPU" in DOCS["README.md"] and "need no GPU" in DOCS["docs/integrations.md"]


def test_keras_without_a_backend_says_to_set_keras_backend(tmp_path):
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed")
    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("tensorflow is installed: Keras' default backend loads")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(KERAS_HOME=str(tmp_path), PYTHONPATH=str(ROOT))  # NOTE: no keras.json: Keras' default, tensorflow
    proc = subprocess.run(
        [sys.executable, "-c", "import ckptaudit.integrations.keras"], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:") and "set KERAS_BACKEND=torch" in last, last
