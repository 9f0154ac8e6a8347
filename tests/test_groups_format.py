"""Group columns in the run format: written by the recorder and predict, read and checked by the reader."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ckptaudit import Recorder
from ckptaudit.cli import app
from ckptaudit.errors import RunFormatError
from ckptaudit.inference.prediction_files import write_split
from ckptaudit.inference.predictor import as_predict_data
from ckptaudit.store.reader import read_predictions, read_run


def _record(tmp_path, **groups):
    rng = np.random.default_rng(0)
    rec = Recorder(tmp_path / "run", task="binary", output="probability")
    y = rng.integers(0, 2, 40)
    rec.save(0, val_target=y, val_output=rng.random(40), train_target=y, train_output=rng.random(40), **groups)
    return tmp_path / "run"


def test_recorder_writes_group_columns_the_reader_returns(tmp_path):
    place = np.array(["land", "water"] * 20)
    site = np.arange(40) % 3
    path = _record(tmp_path, val_groups={"group": place, "site": site}, train_groups=place.tolist())
    run = read_run(path)
    val = read_predictions(run, run.checkpoints[0])
    assert sorted(val.groups) == ["group", "group:site"]
    assert val.groups["group"].tolist() == place.tolist() and val.groups["group:site"].tolist() == site.tolist()
    train = read_predictions(run, run.checkpoints[0], "train")
    assert train.groups["group"].tolist() == place.tolist()  # a list of Python strings is stored as strings


def test_a_file_without_groups_reads_none(tmp_path):
    run = read_run(_record(tmp_path))
    assert read_predictions(run, run.checkpoints[0]).groups is None


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        (np.linspace(0, 1, 40), "must hold integers or strings"),
        (np.arange(39), "must be (N,) with N = 40"),
        (np.zeros((40, 2), dtype=int), "must be (N,) with N = 40"),
    ],
)
def test_recorder_refuses_bad_groups_and_writes_nothing(tmp_path, groups, message):
    with pytest.raises(RunFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _record(tmp_path, val_groups=groups)
    assert not any((tmp_path / "run" / "checkpoints").iterdir())


def test_a_bad_group_column_on_disk_is_a_one_line_exit_2(tmp_path):
    run = _record(tmp_path)
    npz = run / "checkpoints" / "epoch-0000" / "val.npz"
    with np.load(npz) as f:
        arrays = dict(f)
    np.savez(npz, **arrays, **{"group:site": np.linspace(0, 1, 40)})
    result = CliRunner().invoke(app, ["rank", str(run), "--metric", "accuracy"])
    assert result.exit_code == 2, result.output
    assert "'group:site' must hold integers or strings" in result.output
    assert "Traceback" not in result.output


def test_predict_data_dict_may_return_groups(tmp_path):
    x = np.random.default_rng(1).normal(size=(30, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    data = as_predict_data({"inputs": x, "target": y, "groups": {"site": np.arange(30) % 2}})
    plain = as_predict_data({"inputs": x, "target": y})
    assert data.fingerprint != plain.fingerprint  # a new grouping rewrites the file
    (tmp_path / "run" / "checkpoints" / "epoch-0000").mkdir(parents=True)
    (tmp_path / "run" / "run.json").write_text(json.dumps({"format": "ckptaudit/1", "task": "binary", "output": "probability"}))
    (tmp_path / "run" / "checkpoints" / "epoch-0000" / "meta.json").write_text('{"epoch": 0}')
    write_split(tmp_path / "run" / "checkpoints" / "epoch-0000", "val", data, np.full(30, 0.5))
    run = read_run(tmp_path / "run")
    assert read_predictions(run, run.checkpoints[0]).groups["group:site"].tolist() == (np.arange(30) % 2).tolist()


def test_group_columns_that_change_between_checkpoints_are_a_changed_validation_set(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "run.json").write_text(json.dumps({"format": "ckptaudit/1", "task": "binary", "output": "probability"}))
    y = rng.integers(0, 2, 40)
    for epoch, g in enumerate((np.arange(40) % 2, np.arange(40) % 3)):
        ckpt = tmp_path / "run" / "checkpoints" / f"epoch-{epoch:04d}"
        ckpt.mkdir()
        (ckpt / "meta.json").write_text(json.dumps({"epoch": epoch}))
        np.savez(ckpt / "val.npz", target=y, output=rng.random(40), group=g)
    result = CliRunner().invoke(app, ["rank", str(tmp_path / "run"), "--metric", "worst_group(accuracy)"])
    assert result.exit_code == 2 and "group columns differ from epoch 0" in result.output
