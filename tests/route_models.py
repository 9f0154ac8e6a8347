"""One tiny real training per task, written the four ways a run reaches ckptaudit.

The same seeded model is trained twice: by a plain torch loop (which records with the
Recorder *and* saves ``checkpoint_epoch_{N}.pth`` plus ``best_model.pth`` by val_loss, as the
seed documents teach) and by Lightning (which saves ``.ckpt`` files through ModelCheckpoint
*and* records with ckptaudit's callback). Same initial weights, same batches, same SGD steps,
so both frameworks produce the same weights, and every route sees the same validation rows.

``predict --model tests/route_models.py:net_binary --data tests/route_models.py:val_binary``
loads the factories below by file path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TASKS = ("binary", "multiclass", "regression")
FEATURES = 6
EPOCHS = 4
WIDTH = {"binary": 1, "multiclass": 3, "regression": 1}
LR = {"binary": 0.3, "multiclass": 0.3, "regression": 0.05}


def _data(task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng({"binary": 1, "multiclass": 2, "regression": 3}[task])
    x = rng.normal(size=(260, FEATURES)).astype(np.float32)
    score = x @ rng.normal(size=FEATURES) + 0.8 * rng.normal(size=260)
    if task == "binary":
        y = (score > 0.3).astype(np.int64)
    elif task == "multiclass":
        y = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3])).astype(np.int64)
    else:
        y = score.astype(np.float32)
    return x[:160], y[:160], x[160:], y[160:]


def val_rows(task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validation (inputs, target, ids) of ``task``."""
    _, _, xv, yv = _data(task)
    return xv, yv, np.arange(1000, 1000 + len(yv))


def val_binary():
    return val_rows("binary")


def val_multiclass():
    return val_rows("multiclass")


def val_regression():
    return val_rows("regression")


def net(task: str):
    """The architecture: 6 -> 8 -> width (one logit, three logits or one value)."""
    from torch import nn

    return nn.Sequential(nn.Linear(FEATURES, 8), nn.Tanh(), nn.Linear(8, WIDTH[task]))


def net_binary():
    return net("binary")


def net_multiclass():
    return net("multiclass")


def net_regression():
    return net("regression")


def _loss(task: str, out, y):
    from torch import nn

    if task == "binary":
        return nn.functional.binary_cross_entropy_with_logits(out, y.float())
    if task == "multiclass":
        return nn.functional.cross_entropy(out, y)
    return nn.functional.mse_loss(out, y)


def _head(task: str, out):
    return out if task == "multiclass" else out.squeeze(-1)


def recorder_kwargs(task: str) -> dict:
    return {"task": task, "output": "value" if task == "regression" else "logit"}


def train_plain(task: str, root: Path) -> dict:
    """The plain loop: records with the Recorder, saves checkpoint_epoch_{N}.pth each epoch and
    best_model.pth (the seed documents' dict with the optimizer state) when val_loss improves."""
    import torch

    from ckptaudit import Recorder

    xt, yt, xv, yv = _data(task)
    _, _, ids = val_rows(task)
    torch.manual_seed(0)
    model = net(task)
    opt = torch.optim.SGD(model.parameters(), lr=LR[task])
    rec = Recorder(root / "recorded", **recorder_kwargs(task), selected_by="val_loss", mode="min")
    files = root / "files"
    files.mkdir(parents=True)
    X, Y, XV, YV = (torch.from_numpy(a) for a in (xt, yt, xv, yv))
    best, best_epoch = float("inf"), -1
    for epoch in range(EPOCHS):
        model.train()
        for i in range(0, len(Y), 40):
            opt.zero_grad()
            _loss(task, _head(task, model(X[i : i + 40])), Y[i : i + 40]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            vo = _head(task, model(XV))
            val_loss = float(_loss(task, vo, YV))
        torch.save(model.state_dict(), files / f"checkpoint_epoch_{epoch}.pth")
        if val_loss < best:
            best, best_epoch = val_loss, epoch
            torch.save(
                {
                    "epoch": epoch,
                    "model_state_dict": model.state_dict(),
                    "optimizer_state_dict": opt.state_dict(),
                    "val_loss": val_loss,
                },
                files / "best_model.pth",
            )
        rec.save(epoch, model, val_target=yv, val_output=vo, val_ids=ids, val_inputs=xv, logged={"val_loss": val_loss})
    rec.choose(best_epoch)
    return {"best_epoch": best_epoch}


def train_lightning(task: str, root: Path) -> dict:
    """The same training under Lightning: ModelCheckpoint(save_top_k=-1) writes the .ckpt files
    `import lightning` reads; CkptauditCallback records the run during training."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    from ckptaudit.integrations.lightning import CkptauditCallback

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net(task)

        def forward(self, x):
            return _head(task, self.net(x))

        def training_step(self, batch, _):
            x, y = batch
            return _loss(task, self(x), y)

        def validation_step(self, batch, _):
            x, y = batch[0], batch[1]
            self.log("val_loss", _loss(task, self(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=LR[task])

    xt, yt, xv, yv = _data(task)
    _, _, ids = val_rows(task)
    torch.manual_seed(0)
    module = Module()
    train = DataLoader(TensorDataset(torch.from_numpy(xt), torch.from_numpy(yt)), batch_size=40)
    val = DataLoader(TensorDataset(torch.from_numpy(xv), torch.from_numpy(yv), torch.from_numpy(ids)), batch_size=len(yv))
    ckpt = ModelCheckpoint(dirpath=root / "lightning" / "checkpoints", monitor="val_loss", mode="min", save_top_k=-1)
    callback = CkptauditCallback(root / "callback", **recorder_kwargs(task), weights="state_dict")
    trainer = L.Trainer(
        max_epochs=EPOCHS,
        callbacks=[ckpt, callback],
        logger=CSVLogger(root / "lightning" / "logs"),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=True,
        num_sanity_val_steps=0,
        accelerator="cpu",
        devices=1,
        deterministic=True,
    )
    trainer.fit(module, train, val)
    return {"best_model_path": ckpt.best_model_path}


def run_json(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())
