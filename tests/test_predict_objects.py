"""`predict`'s model and data (issue 17): a `file.py:FUNCTION` that imports its sibling
modules, and the API taking objects (a factory, the model, a data function, the arrays) as
well as MODULE:FUNCTION strings. Each way must give the recorder's predictions bit for bit."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import inference_models as im  # noqa: E402  (tests/ is on sys.path under pytest)
from typer.testing import CliRunner  # noqa: E402

import ckptaudit  # noqa: E402
from ckptaudit.cli import app  # noqa: E402
from ckptaudit.errors import UsageError  # noqa: E402

MODELS = Path(im.__file__).resolve()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plain")
    im.train_plain(root / "weights", epochs=2, recorder_run=root / "recorded")
    return root / "recorded"


def fresh(recorded: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(recorded, run)
    for npz in run.rglob("val.npz"):
        npz.unlink()
    return run


def same_as_recorded(recorded: Path, run: Path) -> None:
    names = sorted(p.name for p in (recorded / "checkpoints").iterdir())
    assert names
    for name in names:
        with np.load(recorded / "checkpoints" / name / "val.npz") as a, np.load(run / "checkpoints" / name / "val.npz") as b:
            assert np.array_equal(a["output"], b["output"]) and np.array_equal(a["id"], b["id"]), name


def test_a_model_file_imports_its_sibling_modules(recorded, tmp_path):
    glue = tmp_path / "project"
    glue.mkdir()
    (glue / "netparts_for_ckptaudit_test.py").write_text(
        "from torch import nn\n\ndef make():\n    return nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 2))\n"
    )
    (glue / "glue.py").write_text("from netparts_for_ckptaudit_test import make\n\ndef build():\n    return make()\n")
    run = fresh(recorded, tmp_path)
    result = CliRunner().invoke(
        app, ["predict", str(run), "--model", f"{glue / 'glue.py'}:build", "--data", f"{MODELS}:val_data", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    same_as_recorded(recorded, run)


@pytest.mark.parametrize(
    "model,data",
    [
        (im.mlp, im.val_data),  # a factory and a data function
        (im.mlp(), im.val_data()),  # the model object and the arrays
        (f"{MODELS}:mlp", im.val_data),  # a spec string and a data function
    ],
    ids=["functions", "objects", "spec-and-function"],
)
def test_the_api_takes_objects(recorded, tmp_path, model, data):
    run = fresh(recorded, tmp_path)
    before = model.state_dict() if hasattr(model, "state_dict") else None
    report = ckptaudit.predict(run, model, data, device="cpu")
    assert not report.failures and sum(e.action == "predicted" for e in report.entries) == 2
    same_as_recorded(recorded, run)
    if before is not None:  # the caller's model is left as it was (checkpoints load into a copy)
        after = model.state_dict()
        assert all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in before)


def test_an_unpicklable_model_with_workers_is_a_clear_error(recorded, tmp_path):
    run = fresh(recorded, tmp_path)
    with pytest.raises(UsageError, match="cannot be sent to other processes"):
        ckptaudit.predict(run, lambda: im.mlp(), im.val_data, device="cpu", workers=2)
