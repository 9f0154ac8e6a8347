"""Models, data and tiny real training runs for the import/predict tests.

Used two ways: the tests call the ``train_*`` functions to produce what each framework
leaves on disk, and ``ckptaudit predict --model tests/inference_models.py:mlp --data
tests/inference_models.py:val_data`` loads the factories below by file path (also in
spawned pool workers and Ray tasks).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np

FEATURES = 30


def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    tr, va = order[:400], order[400:]
    return x[tr], y[tr].astype(np.int64), x[va], y[va].astype(np.int64)


def val_data():
    """Validation (inputs, target, ids) as numpy arrays."""
    _, _, xv, yv = _split()
    return xv, yv, np.arange(400, 400 + len(yv))


def train_data():
    """Training (inputs, target, ids)."""
    xt, yt, _, _ = _split()
    return xt, yt, np.arange(len(yt))


def val_dataset():
    """The validation set as a torch Dataset of (x, y, id) rows."""
    import torch
    from torch.utils.data import TensorDataset

    xv, yv, ids = val_data()
    return TensorDataset(torch.from_numpy(xv), torch.from_numpy(yv), torch.from_numpy(ids))


def val_loader():
    """The validation set as a DataLoader of (x, y, ids) batches."""
    from torch.utils.data import DataLoader

    return DataLoader(val_dataset(), batch_size=37, shuffle=False)


def mlp():
    """The plain-loop architecture: 30 -> 16 -> 2 logits."""
    from torch import nn

    return nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Linear(16, 2))


def slow_mlp():
    """``mlp`` whose forward pass sleeps, so a test can kill predict mid-checkpoint."""
    import time

    from torch import nn

    class Slow(nn.Sequential):
        def forward(self, x):
            time.sleep(0.15)
            return super().forward(x)

    return Slow(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Linear(16, 2))


def train_plain(folder: Path, epochs: int = 4, recorder_run: Path | None = None) -> list[Path]:
    """A plain loop saving ``model_epoch_{e}.pt`` (state_dict) each epoch, optionally also
    recording the run with ckptaudit's Recorder."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    xt, yt, xv, yv = _split()
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    rec = None
    if recorder_run is not None:
        from ckptaudit import Recorder

        rec = Recorder(recorder_run, task="multiclass", output="logit", classes=["malignant", "benign"])
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    X, Y = torch.from_numpy(xt), torch.from_numpy(yt)
    for epoch in range(1, epochs + 1):
        model.train()
        for i in range(0, len(Y), 50):
            opt.zero_grad()
            nn.functional.cross_entropy(model(X[i : i + 50]), Y[i : i + 50]).backward()
            opt.step()
        path = folder / f"model_epoch_{epoch}.pt"
        torch.save(model.state_dict(), path)
        files.append(path)
        if rec is not None:
            model.eval()
            with torch.no_grad():
                vo = model(torch.from_numpy(xv))
                to = model(X)
            _, _, ids = val_data()
            rec.save(
                epoch,
                model,
                val_target=yv,
                val_output=vo,
                val_ids=ids,
                val_inputs=xv,
                train_target=yt,
                train_output=to,
                train_ids=np.arange(len(yt)),
                train_inputs=xt,
                logged={"val_loss": float(nn.functional.cross_entropy(vo, torch.from_numpy(yv)))},
            )
    return files


# --------------------------------------------------------------------------- lightning


def lightning_net():
    """The inner network of the LightningModule (its keys carry a 'net.' prefix in the .ckpt)."""
    return mlp()


def train_lightning(root: Path, epochs: int = 3) -> Path:
    """Lightning with ModelCheckpoint(save_top_k=-1, save_last=True) and a CSV logger.

    The file name puts val_acc first, so name order is not epoch order."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp()

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, _):
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def validation_step(self, batch, _):
            x, y = batch
            out = self(x)
            self.log("val_loss", nn.functional.cross_entropy(out, y))
            self.log("val_acc", (out.argmax(1) == y).float().mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.02)

    L.seed_everything(0, verbose=False)
    xt, yt, xv, yv = _split()
    train = DataLoader(TensorDataset(torch.from_numpy(xt), torch.from_numpy(yt)), batch_size=50)
    val = DataLoader(TensorDataset(torch.from_numpy(xv), torch.from_numpy(yv)), batch_size=len(yv))
    ckpt = ModelCheckpoint(
        dirpath=root / "checkpoints",
        filename="acc{val_acc:.4f}-{epoch}",
        monitor="val_acc",
        mode="max",
        save_top_k=-1,
        save_last=True,
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=[ckpt],
        logger=CSVLogger(root / "logs"),
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        log_every_n_steps=1,
        accelerator="cpu",
    )
    trainer.fit(Module(), train, val)
    return root


# --------------------------------------------------------------------------- hugging face

SEQ_LEN = 8


def _hf_config():
    from transformers import BertConfig

    return BertConfig(
        vocab_size=20,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=SEQ_LEN,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def hf_model():
    """A tiny BERT classifier, built from a config in code (nothing downloaded)."""
    from transformers import BertForSequenceClassification

    return BertForSequenceClassification(_hf_config())


def _tokens(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 20, size=(n, SEQ_LEN))
    label = (ids == 7).any(axis=1).astype(np.int64)
    label ^= (rng.random(n) < 0.1).astype(np.int64)  # label noise: no epoch is perfect
    return ids.astype(np.int64), label


def hf_val_data():
    """Validation ({input_ids, attention_mask}, labels) of the token task: dict inputs are
    passed to the model as keyword arguments."""
    ids, labels = _tokens(120, 1)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}, labels


def train_hf(out: Path, epochs: int = 4) -> Path:
    """Trainer with save/eval per epoch, save_total_limit=2 and load_best_model_at_end, so
    rotation deletes folders whose evaluations stay in trainer_state.json."""
    import torch
    from transformers import Trainer, TrainingArguments

    class Tokens(torch.utils.data.Dataset):
        def __init__(self, x, y):
            self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return {"input_ids": self.x[i], "labels": self.y[i]}

    def accuracy(pred):
        return {"accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}

    torch.manual_seed(0)
    args = TrainingArguments(
        output_dir=str(out),
        num_train_epochs=epochs,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=200,
        learning_rate=5e-3,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        logging_strategy="epoch",
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=hf_model(),
        args=args,
        train_dataset=Tokens(*_tokens(200, 0)),
        eval_dataset=Tokens(*_tokens(120, 1)),
        compute_metrics=accuracy,
    )
    trainer.train()
    return out


# --------------------------------------------------------------------------- keras


def keras_model():
    """A small Keras classifier emitting softmax probabilities."""
    import keras

    return keras.Sequential(
        [keras.Input((FEATURES,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2, activation="softmax")]
    )


def train_keras(folder: Path, epochs: int = 3) -> Path:
    """ModelCheckpoint per epoch (file template counts from 1) and a CSVLogger (from 0)."""
    import keras

    keras.utils.set_random_seed(0)
    xt, yt, xv, yv = _split()
    model = keras_model()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    folder.mkdir(parents=True, exist_ok=True)
    model.fit(
        xt,
        yt,
        validation_data=(xv, yv),
        epochs=epochs,
        batch_size=50,
        verbose=0,
        callbacks=[
            keras.callbacks.ModelCheckpoint(str(folder / "epoch{epoch:02d}-{val_accuracy:.4f}.keras")),
            keras.callbacks.CSVLogger(str(folder / "log.csv")),
        ],
    )
    return folder


# --------------------------------------------------------------------------- a malicious pickle


class Touch:
    """Unpickling this calls ``open(marker, 'w')``: proof that code from a file ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_malicious(path: Path, marker: Path) -> None:
    """A torch file whose state_dict holds a pickle that touches ``marker`` when loaded."""
    import torch

    torch.save({"0.weight": Touch(str(marker))}, path)
