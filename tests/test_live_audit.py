"""The live audit (ckptaudit/auditing/live.py): the cheap findings at every save, in the
Recorder and the framework callbacks; the same findings as `audit` afterwards."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from ckptaudit.auditing.engine import audit_run
from ckptaudit.auditing.live import LIVE_CODES, LiveAudit, LiveAuditError
from ckptaudit.errors import UsageError
from ckptaudit.store.reader import read_predictions, read_run
from ckptaudit.store.recorder import Recorder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs"


def replay(run_path):
    """Feed a recorded run to a LiveAudit checkpoint by checkpoint, as a recorder would."""
    run = read_run(run_path)
    said: list[str] = []
    live = LiveAudit(run, report=said.append)
    for ckpt in run.checkpoints:
        live.observe(ckpt, read_predictions(run, ckpt))
    return run, live, said


def audited(run_path):
    return [f.as_dict() for f in audit_run(read_run(run_path)).findings if f.code in LIVE_CODES]


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()))
def test_the_live_findings_at_the_last_save_are_the_audits(name):
    _, live, said = replay(FIXTURES / name)
    assert [f.as_dict() for f in live.findings] == audited(FIXTURES / name)
    assert len(said) == len({(f.code, f.evidence.get("logged_name")) for f in live.findings})


def _rewrite(ckpt_path, change):
    with np.load(ckpt_path / "val.npz") as npz:
        arrays = dict(npz)
    change(arrays)
    with open(ckpt_path / "val.npz", "wb") as fh:
        np.savez(fh, **arrays)


def test_changed_val_set_non_finite_outputs_and_a_wrong_logged_metric_live_and_after(tmp_path):
    run_path = tmp_path / "fraud"
    shutil.copytree(FIXTURES / "fraud", run_path)
    ckpts = sorted((run_path / "checkpoints").iterdir())
    _rewrite(ckpts[4], lambda a: a["output"].__setitem__(slice(0, 3), np.nan))

    def flip(a):
        a["target"] = a["target"].copy()
        a["target"][:5] = 1 - a["target"][:5]

    _rewrite(ckpts[7], flip)
    meta = json.loads((ckpts[2] / "meta.json").read_text())
    meta["logged"]["val_accuracy"] -= 0.02
    (ckpts[2] / "meta.json").write_text(json.dumps(meta))
    run, live, said = replay(run_path)
    codes = {f.code for f in live.findings}
    assert {"val-set-changed", "non-finite-outputs", "logged-metric-mismatch", "accuracy-paradox"} <= codes
    assert [f.as_dict() for f in live.findings] == audited(run_path)
    # each said once, at the checkpoint where it first shows
    assert sum("val-set-changed" in s for s in said) == 1 and sum("non-finite-outputs" in s for s in said) == 1


def _leaky_data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(np.int64)
    return x, y


def test_the_recorder_warns_at_epoch_0_and_raise_stops_at_the_first_error(tmp_path):
    x, y = _leaky_data()
    xv, yv = x[:60], y[:60]  # the validation rows are training rows: a planted leak
    with pytest.warns(UserWarning, match="ckptaudit live audit: error train-val-overlap"):
        rec = Recorder(tmp_path / "a", task="binary", output="logit")
        rec.save(0, val_target=yv, val_output=xv[:, 0], val_inputs=xv, train_target=y, train_output=x[:, 0], train_inputs=x)
    assert [f.code for f in rec.live.findings] == ["train-val-overlap"]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="ckptaudit live audit")  # said once, not again at epoch 1
        rec.save(1, val_target=yv, val_output=xv[:, 0], val_inputs=xv, train_target=y, train_output=x[:, 0], train_inputs=x)
    rec2 = Recorder(tmp_path / "b", task="binary", output="logit", on_finding="raise", report=lambda m: None)
    with pytest.raises(LiveAuditError, match="train-val-overlap") as raised:
        rec2.save(0, val_target=yv, val_output=xv[:, 0], val_inputs=xv, train_target=y, train_output=x[:, 0], train_inputs=x)
    assert raised.value.finding.evidence["count"] == 60
    assert [c.name for c in read_run(tmp_path / "b").checkpoints] == ["epoch-0000"]  # written, then raised
    # live off: nothing is said, the run is the same
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="ckptaudit live audit")
        rec3 = Recorder(tmp_path / "c", task="binary", output="logit", live_audit=False)
        rec3.save(0, val_target=yv, val_output=xv[:, 0], val_inputs=xv, train_target=y, train_output=x[:, 0], train_inputs=x)
    assert rec3.live is None
    with pytest.raises(UsageError, match="on_finding"):
        Recorder(tmp_path / "d", task="binary", output="logit", on_finding="stop")
    assert not (tmp_path / "d").exists()


def test_recorder_live_findings_equal_audit_afterwards(tmp_path):
    x, y = _leaky_data(400, seed=1)
    xv, yv = x[:80], np.where(np.arange(80) < 76, 0, 1)  # imbalanced and leaky
    rec = Recorder(tmp_path / "r", task="binary", output="logit", selected_by="val_acc", mode="max", report=lambda m: None)
    for epoch in range(3):
        out = np.full(80, -2.0 + epoch * 0.1, dtype=np.float32)  # always the majority class
        logged = {"val_acc": float(np.mean(yv == 0)) - (0.05 if epoch == 1 else 0.0)}
        rec.save(
            epoch,
            val_target=yv,
            val_output=out,
            val_inputs=xv,
            train_target=y,
            train_output=x[:, 0],
            train_inputs=x,
            logged=logged,
        )
    codes = [f.code for f in rec.live.findings]
    assert set(codes) == {"train-val-overlap", "accuracy-paradox", "logged-metric-mismatch"}
    assert [f.as_dict() for f in rec.live.findings] == audited(tmp_path / "r")


# -- Lightning ------------------------------------------------------------------------------

L = pytest.importorskip("lightning.pytorch")
import torch  # noqa: E402
from _framework_checks import breast_cancer  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from ckptaudit.integrations.lightning import CkptauditCallback  # noqa: E402


class Net(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        return nn.functional.binary_cross_entropy_with_logits(self(batch[0])[:, 0], batch[1].float())

    def validation_step(self, batch, _):
        x, y = batch[0], batch[1]
        self.log("val_acc", ((self(x)[:, 0] > 0).long() == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


class Epochs(L.Callback):
    """Notes, at each train epoch's start, how many live-audit messages were said so far."""

    def __init__(self, said):
        self.said, self.at_start = said, []

    def on_train_epoch_start(self, trainer, pl_module):
        self.at_start.append(len([m for m in self.said if "ckptaudit live audit" in m]))


def fit(root, *callbacks, leak=True, epochs=2):
    L.seed_everything(0, verbose=False)
    (xt, yt), (xv, yv) = breast_cancer()
    if leak:
        xv, yv = xt[:101], yt[:101]  # validation rows drawn from the training set
    train = DataLoader(TensorDataset(torch.from_numpy(xt), torch.from_numpy(yt)), batch_size=32, shuffle=True)
    val = DataLoader(TensorDataset(torch.from_numpy(xv), torch.from_numpy(yv)), batch_size=32)
    model = Net()
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        callbacks=list(callbacks),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=root,
    )
    trainer.fit(model, train, val)
    return trainer, model


def test_a_planted_leak_is_reported_during_epoch_0_of_a_real_lightning_training(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        said = _Said(caught)
        epochs = Epochs(said)
        cb = CkptauditCallback(tmp_path / "run", task="binary", output="logit", train_sample=300, weights=None)
        fit(tmp_path, cb, epochs)
    # nothing before epoch 0; the leak said before epoch 1 starts
    assert epochs.at_start == [0, 1]
    (msg,) = [m for m in said if "live audit" in m]
    assert "error train-val-overlap" in msg and "101 of 101 validation rows" in msg
    assert [f.code for f in audit_run(read_run(tmp_path / "run")).findings if f.code in LIVE_CODES] == ["train-val-overlap"]


class _Said(list):
    """The messages of the warnings caught so far (a live view of ``caught``)."""

    def __init__(self, caught):
        super().__init__()
        self.caught = caught

    def __iter__(self):
        return iter([str(w.message) for w in self.caught])

    def __len__(self):
        return len(self.caught)


def test_on_finding_raise_stops_lightning_in_epoch_0(tmp_path):
    epochs = Epochs([])
    cb = CkptauditCallback(tmp_path / "run", task="binary", output="logit", train_sample=300, weights=None, on_finding="raise")
    with pytest.raises(LiveAuditError, match="train-val-overlap"):
        fit(tmp_path, cb, epochs, epochs=3)
    assert len(epochs.at_start) == 1  # epoch 1 never started
    assert [c.name for c in read_run(tmp_path / "run").checkpoints] == ["epoch-0000"]
    with pytest.raises(UsageError, match="on_finding"):
        CkptauditCallback(tmp_path / "x", task="binary", output="logit", on_finding="halt")


def test_training_with_the_live_audit_gives_identical_weights(tmp_path, monkeypatch):
    def weights(live):
        cb = CkptauditCallback(tmp_path / str(live) / "run", task="binary", output="logit", train_sample=300, live_audit=live)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, model = fit(tmp_path / str(live), cb, epochs=3)
        return [p.detach().clone() for p in model.parameters()]

    on, off = weights(True), weights(False)
    assert all(torch.equal(p, q) for p, q in zip(on, off, strict=True))
    # the test can fail: a live audit that drew from torch's generator would shift training
    observe = LiveAudit.observe

    def drawing(self, *args):
        torch.rand(1)
        return observe(self, *args)

    monkeypatch.setattr(LiveAudit, "observe", drawing)
    shutil.rmtree(tmp_path / "True")
    assert not all(torch.equal(p, q) for p, q in zip(weights(True), off, strict=True))
