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
from ckptaudit.store.reader import read_predictions, read_run
from ckptaudit.store.recorder import hash_rows


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
    from ckptaudit.store import recorder

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(recorder, "write_predictions", boom)
    first = read_predictions(read_run(tmp_path / "run"), read_run(tmp_path / "run").checkpoints[0])
    with pytest.raises(OSError):
        rec.save(5, None, val_target=first.target, val_output=np.zeros(first.n), val_ids=first.ids)
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
        rec.save(0, None, val_target=np.zeros(50), val_output=np.zeros(50), name="epoch-0000")
    with pytest.raises(UsageError, match="task"):
        Recorder(tmp_path / "run", task="multiclass", output="logit", resume=True)
    # resuming with the same description keeps 'chosen'
    rec.choose("epoch-0000")
    Recorder(tmp_path / "run", task="binary", output="logit", resume=True)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["chosen"] == "epoch-0000"


def test_hash_rows_is_content_based():
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    b = a[[2, 0, 3, 1]]
    ha, hb = hash_rows(a), hash_rows(b)
    assert ha.tolist() == hb[[1, 3, 0, 2]].tolist()
    assert len(set(ha.tolist())) == 4
    assert hash_rows(a.astype(np.float64)).tolist() != ha.tolist()  # dtype is part of the content


# --- the recorder checks what the reader checks (issue 11, section 2) ---------------------------


def _reader_message(tmp_path, run_json, target, output):
    """What the reader says about these arrays, written by hand into a run (no recorder)."""
    from ckptaudit.errors import RunFormatError

    root = tmp_path / "by-hand"
    (root / "checkpoints" / "c").mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({"format": "ckptaudit/1", **run_json}))
    (root / "checkpoints" / "c" / "meta.json").write_text('{"epoch": 0}')
    np.savez(root / "checkpoints" / "c" / "val.npz", target=target, output=output)
    run = read_run(root)
    with pytest.raises(RunFormatError) as info:
        read_predictions(run, run.checkpoints[0])
    return info.value.problem


@pytest.mark.parametrize(
    "run_json, target, output",
    [
        ({"task": "binary", "output": "logit"}, np.array([0, 1, 1]), np.zeros((3, 3))),  # wrong shape
        ({"task": "binary", "output": "logit"}, np.array([0, 1, 2]), np.zeros(3)),  # target outside the classes
        ({"task": "binary", "output": "logit"}, np.array([0, 1, 1]), np.zeros(4)),  # lengths differ
        ({"task": "multiclass", "output": "logit", "classes": ["a", "b", "c"]}, np.array([0, 1, 2]), np.zeros((3, 4))),
        ({"task": "multiclass", "output": "probability"}, np.array([0, 1, 5]), np.zeros((3, 3))),
    ],
)
def test_a_misuse_fails_at_the_first_save_with_the_readers_message(tmp_path, run_json, target, output):
    from ckptaudit.errors import RunFormatError

    expected = _reader_message(tmp_path, run_json, target, output)
    rec = Recorder(tmp_path / "run", **run_json)
    with pytest.raises(RunFormatError) as info:
        rec.save(0, val_target=target, val_output=output)
    assert info.value.problem == expected
    assert not any((tmp_path / "run" / "checkpoints").iterdir())  # nothing written


def test_three_classes_for_a_binary_run_fail_at_construction(tmp_path):
    with pytest.raises(UsageError, match="a binary run has exactly 2 classes"):
        Recorder(tmp_path / "run", task="binary", output="logit", classes=["a", "b", "c"])
    assert not (tmp_path / "run" / "run.json").exists()


def test_a_changed_validation_set_fails_at_the_save_that_changes_it(tmp_path):
    from ckptaudit.errors import RunFormatError

    rec = Recorder(tmp_path / "run", task="binary", output="logit")
    y = np.array([0, 1, 1, 0])
    rec.save(0, val_target=y, val_output=np.zeros(4), val_ids=np.arange(4))
    with pytest.raises(RunFormatError, match="the validation set changed at epoch 1.*2 of 4 targets differ"):
        rec.save(1, val_target=np.array([1, 0, 1, 0]), val_output=np.zeros(4), val_ids=np.arange(4))
    with pytest.raises(RunFormatError, match="sample ids differ"):
        rec.save(1, val_target=y, val_output=np.zeros(4), val_ids=np.arange(4) + 10)
    rec.save(1, val_target=y, val_output=np.ones(4), val_ids=np.arange(4))
    # a resumed recorder compares with the first epoch on disk
    rec2 = Recorder(tmp_path / "run", task="binary", output="logit", resume=True)
    with pytest.raises(RunFormatError, match="the validation set changed at epoch 2"):
        rec2.save(2, val_target=y[:3], val_output=np.zeros(3))


def test_binary_outputs_of_shape_n_by_1_are_read_like_n(tmp_path):
    from sklearn.metrics import roc_auc_score

    torch.manual_seed(1)
    x = torch.randn(120, 4)
    y = (x[:, 0] > 0).long()
    model = nn.Linear(4, 1)  # the usual head for BCEWithLogitsLoss
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    rec = Recorder(tmp_path / "run", task="binary", output="logit", selected_by="val_loss", mode="min")
    logits = []
    for epoch in range(2):
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(model(x[:80]), y[:80, None].float()).backward()
        opt.step()
        with torch.no_grad():
            out = model(x[80:])
        assert out.shape == (40, 1)
        logits.append(out[:, 0].numpy())
        rec.save(epoch, model, val_target=y[80:], val_output=out)
    ranking = rank_checkpoints([tmp_path / "run"], ["roc_auc"])
    got = {r.checkpoint: r.values["roc_auc"] for r in ranking.rows}
    for epoch in range(2):
        assert got[f"epoch-{epoch:04d}"] == pytest.approx(roc_auc_score(y[80:].numpy(), logits[epoch]))


def _tree(root):
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_an_existing_run_needs_resume_or_fresh_before_training(tmp_path):
    _train_tiny(tmp_path, epochs=2)
    with pytest.raises(UsageError, match="already holds 2 checkpoint.*resume=True.*fresh=True"):
        Recorder(tmp_path / "run", task="binary", output="logit")
    with pytest.raises(UsageError, match="contradict"):
        Recorder(tmp_path / "run", task="binary", output="logit", resume=True, fresh=True)
    before = _tree(tmp_path / "run" / "checkpoints")
    rec = Recorder(tmp_path / "run", task="binary", output="logit", resume=True)
    assert rec.next_epoch == 2
    first = read_predictions(read_run(tmp_path / "run"), read_run(tmp_path / "run").checkpoints[0])
    args = dict(val_target=first.target, val_output=np.zeros(first.n), val_ids=first.ids)
    with pytest.raises(UsageError, match="already exists"):
        rec.save(1, **args)
    with pytest.raises(UsageError, match="epoch 0 is not after the last recorded epoch 1"):
        rec.save(0, name="again", **args)
    rec.save(2, **args)
    rec.save(2, name="epoch-0002-step-99", step=99, **args)  # several evaluations in one epoch
    assert [c.epoch for c in read_run(tmp_path / "run").checkpoints] == [0, 1, 2, 2]
    before = _tree(tmp_path / "run")
    # a fresh start moves the earlier run aside, inside the run folder, byte for byte
    rec = Recorder(tmp_path / "run", task="multiclass", output="probability", fresh=True)
    aside = [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".replaced-")]
    assert len(aside) == 1 and _tree(aside[0]) == before
    assert read_run(tmp_path / "run").checkpoints == () and rec.next_epoch == 0


def test_write_hook_writes_native_files_inside_the_atomic_folder(tmp_path):
    rec = Recorder(tmp_path / "run", task="binary", output="probability")
    seen = []

    def write(folder):
        seen.append(folder.name)
        (folder / "weights.bin").write_bytes(b"abc")

    path = rec.save(0, val_target=[0, 1], val_output=[0.2, 0.9], write=write)
    assert seen[0].startswith(".epoch-0000.") and seen[0].endswith(".tmp")  # never the final name
    assert (path / "weights.bin").read_bytes() == b"abc"

    def broken(folder):
        (folder / "half").write_bytes(b"x")
        raise RuntimeError("out of disk")

    with pytest.raises(RuntimeError):
        rec.save(1, val_target=[0, 1], val_output=[0.2, 0.9], write=broken)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["epoch-0000"]


def test_choose_takes_an_epoch_or_a_name_and_bad_arguments_are_clear(tmp_path):
    rec = Recorder(tmp_path / "run", task="binary", output="probability", selected_by="val_acc", mode="max")
    assert json.loads((tmp_path / "run" / "run.json").read_text())["selected_by"] == {"metric": "val_acc", "mode": "max"}
    for epoch in range(3):
        rec.save(epoch, val_target=[0, 1], val_output=[0.2, 0.9])
    assert rec.choose(1) == "epoch-0001" and read_run(tmp_path / "run").chosen == "epoch-0001"
    assert rec.choose("epoch-0002") == "epoch-0002"
    for bad, message in [
        (7, "no checkpoint recorded for epoch 7"),
        ("nope", "no checkpoint named"),
        (1.5, "epoch number or a checkpoint name"),
    ]:
        with pytest.raises(UsageError, match=message):
            rec.choose(bad)
    ok = dict(task="binary", output="logit")
    for kwargs, message in [
        (dict(path=None, **ok), "path must be a folder path"),
        (dict(path=tmp_path / "x", **ok, selected_by="val_loss", mode="minimize"), "mode must be 'min' or 'max'"),
        (dict(path=tmp_path / "x", **ok, mode="min"), "give the metric name too"),
        (dict(path=tmp_path / "x", **ok, selected_by=3), "selected_by must be a metric name"),
        (dict(path=tmp_path / "x", task="binary", output="logits"), "output must be one of"),
        (dict(path=tmp_path / "x", **ok, classes="ab"), "classes must be a list"),
    ]:
        path = kwargs.pop("path")
        with pytest.raises(UsageError, match=message):
            Recorder(path, **kwargs)
    for kwargs, message in [
        (dict(epoch="3"), "epoch must be an integer from 0"),
        (dict(epoch=3, logged={"val_loss": "low"}), "logged 'val_loss' must be a number"),
        (dict(epoch=3, name="../x"), "name must be a plain folder name"),
        (dict(epoch=3, step=1.5), "step must be"),
    ]:
        epoch = kwargs.pop("epoch")
        with pytest.raises(UsageError, match=message):
            rec.save(epoch, val_target=[0, 1], val_output=[0.2, 0.9], **kwargs)


def test_binary_n_by_1_probabilities_are_one_column_not_a_row(tmp_path):
    """A sigmoid head's (N, 1) probabilities (Keras' usual output) are the positive class's
    column: never checked as a row that must sum to 1, and scored like (N,)."""
    from sklearn.metrics import accuracy_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    p = rng.random((60, 1)).astype(np.float32)
    rec = Recorder(tmp_path / "run", task="binary", output="probability")
    rec.save(0, None, val_target=y, val_output=p)
    row = rank_checkpoints([tmp_path / "run"], ["accuracy"]).rows[0]
    assert row.values["accuracy"] == pytest.approx(accuracy_score(y, p[:, 0] > 0.5))


def test_recorder_refuses_an_epoch_the_reader_would_refuse(tmp_path):
    rec = Recorder(tmp_path / "run", task="binary", output="probability")
    with pytest.raises(UsageError, match="(epoch|step) must be an integer from 0"):
        rec.save(-1, None, val_target=np.zeros(3), val_output=np.zeros(3))
    with pytest.raises(UsageError, match="(epoch|step) must be an integer from 0"):
        rec.save(1, None, step=-5, val_target=np.zeros(3), val_output=np.zeros(3))
    assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir()]
