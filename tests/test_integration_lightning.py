"""PyTorch Lightning integration: real tiny training on a scikit-learn data set."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

pytest.importorskip("lightning")
import lightning.pytorch as L  # noqa: E402
import torch  # noqa: E402
from _framework_checks import breast_cancer, cli_json, run_the_verbs, val_arrays  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from sklearn.metrics import accuracy_score  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from ckptaudit.errors import UsageError  # noqa: E402
from ckptaudit.integrations import sample_rows  # noqa: E402
from ckptaudit.integrations.lightning import CkptauditCallback  # noqa: E402
from ckptaudit.store.reader import read_predictions, read_run  # noqa: E402
from ckptaudit.store.recorder import hash_rows  # noqa: E402

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
    forked = history(
        fit(tmp_path / "d", CkptauditCallback(tmp_path / "d" / "run", task="binary", output="logit", predict=own), epochs=2)
    )
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


# -- the shapes real training loops take (issue 19) -----------------------------------------


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_several_validations_per_epoch_are_checkpoints_by_step_and_chosen_has_the_best_weights(tmp_path):
    run = tmp_path / "run"
    seen = []

    class Count(L.Callback):
        def on_validation_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                seen.append(trainer.global_step)

    _, _, mc = fit(tmp_path, Count(), CkptauditCallback(run, task="binary", output="logit"), epochs=2, val_check_interval=0.25)
    r = read_run(run)
    assert seen == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]  # every 0.25 x 10 batches = 2 steps
    assert [(c.name, c.step) for c in r.checkpoints] == [(f"step-{s:07d}", s) for s in seen]
    assert [c.epoch for c in r.checkpoints] == [0] * 5 + [1] * 5
    # chosen is the validation whose save is best_model_path: the same weights, tensor for tensor
    best = _state(mc.best_model_path)
    ours = _state(r.checkpoint(r.chosen).path / "model.ckpt")
    assert set(best) == set(ours) and all(torch.equal(best[k], ours[k]) for k in best)
    assert r.checkpoint(r.chosen).logged["val_acc"] == pytest.approx(mc.best_model_score.item())


class TwoLoaders(TinyNet):
    def validation_step(self, batch, _, dataloader_idx=0):
        x, y = batch[0], batch[1]
        logits = self(x)[:, 0]
        self.log("val_acc", ((logits > 0).long() == y).float().mean())


@pytest.mark.parametrize("form", ["list", "dict"])
def test_several_validation_loaders_record_the_one_the_monitor_names(tmp_path, form):
    (xt, yt), (xv, yv) = breast_cancer()
    train, first, _ = loaders()
    # the second loader: other rows (the last 60 training rows), so the two cannot be confused
    second = DataLoader(TensorDataset(torch.from_numpy(xt[-60:]), torch.from_numpy(yt[-60:]), torch.arange(60)), batch_size=32)
    vals = [first, second] if form == "list" else {"valid": first, "holdout": second}
    L.seed_everything(0, verbose=False)
    mc = ModelCheckpoint(dirpath=tmp_path / "l", monitor="val_acc/dataloader_idx_1", mode="max")
    cb = CkptauditCallback(tmp_path / "run", task="binary", output="logit")
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        callbacks=[mc, cb],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    with pytest.warns(UserWarning, match=r"2 validation dataloaders; recording dataloader .*(1|holdout).* monitored"):
        trainer.fit(TwoLoaders(), train, vals)
    r = read_run(tmp_path / "run")
    assert r.selected_by.metric == "val_acc/dataloader_idx_1" and len(r.checkpoints) == 2
    for ckpt in r.checkpoints:
        preds = val_arrays(tmp_path / "run", ckpt.name)
        assert preds.target.tolist() == yt[-60:].tolist() and preds.ids.tolist() == list(range(60))
        acc = accuracy_score(yt[-60:], preds.output[:, 0] > 0)
        assert ckpt.logged["val_acc/dataloader_idx_1"] == pytest.approx(acc, abs=1e-6)


def test_a_last_checkpoint_beside_the_best_one_does_not_hide_the_selection(tmp_path):
    run = tmp_path / "run"
    L.seed_everything(0, verbose=False)
    train, val, _ = loaders()
    last = ModelCheckpoint(dirpath=tmp_path / "last", save_last=True, save_top_k=0)
    best = ModelCheckpoint(dirpath=tmp_path / "best", filename="{epoch}", monitor="val_loss", mode="min")
    trainer = L.Trainer(
        max_epochs=3,
        accelerator="cpu",
        callbacks=[last, best, CkptauditCallback(run, task="binary", output="logit", weights=None)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(TinyNet(), train, val)
    r = read_run(run)
    assert (r.selected_by.metric, r.selected_by.mode) == ("val_loss", "min")
    best_epoch = int(re.search(r"epoch=(\d+)", best.best_model_path).group(1))
    assert r.chosen == f"epoch-{best_epoch:04d}"


class Bf16Net(TinyNet):
    """Keeps the logits its validation_step scored, to compare with the recorded ones."""

    scored: list = []

    def validation_step(self, batch, _):
        x, y = batch[0], batch[1]
        logits = self(x)[:, 0]
        Bf16Net.scored.append(logits.detach().float().clone())
        self.log("val_acc", ((logits > 0).long() == y).float().mean())


def test_bf16_mixed_records_what_lightning_scored_without_a_second_pass(tmp_path):
    calls = []
    original = Bf16Net.forward

    def counted(self, x):
        calls.append(len(x))
        return original(self, x)

    Bf16Net.forward = counted
    try:
        Bf16Net.scored = []
        L.seed_everything(0, verbose=False)
        train, val, (xv, yv) = loaders()
        trainer = L.Trainer(
            max_epochs=2,
            accelerator="cpu",
            precision="bf16-mixed",
            num_sanity_val_steps=0,
            callbacks=[
                ModelCheckpoint(dirpath=tmp_path / "l", monitor="val_acc", mode="max"),
                CkptauditCallback(tmp_path / "run", task="binary", output="logit", weights=None),
            ],
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp_path,
        )
        trainer.fit(Bf16Net(), train, val)
    finally:
        Bf16Net.forward = original
    r = read_run(tmp_path / "run")
    per_epoch = len(Bf16Net.scored) // 2
    for i, ckpt in enumerate(r.checkpoints):
        preds = val_arrays(tmp_path / "run", ckpt.name)
        scored = torch.cat(Bf16Net.scored[i * per_epoch : (i + 1) * per_epoch]).numpy()
        np.testing.assert_array_equal(preds.output[:, 0], scored)  # bit for bit: the bf16 values Lightning scored
        assert ckpt.logged["val_acc"] == pytest.approx(accuracy_score(yv, preds.output[:, 0] > 0), abs=1e-6)
    assert sum(calls) == 2 * (300 + len(yv))  # training and Lightning's own validation; no pass of ours


class DictNet(TinyNet):
    def forward(self, x):
        return {"logits": self.net(x), "embedding": x[:, :4]}

    def training_step(self, batch, _):
        return nn.functional.binary_cross_entropy_with_logits(self(batch[0])["logits"][:, 0], batch[1].float())

    def validation_step(self, batch, _):
        logits = self(batch[0])["logits"][:, 0]
        self.log("val_acc", ((logits > 0).long() == batch[1]).float().mean())


def test_dict_outputs_are_read_with_output_key(tmp_path):
    L.seed_everything(0, verbose=False)
    train, val, (xv, yv) = loaders()

    def trainer(cb):
        return L.Trainer(
            max_epochs=1,
            accelerator="cpu",
            callbacks=[cb],
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp_path,  # its default ModelCheckpoint writes there
        )

    trainer(CkptauditCallback(tmp_path / "run", task="binary", output="logit", output_key="logits", weights=None)).fit(
        DictNet(), train, val
    )
    preds = val_arrays(tmp_path / "run", "epoch-0000")
    assert preds.output.shape == (len(yv), 1)
    logged = read_run(tmp_path / "run").checkpoints[0].logged["val_acc"]
    assert logged == pytest.approx(accuracy_score(yv, preds.output[:, 0] > 0), abs=1e-6)
    with pytest.raises(UsageError, match=r"dict with keys \['embedding', 'logits'\]: give output_key="):
        trainer(CkptauditCallback(tmp_path / "run2", task="binary", output="logit", weights=None)).fit(DictNet(), train, val)


def test_resume_from_the_last_checkpoint_continues_and_from_an_older_one_fails_before_training(tmp_path):
    steps = []

    def go(root, epochs, ckpt_path=None, top_k=1, **cb):
        L.seed_everything(0, verbose=False)
        train, val, _ = loaders()
        mc = ModelCheckpoint(
            dirpath=root / "l", filename="{epoch}", monitor="val_acc", mode="max", save_last=True, save_top_k=top_k
        )
        trainer = L.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            callbacks=[mc, CkptauditCallback(root / "run", task="binary", output="logit", weights=None, **cb)],
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=root,
        )
        try:
            trainer.fit(TinyNet(), train, val, ckpt_path=ckpt_path)
        finally:
            steps.append(trainer.global_step)
        return mc

    # save_top_k=-1: last.ckpt is the newest epoch; the run continues after its last epoch
    go(tmp_path / "a", 3, top_k=-1)
    go(tmp_path / "a", 5, tmp_path / "a" / "l" / "last.ckpt", top_k=-1, resume=True)
    r = read_run(tmp_path / "a" / "run")
    assert [c.epoch for c in r.checkpoints] == list(range(5)) and [c.step for c in r.checkpoints] == [10, 20, 30, 40, 50]
    # save_last copies only saved checkpoints: with save_top_k=1 last.ckpt lags once the best stops improving
    go(tmp_path / "b", 5)
    restored = torch.load(tmp_path / "b" / "l" / "last.ckpt", weights_only=False)["global_step"]
    recorded = [c.epoch for c in read_run(tmp_path / "b" / "run").checkpoints]
    assert restored < 50, "the scenario needs a lagging last.ckpt"
    with pytest.raises(UsageError, match=rf"training resumes at step {restored} .* already holds epoch-0004"):
        go(tmp_path / "b", 7, tmp_path / "b" / "l" / "last.ckpt", resume=True)
    assert steps[-1] == restored  # failed before any training step
    assert [c.epoch for c in read_run(tmp_path / "b" / "run").checkpoints] == recorded


def test_a_re_validation_alike_is_a_no_op_and_a_different_one_an_error(tmp_path):
    run = tmp_path / "run"
    fit(tmp_path, CkptauditCallback(run, task="binary", output="logit", weights=None), epochs=1)
    preds = val_arrays(run, "epoch-0000")
    cb = CkptauditCallback(run, task="binary", output="logit", resume=True)
    assert cb.resumed.already("epoch-0000", preds.target, preds.output) is True
    assert cb.resumed.already("epoch-0001", preds.target, preds.output) is False
    with pytest.raises(UsageError, match="recorded already, with other predictions"):
        cb.resumed.already("epoch-0000", preds.target, preds.output + 0.5)


def test_train_sample_records_fixed_training_rows_and_the_leakage_audit_runs(tmp_path):
    (xt, yt), (xv, yv) = breast_cancer()
    L.seed_everything(0, verbose=False)
    train = DataLoader(TensorDataset(torch.from_numpy(xt), torch.from_numpy(yt)), batch_size=32, shuffle=True)
    # a leaky validation set: 40 of its rows are training rows
    leaky_x, leaky_y = np.concatenate([xv[:61], xt[:40]]), np.concatenate([yv[:61], yt[:40]])
    val = DataLoader(TensorDataset(torch.from_numpy(leaky_x), torch.from_numpy(leaky_y)), batch_size=32)
    cb = CkptauditCallback(tmp_path / "run", task="binary", output="logit", weights=None, train_sample=150)
    trainer = L.Trainer(
        max_epochs=3,
        accelerator="cpu",
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "l", monitor="val_acc", mode="max"), cb],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(TinyNet(), train, val)
    r = read_run(tmp_path / "run")
    rows = sample_rows(len(yt), 150, 0)
    for ckpt in r.checkpoints:
        tr = read_predictions(r, ckpt, "train")
        assert tr.target.tolist() == yt[rows].tolist()  # the same fixed rows at every validation
        assert tr.input_hash.tolist() == hash_rows(torch.from_numpy(xt[rows])).tolist()
    _, audited = cli_json("audit", tmp_path / "run", "--fail-on", "never", "--resamples", "200")
    codes = {f["code"]: f for f in audited}
    overlap = codes["train-val-overlap"]
    expected = int(np.isin(hash_rows(leaky_x), hash_rows(xt[rows])).sum())
    assert expected > 0 and overlap["evidence"]["count"] == expected


def test_recorded_rows_that_are_not_what_lightning_validated_on_are_warned_about(tmp_path):
    (xt, yt), _ = breast_cancer()
    wrong = DataLoader(TensorDataset(torch.from_numpy(xt[:101]), torch.from_numpy(yt[:101])), batch_size=32)
    cb = CkptauditCallback(tmp_path / "run", task="binary", output="logit", weights=None, dataloader=wrong)
    with pytest.warns(UserWarning, match=r"epoch-0000: training logged val_acc=.* but the recorded validation predictions score"):
        fit(tmp_path, cb, epochs=1)
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="ckptaudit")  # the right rows: nothing is said
        fit(tmp_path / "ok", CkptauditCallback(tmp_path / "ok" / "run", task="binary", output="logit", weights=None), epochs=2)
