"""Logged-metric semantics the framework integrations rely on (issue 11, section 3): the
direction of a logged metric from its name and from run.json, `loss` as the training loss,
and ties broken by the next --metric, then the earlier epoch."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, recall_score

from ckptaudit.auditing import AuditOptions
from ckptaudit.audits import audit_paths
from ckptaudit.errors import MetricError
from ckptaudit.metrics.spec import infer_logged_mode
from ckptaudit.ranking import rank_checkpoints
from ckptaudit.store.recorder import Recorder


@pytest.mark.parametrize(
    "name, mode",
    [
        ("val_acc", "max"),
        ("val_accuracy", "max"),
        ("eval_accuracy", "max"),
        ("val_binary_accuracy", "max"),
        ("valid/f1", "max"),
        ("eval_loss", "min"),
        ("loss", "min"),
        ("val_log_loss", "min"),
        ("val_mae", "min"),
        ("train_acc", "max"),
        ("val_profit", None),
        ("epoch_time", None),
    ],
)
def test_direction_from_the_base_name(name, mode):
    assert infer_logged_mode(name) == mode


def _run(tmp_path, name, logged_rows, selected_by=None, mode=None, **save):
    rec = Recorder(tmp_path / name, task="binary", output="probability", selected_by=selected_by, mode=mode)
    y = np.array([0, 1, 1, 0, 1, 0])
    for epoch, logged in enumerate(logged_rows):
        rec.save(epoch, val_target=y, val_output=save.get("outputs", [np.full(6, 0.5)] * len(logged_rows))[epoch], logged=logged)
    return tmp_path / name


def test_direction_from_run_json_selected_by_when_the_name_does_not_say(tmp_path):
    path = _run(
        tmp_path, "r", [{"val_profit": 3.0}, {"val_profit": 5.0}, {"val_profit": 4.0}], selected_by="val_profit", mode="max"
    )
    rows = rank_checkpoints([path], ["val_profit"]).rows
    assert [r.epoch for r in rows] == [1, 2, 0]
    # the name wins over run.json: val_acc selected with mode=min (Lightning #19844) is still maximised
    path = _run(tmp_path, "s", [{"val_acc": 0.6}, {"val_acc": 0.9}], selected_by="val_acc", mode="min")
    assert rank_checkpoints([path], ["val_acc"]).rows[0].epoch == 1
    with pytest.raises(MetricError, match="direction is unknown"):
        rank_checkpoints([_run(tmp_path, "t", [{"val_profit": 1.0}])], ["val_profit"])


def test_ties_go_to_the_next_metric_then_the_earlier_epoch(tmp_path):
    y = np.array([0, 1, 1, 0, 1, 0])
    # epochs 0-2 have the same accuracy (5/6) but different recall; epoch 3 ties epoch 1 on both
    outputs = [
        np.array([0.9, 0.8, 0.7, 0.1, 0.6, 0.2]),  # one false positive: recall 1
        np.array([0.1, 0.8, 0.7, 0.1, 0.2, 0.2]),  # one false negative: recall 2/3
        np.array([0.1, 0.8, 0.7, 0.1, 0.6, 0.7]),  # one false positive: recall 1
        np.array([0.9, 0.8, 0.7, 0.1, 0.6, 0.2]),
    ]
    rec = Recorder(tmp_path / "run", task="binary", output="probability")
    for epoch, out in enumerate(outputs):
        rec.save(epoch, val_target=y, val_output=out)
    for out in outputs:
        assert accuracy_score(y, out >= 0.5) == pytest.approx(5 / 6)
    rows = rank_checkpoints([tmp_path / "run"], ["accuracy", "recall"]).rows
    assert [r.epoch for r in rows] == [0, 2, 3, 1]
    assert [r.values["recall"] for r in rows] == pytest.approx([recall_score(y, outputs[e] >= 0.5) for e in (0, 2, 3, 1)])
    # with one metric only, ties go to the earlier epoch
    assert [r.epoch for r in rank_checkpoints([tmp_path / "run"], ["accuracy"]).rows] == [0, 1, 2, 3]


def test_plain_loss_is_the_training_loss(tmp_path):
    y = np.array([0, 1, 1, 0, 1, 0])
    rec = Recorder(tmp_path / "run", task="binary", output="probability", selected_by="loss", mode="min")
    # validation loss is best at epoch 1 and worsens while the training `loss` keeps falling
    val_loss = [0.60, 0.40, 0.50, 0.70]
    train_loss = [0.65, 0.45, 0.30, 0.20]
    good = np.array([0.2, 0.8, 0.7, 0.3, 0.6, 0.4])
    for epoch in range(4):
        out = good if epoch == 1 else np.array([0.2, 0.8, 0.4, 0.3, 0.6, 0.6])
        rec.save(epoch, val_target=y, val_output=out, logged={"eval_loss": val_loss[epoch], "loss": train_loss[epoch]})
    rec.choose(3)
    result = audit_paths([tmp_path / "run"], AuditOptions(metric="eval_loss"))
    codes = {f.code: f for f in result.findings}
    assert "selected-by-train-metric" in codes and "loss" in codes["selected-by-train-metric"].message
    over = codes["overfitting"]
    assert over.evidence["metric"] == "eval_loss/loss" and over.evidence["best_epoch"] == 1
    assert [g["train"] for g in over.evidence["gap_per_epoch"]] == pytest.approx(train_loss)
