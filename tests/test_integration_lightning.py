"""PyTorch Lightning integration: real tiny training on a scikit-learn data set."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

pytest.importorskip("lightning")
import lightning.pytorch as L  # noqa: E402
import torch  # noqa: E402
from _framework_checks import breast_cancer, run_the_verbs, val_arrays  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from sklearn.metrics import accuracy_score  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from ckptaudit.errors import UsageError  # noqa: E402
from ckptaudit.integrations.lightning import CkptauditCallback  # noqa: E402
from ckptaudit.store.reader import read_run  # noqa: E402

EPOCHS = 4


class TinyNet(L.LightningModule):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(30, hidden), nn.ReLU(), nn.Dropout(0.3), nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch[0], batch[1]
        loss = nn.functional.binary_cross_entropy_with_logits(self(x)[:, 0], y.float())
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, _):
        x, y = batch[0], batch[1]
        logits = self(x)[:, 0]
        self.log("val_loss", nn.functional.binary_cross_entropy_with_logits(logits, y.float()), sync_dist=True)
        self.log("val_acc", ((logits > 0).long() == y).float().mean(), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def loaders():
    (xt, yt), (xv, yv) = breast_cancer()
    train = DataLoader(TensorDataset(torch.from_numpy(xt), torch.from_numpy(yt)), batch_size=32, shuffle=True)
    ids = torch.arange(1000, 1000 + len(yv))
    val = DataLoader(TensorDataset(torch.from_numpy(xv), torch.from_numpy(yv), ids), batch_size=32)
    return train, val, (xv, yv)


def fit(tmp_path, *callbacks, epochs=EPOCHS, checkpoint_kwargs=None, **trainer_kwargs):
    L.seed_everything(0, verbose=False)
    train, val, _ = loaders()
    model = TinyNet()
    options = {"monitor": "val_acc", "mode": "max", **(checkpoint_kwargs or {})}
    mc = ModelCheckpoint(dirpath=tmp_path / "lightning", filename="{epoch}", save_top_k=1, **options)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        callbacks=[mc, *callbacks],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **trainer_kwargs,
    )
    trainer.fit(model, train, val)
    return trainer, model, mc


def test_every_epoch_is_recorded_and_chosen_is_modelcheckpoints_best(tmp_path):
    run = tmp_path / "run"
    trainer, model, mc = fit(tmp_path, CkptauditCallback(run, task="binary", output="logit", classes=["malignant", "benign"]))
    r = read_run(run)
    assert [c.epoch for c in r.checkpoints] == list(range(EPOCHS))  # trainer.current_epoch, as `epoch=` names count
    assert r.selected_by.metric == "val_acc" and r.selected_by.mode == "max"
    best_epoch = int(re.search(r"epoch=(\d+)", mc.best_model_path).group(1))
    assert r.chosen == f"epoch-{best_epoch:04d}"
    _, _, (xv, yv) = loaders()
    for ckpt in r.checkpoints:
        preds = val_arrays(run, ckpt.name)
        assert preds.target.tolist() == yv.tolist() and preds.ids.tolist() == list(range(1000, 1000 + len(yv)))
        assert preds.input_hash is not None and len(set(preds.input_hash.tolist())) == len(yv)
        # the predictions are the ones Lightning scored: its val_acc is sklearn's accuracy of them
        assert ckpt.logged["val_acc"] == pytest.approx(accuracy_score(yv, preds.output[:, 0] > 0), abs=1e-6)
        assert {"val_loss", "train_loss"} <= set(ckpt.logged) and ckpt.step == (ckpt.epoch + 1) * 10
        # the full Lightning checkpoint reloads and reproduces the recorded outputs
        reloaded = TinyNet.load_from_checkpoint(ckpt.path / "model.ckpt").eval()
        with torch.no_grad():
            np.testing.assert_allclose(reloaded(torch.from_numpy(xv)).numpy(), preds.output, rtol=1e-5, atol=1e-6)
    verbs = run_the_verbs(run, "val_acc")
    assert verbs["check"]["chosen"] == r.chosen and verbs["check"]["chosen_how"] == "run.json chosen"
    assert verbs["rank"][0]["val_acc"] == max(c.logged["val_acc"] for c in r.checkpoints)
    assert verbs["pick"][0]["value"] == verbs["rank"][0]["val_acc"]


def test_chosen_follows_a_modelcheckpoint_that_saves_at_validation_end(tmp_path):
    # ModelCheckpoint then saves before our train-epoch-end hook instead of after it
    run = tmp_path / "run"
    cb = CkptauditCallback(run, task="binary", output="logit", weights=None)
    _, _, mc = fit(
        tmp_path, cb, epochs=3, checkpoint_kwargs={"save_on_train_epoch_end": False, "monitor": "val_loss", "mode": "min"}
    )
    r = read_run(run)
    assert (r.selected_by.metric, r.selected_by.mode) == ("val_loss", "min")
    best_epoch = int(re.search(r"epoch=(\d+)", mc.best_model_path).group(1))
    assert r.chosen == f"epoch-{best_epoch:04d}"
    assert r.checkpoint(r.chosen).logged["val_loss"] == pytest.approx(mc.best_model_score.item())


def test_recording_does_not_change_training(tmp_path, monkeypatch):
    def history(trainer_model):
        trainer, model, mc = trainer_model
        return mc.best_model_score.item(), [p.detach().clone() for p in model.parameters()]

    plain = history(fit(tmp_path / "a", epochs=2))
    recorded = history(fit(tmp_path / "b", CkptauditCallback(tmp_path / "b" / "run", task="binary", output="logit"), epochs=2))
    assert plain[0] == recorded[0]
    assert all(torch.equal(p, q) for p, q in zip(plain[1], recorded[1], strict=True))
    # an own pass (predict= given) leaves training alike too, thanks to the RNG fork
    own = lambda m, b: (b[1], m(b[0]), b[2])  # noqa: E731
    forked = history(fit(tmp_path / "d", CkptauditCallback(tmp_path / "d" / "run", task="binary", output="logit", predict=own), epochs=2))
    assert all(torch.equal(p, q) for p, q in zip(plain[1], forked[1], strict=True))
    # the test can fail: the same pass without the RNG fork shifts dropout and shuffling
    import contextlib

    from ckptaudit.integrations import lightning as integ

    monkeypatch.setattr(integ, "forked_rng", contextlib.nullcontext)
    cb = CkptauditCallback(tmp_path / "c" / "run", task="binary", output="logit", predict=own)
    unforked = history(fit(tmp_path / "c", cb, epochs=2))
    assert not all(torch.equal(p, q) for p, q in zip(plain[1], unforked[1], strict=True))


def test_weights_choice_and_an_existing_run(tmp_path):
    run = tmp_path / "run"
    fit(tmp_path, CkptauditCallback(run, task="binary", output="logit", weights="state_dict"), epochs=2)
    ckpt = read_run(run).checkpoints[-1]
    state = torch.load(ckpt.path / "model.pt", weights_only=True)
    assert set(state) == set(TinyNet().state_dict()) and not (ckpt.path / "model.ckpt").exists()
    with pytest.raises(UsageError, match="already holds 2 checkpoint"):
        CkptauditCallback(run, task="binary", output="logit")  # before any training
    with pytest.raises(UsageError, match="weights must be"):
        CkptauditCallback(tmp_path / "other", task="binary", output="logit", weights="onnx")
    fit(tmp_path / "again", CkptauditCallback(run, task="binary", output="logit", fresh=True, weights=None), epochs=1)
    assert [c.epoch for c in read_run(run).checkpoints] == [0]
    assert not any(read_run(run).checkpoints[0].path.glob("model.*"))
    assert json.loads((run / "run.json").read_text())["selected_by"]["metric"] == "val_acc"


def _ddp_fit(root):
    """Run in each of 2 spawned CPU processes (gloo)."""
    fit(root, CkptauditCallback(root / "run", task="binary", output="logit"), epochs=1, strategy="ddp_spawn", devices=2)


def test_ddp_on_two_cpu_processes_gathers_every_row_once(tmp_path):
    _ddp_fit(tmp_path)
    run = tmp_path / "run"
    r = read_run(run)
    _, _, (xv, yv) = loaders()
    assert len(yv) % 2 == 1  # the DistributedSampler pads one shard with a repeated row
    assert [c.epoch for c in r.checkpoints] == [0]
    for ckpt in r.checkpoints:
        preds = val_arrays(run, ckpt.name)
        assert preds.ids.tolist() == list(range(1000, 1000 + len(yv))) and preds.target.tolist() == yv.tolist()
        reloaded = TinyNet.load_from_checkpoint(ckpt.path / "model.ckpt").eval()
        with torch.no_grad():
            np.testing.assert_allclose(reloaded(torch.from_numpy(xv)).numpy(), preds.output, rtol=1e-5, atol=1e-6)
