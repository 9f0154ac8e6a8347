"""logged-metric-mismatch: the number training logged against the same metric re-scored
from the recorded predictions, on real tiny Lightning trainings and the shipped fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ckptaudit.auditing.engine import audit_run
from ckptaudit.store.reader import read_predictions, read_run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs"


def _mismatches(run):
    return [f for f in audit_run(read_run(run)).findings if f.code == "logged-metric-mismatch"]


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()))
def test_silent_on_every_clean_fixture_whose_logged_metrics_are_compared(name):
    run = read_run(FIXTURES / name)
    ra = audit_run(run)
    assert not [f for f in ra.findings if f.code == "logged-metric-mismatch"]
    # the silence is a comparison that agreed, not a comparison never made
    if any("val_accuracy" in c.logged for c in run.checkpoints):
        compared = [st.logged_rescored for st in ra.stats if st.logged_rescored]
        assert len(compared) == len(run.checkpoints)
        assert all(abs(e["logged"] - e["rescored"]) < 1e-6 for d in compared for e in d.values())


def test_fires_on_a_logged_accuracy_that_is_off(tmp_path):
    # the same fixture with one logged value moved by 1% must fire, naming no false cause
    import shutil

    shutil.copytree(FIXTURES / "fraud", tmp_path / "fraud")
    run = read_run(tmp_path / "fraud")
    ckpt = run.checkpoints[3]
    import json

    meta = json.loads((ckpt.path / "meta.json").read_text())
    meta["logged"]["val_accuracy"] -= 0.01
    (ckpt.path / "meta.json").write_text(json.dumps(meta))
    (found,) = _mismatches(tmp_path / "fraud")
    assert found.checkpoint == ckpt.name and found.evidence["logged_name"] == "val_accuracy"
    # the fraud run picks by val_accuracy: training selected by the wrong number
    assert found.severity == "error" and found.evidence["checkpoints"] == 1


def test_names_a_threshold_applied_to_logits_and_says_when_no_cause_reproduces_it(tmp_path):
    from sklearn.metrics import f1_score as sk_f1

    from ckptaudit.store.recorder import Recorder

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    logits = (2 * y - 1) * 0.8 + rng.normal(size=300)
    slip = sk_f1(y, logits > 0.5)  # 0.5 compared with logits, not probabilities
    assert abs(slip - sk_f1(y, logits > 0)) > 1e-3
    rec = Recorder(tmp_path / "r", task="binary", output="logit", live_audit=False)
    rec.save(0, val_target=y, val_output=logits, logged={"val_f1": slip})
    rec.save(1, val_target=y, val_output=logits, logged={"val_f1": 0.123})
    (found,) = _mismatches(tmp_path / "r")
    assert found.checkpoint == "epoch-0000" and found.evidence["checkpoints"] == 2
    assert found.evidence["rescored"] == pytest.approx(sk_f1(y, logits > 0), abs=1e-6)
    thr = [c for c in found.evidence["causes"] if c["cause"] == "different threshold"]
    assert thr and thr[0]["threshold"] == pytest.approx(0.6225, abs=1e-4) and "applied to logits" in found.message
    ra = audit_run(read_run(tmp_path / "r"))
    assert ra.stats[1].logged_rescored["val_f1"]["causes"] == []  # 0.123: nothing reproduces it


# -- real Lightning trainings ---------------------------------------------------------------

L = pytest.importorskip("lightning.pytorch")
import torch  # noqa: E402
from _framework_checks import breast_cancer  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from ckptaudit.integrations.lightning import CkptauditCallback  # noqa: E402


def _f1(pred, y):
    tp = float(((pred == 1) & (y == 1)).sum())
    fp = float(((pred == 1) & (y == 0)).sum())
    fn = float(((pred == 0) & (y == 1)).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


class Net(L.LightningModule):
    """Logs F1 per validation batch (Lightning averages the batches, weighted by their size)
    and accuracy synced across processes (each process's mean of its padded shard)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(30, 8), nn.ReLU(), nn.Linear(8, 1))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        return nn.functional.binary_cross_entropy_with_logits(self(batch[0])[:, 0], batch[1].float())

    def validation_step(self, batch, _):
        x, y = batch[0], batch[1]
        pred = (self(x)[:, 0] > 0).long()
        self.log("val_f1", _f1(pred, y), batch_size=len(y))
        self.log("val_acc", (pred == y).float().mean(), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def noisy_loaders(n_val=101, batch=16):
    (xt, yt), (xv, yv) = breast_cancer(n_val=n_val)
    yv = yv.copy()
    yv[1::7] = 1 - yv[1::7]  # flipped labels: the model cannot be perfect, so padding shows
    train = DataLoader(TensorDataset(torch.from_numpy(xt), torch.from_numpy(yt)), batch_size=32)
    val = DataLoader(TensorDataset(torch.from_numpy(xv), torch.from_numpy(yv), torch.arange(len(yv))), batch_size=batch)
    return train, val, yv


def fit_net(root, epochs=2, **trainer_kwargs):
    L.seed_everything(0, verbose=False)
    train, val, _ = noisy_loaders()
    cb = CkptauditCallback(root / "run", task="binary", output="logit", weights=None)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        callbacks=[cb],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        default_root_dir=root,
        **trainer_kwargs,
    )
    trainer.fit(Net(), train, val)


def test_fires_on_batch_averaged_f1_of_a_real_lightning_training_and_names_the_batch_size(tmp_path):
    fit_net(tmp_path)
    run = tmp_path / "run"
    r = read_run(run)
    _, _, yv = noisy_loaders()
    preds = read_predictions(r, r.checkpoints[-1])
    pred = (preds.output[:, 0] > 0).astype(int)
    # the premise: Lightning logged the size-weighted mean of per-batch F1, not the F1
    per_batch = [(_f1(pred[s : s + 16], yv[s : s + 16]), len(yv[s : s + 16])) for s in range(0, len(yv), 16)]
    logged = r.checkpoints[-1].logged["val_f1"]
    assert logged == pytest.approx(np.average([v for v, _ in per_batch], weights=[w for _, w in per_batch]), abs=1e-6)
    assert abs(logged - f1_score(yv, pred)) > 1e-3
    found = [f for f in _mismatches(run) if f.evidence["logged_name"] == "val_f1"]
    assert len(found) == 1
    ev = found[0].evidence
    assert ev["rescored"] == pytest.approx(
        f1_score(yv, (read_predictions(r, r.checkpoint(found[0].checkpoint)).output[:, 0] > 0)), abs=1e-6
    )
    batch = [c for c in ev["causes"] if c["cause"] == "batch-averaged metric"]
    assert batch and batch[0]["batch_size"] == 16
    assert found[0].severity == "warning"  # no ModelCheckpoint selects by it
    # accuracy, which averages over batches exactly, agrees: no finding for val_acc
    assert not [f for f in _mismatches(run) if f.evidence["logged_name"] == "val_acc"]
    assert r.checkpoints[-1].logged["val_acc"] == pytest.approx(accuracy_score(yv, pred), abs=1e-6)


def test_fires_on_padded_duplicates_of_a_real_two_process_ddp_run(tmp_path):
    fit_net(tmp_path, epochs=1, strategy="ddp_spawn", devices=2)
    run = tmp_path / "run"
    r = read_run(run)
    _, _, yv = noisy_loaders()
    assert len(yv) % 2 == 1  # the DistributedSampler repeats one row to even the shards
    preds = read_predictions(r, r.checkpoints[0])
    assert preds.ids.tolist() == list(range(len(yv)))  # recorded: every row once
    pred = (preds.output[:, 0] > 0).astype(int)
    # the premise: the logged accuracy counts row 0 (the padding) twice
    padded = (accuracy_score(yv, pred) * len(yv) + (pred[0] == yv[0])) / (len(yv) + 1)
    assert r.checkpoints[0].logged["val_acc"] == pytest.approx(padded, abs=1e-6)
    (found,) = [f for f in _mismatches(run) if f.evidence["logged_name"] == "val_acc"]
    assert found.evidence["rescored"] == pytest.approx(accuracy_score(yv, pred), abs=1e-6)
    dup = [c for c in found.evidence["causes"] if c["cause"] == "duplicated rows"]
    assert dup and dup[0]["rows"] == 1
    assert "duplicated rows" in found.message or "counted twice" in found.message
