"""The recorder writes the run format from a real (tiny) torch training loop, atomically."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from ckptaudit import Recorder
from ckptaudit.errors import UsageError
from ckptaudit.ranking import rank_checkpoints
from ckptaudit.recorder import hash_rows
from ckptaudit.runs import read_predictions, read_run


def _train_tiny(tmp_path, epochs=3, **save_kwargs):
    torch.manual_seed(0)
    x = torch.randn(200, 5)
    y = (x[:, 0] + 0.3 * torch.randn(200) > 0).long()
    model = nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    rec = Recorder(
        tmp_path / "run", task="binary", output="logit", classes=["no", "yes"], selected_by={"metric": "val_loss", "mode": "min"}
    )
    for epoch in range(epochs):
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(x[:150])[:, 0], y[:150].float())
        loss.backward()
        opt.step()
        with torch.no_grad():
            val = model(x[150:])[:, 0]
            tr = model(x[:150])[:, 0]
            val_loss = nn.functional.binary_cross_entropy_with_logits(val, y[150:].float())
        rec.save(
            epoch,
            model,
            val_target=y[150:],
            val_output=val,
            val_ids=torch.arange(150, 200),
            val_inputs=x[150:],
            train_target=y[:150],
            train_output=tr,
            train_inputs=x[:150],
            logged={"val_loss": float(val_loss), "train_loss": loss.item()},
            step=epoch * 10,
            optimizer=opt,
            **save_kwargs,
        )
    return rec, model


def test_recorder_writes_a_readable_run(tmp_path):
    rec, model = _train_tiny(tmp_path)
    rec.choose("epoch-0002")
    run = read_run(tmp_path / "run")
    assert [c.name for c in run.checkpoints] == ["epoch-0000", "epoch-0001", "epoch-0002"]
    assert run.chosen == "epoch-0002" and run.selected_by.metric == "val_loss"
    ckpt = run.checkpoints[-1]
    preds = read_predictions(run, ckpt)
    assert preds.n == 50 and preds.ids.tolist() == list(range(150, 200))
    assert preds.input_hash.dtype == np.uint64 and len(set(preds.input_hash.tolist())) == 50
    assert ckpt.step == 20 and "val_loss" in ckpt.logged
    # weights load without executing code, and match the model
    state = torch.load(ckpt.path / "model.pt", weights_only=True)
    assert torch.equal(state["weight"], model.state_dict()["weight"])
    assert (ckpt.path / "optimizer.pt").is_file()
    ranking = rank_checkpoints([tmp_path / "run"], ["roc_auc", "val_loss"])
    assert len(ranking.rows) == 3 and ranking.rows[0].values["roc_auc"] is not None


def test_a_crash_mid_save_leaves_no_checkpoint(tmp_path, monkeypatch):
    rec, _ = _train_tiny(tmp_path, epochs=1)
    from ckptaudit import recorder

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(recorder, "write_predictions", boom)
    with pytest.raises(OSError):
        rec.save(5, None, val_target=np.zeros(3), val_output=np.zeros(3))
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["epoch-0000"]


def test_a_half_written_checkpoint_is_invisible_to_readers(tmp_path):
    rec, _ = _train_tiny(tmp_path, epochs=1)
    # what the recorder leaves while writing: a hidden .tmp folder without meta.json
    (tmp_path / "run" / "checkpoints" / ".epoch-0001.abcd.tmp").mkdir()
    assert [c.name for c in read_run(tmp_path / "run").checkpoints] == ["epoch-0000"]


def test_recorder_refuses_to_overwrite_and_to_change_task(tmp_path):
    rec, _ = _train_tiny(tmp_path, epochs=1)
    with pytest.raises(UsageError, match="already exists"):
        rec.save(0, None, val_target=np.zeros(3), val_output=np.zeros(3))
    with pytest.raises(UsageError, match="task"):
        Recorder(tmp_path / "run", task="multiclass", output="logit")
    # resuming with the same description keeps 'chosen'
    rec.choose("epoch-0000")
    Recorder(tmp_path / "run", task="binary", output="logit")
    assert json.loads((tmp_path / "run" / "run.json").read_text())["chosen"] == "epoch-0000"


def test_hash_rows_is_content_based():
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    b = a[[2, 0, 3, 1]]
    ha, hb = hash_rows(a), hash_rows(b)
    assert ha.tolist() == hb[[1, 3, 0, 2]].tolist()
    assert len(set(ha.tolist())) == 4
    assert hash_rows(a.astype(np.float64)).tolist() != ha.tolist()  # dtype is part of the content


def test_recorder_refuses_an_epoch_the_reader_would_refuse(tmp_path):
    rec = Recorder(tmp_path / "run", task="binary", output="probability")
    with pytest.raises(UsageError, match="epoch and step must be from 0"):
        rec.save(-1, None, val_target=np.zeros(3), val_output=np.zeros(3))
    with pytest.raises(UsageError, match="epoch and step must be from 0"):
        rec.save(1, None, step=-5, val_target=np.zeros(3), val_output=np.zeros(3))
    assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir()]
