"""Import from the loggers people use, and the candidates a framework did not keep.

- Lightning's default ``TensorBoardLogger`` (no metrics.csv): every logged metric of every
  epoch survives import, read by TensorBoard's own loader and, without ``tensorboard``,
  by the built-in reader (the two are compared on the same real event files).
- Lightning's default ``save_top_k=1`` keeps one ``.ckpt``: the other validated epochs become
  metrics-only checkpoints, so the run knows how many candidates training looked at.
- A W&B history (the CSV export, or one JSON object per ``log`` call): every epoch's metrics.
- Hugging Face regression, where ``eval_loss`` equals ``eval_mse`` at every evaluation:
  ``selected_by`` is recorded instead of silently left out.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

import route_models as rm  # noqa: E402

from ckptaudit.cli import app  # noqa: E402

MODELS = Path(__file__).resolve().parent / "route_models.py"
runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def train_lightning(root: Path, logger: str, save_top_k: int) -> list[dict[str, float]]:
    """The binary route model under Lightning, logging val_loss and val_acc; returns what
    Lightning itself measured at each validation (callback_metrics), the truth to compare with."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import Callback, ModelCheckpoint
    from torch.utils.data import DataLoader, TensorDataset

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = rm.net("binary")

        def forward(self, x):
            return self.net(x).squeeze(-1)

        def training_step(self, batch, _):
            loss = rm._loss("binary", self(batch[0]), batch[1])
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch, _):
            out = self(batch[0])
            self.log("val_loss", rm._loss("binary", out, batch[1]))
            self.log("val_acc", ((out > 0).long() == batch[1]).float().mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.3)

    seen: list[dict[str, float]] = []

    class Truth(Callback):
        def on_validation_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                seen.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val")})

    if logger == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        log = TensorBoardLogger(root)
    else:
        from lightning.pytorch.loggers import CSVLogger

        log = CSVLogger(root)
    xt, yt, xv, yv = rm._data("binary")
    torch.manual_seed(0)
    trainer = L.Trainer(
        max_epochs=rm.EPOCHS,
        callbacks=[ModelCheckpoint(dirpath=root / "ckpts", monitor="val_loss", save_top_k=save_top_k), Truth()],
        logger=log,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        devices=1,
    )
    train = DataLoader(TensorDataset(torch.from_numpy(xt), torch.from_numpy(yt)), batch_size=40)
    val = DataLoader(TensorDataset(torch.from_numpy(xv), torch.from_numpy(yv)), batch_size=len(yv))
    trainer.fit(Module(), train, val)
    return seen


# --------------------------------------------------------------------------- tensorboard


@pytest.fixture(scope="module")
def tensorboard_run(tmp_path_factory) -> tuple[Path, list[dict[str, float]]]:
    pytest.importorskip("lightning")
    pytest.importorskip("tensorboard")
    root = tmp_path_factory.mktemp("tb")
    return root, train_lightning(root, "tensorboard", save_top_k=-1)


def test_lightning_with_tensorboard_keeps_every_logged_metric(tensorboard_run, tmp_path):
    root, truth = tensorboard_run
    assert not list(root.rglob("metrics.csv")) and list(root.rglob("events.out.tfevents.*"))
    run = tmp_path / "run"
    result = cli("import", "lightning", root, run, "--task", "binary")
    assert result.exit_code == 0, result.output
    for epoch, measured in enumerate(truth):
        logged = json.loads((run / "checkpoints" / f"epoch-{epoch:04d}" / "meta.json").read_text())["logged"]
        assert {k: logged[k] for k in measured} == measured  # val_acc too, not only the monitored val_loss
        assert "train_loss" in logged and "hp_metric" not in logged


def test_the_builtin_event_reader_reads_what_tensorboard_reads(tensorboard_run):
    from ckptaudit.inference import logs

    root, _ = tensorboard_run
    files = sorted(root.rglob("events.out.tfevents.*"))
    for f in files:
        assert list(logs._scalars_minimal(f)) == list(logs._scalars(f))
        assert len(list(logs._scalars(f))) >= 3 * rm.EPOCHS


# --------------------------------------------------------------------------- save_top_k=1


def test_epochs_lightning_did_not_keep_are_metrics_only_candidates(tmp_path):
    pytest.importorskip("lightning")
    root = tmp_path / "src"
    truth = train_lightning(root, "csv", save_top_k=1)
    assert len(list((root / "ckpts").glob("*.ckpt"))) == 1
    run = tmp_path / "run"
    result = cli("import", "lightning", root, run, "--task", "binary", "-f", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["checkpoints"]
    assert len(rows) == rm.EPOCHS == len(truth)
    assert sorted(r["weights"] for r in rows) == ["hardlink"] + ["none"] * (rm.EPOCHS - 1)
    for epoch, measured in enumerate(truth):
        meta = json.loads((run / "checkpoints" / f"epoch-{epoch:04d}" / "meta.json").read_text())
        assert meta["logged"]["val_loss"] == pytest.approx(measured["val_loss"], rel=1e-6)
    done = cli("predict", run, "--model", f"{MODELS}:net_binary", "--data", f"{MODELS}:val_binary", "-f", "json")
    assert done.exit_code == 0, done.output
    actions = sorted(e["action"] for e in json.loads(done.stdout)["entries"])
    assert actions == ["metrics-only"] * (rm.EPOCHS - 1) + ["predicted"]
    rank = cli("rank", run, "-m", "val_loss:mode=min", "-f", "json")
    assert rank.exit_code == 0 and len(json.loads(rank.stdout)) == rm.EPOCHS  # every candidate, by its logged value
    # the gate, by a metric that needs predictions, says it judged one candidate of all the epochs
    gate = cli("check", run, "-m", "recall", "-f", "json")
    best = next(r for r in json.loads(gate.stdout)["rules"] if r["name"] == "chosen-is-best")
    assert best["details"]["candidates"] == 1
    assert f"1 of {rm.EPOCHS} checkpoints had predictions" in best["message"]
    assert "only its logged metrics were kept" in best["message"]


# --------------------------------------------------------------------------- weights & biases


@pytest.fixture(scope="module")
def loop(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("loop")
    rm.train_plain("binary", root)
    logged = {}
    for ckpt in sorted((root / "recorded" / "checkpoints").iterdir()):
        meta = json.loads((ckpt / "meta.json").read_text())
        logged[meta["epoch"]] = meta["logged"]
    return {"files": root / "files", "logged": logged, "root": root}


def _wandb_rows(logged: dict[int, dict[str, float]]) -> list[dict]:
    """The rows wandb.log({"epoch": e, **metrics}) leaves in a run's history, with W&B's own
    _step/_runtime/_timestamp columns (and a mid-epoch row without epoch, as W&B writes for
    a step-level log)."""
    rows: list[dict] = []
    for e, values in logged.items():
        rows.append({"_step": len(rows), "_runtime": 0.5 * len(rows), "_timestamp": 1.7e9 + len(rows), "train/batch_loss": 0.1})
        rows.append({"_step": len(rows), "_runtime": 0.5 * len(rows), "_timestamp": 1.7e9 + len(rows), "epoch": e, **values})
    return rows


@pytest.mark.parametrize("form", ["csv", "jsonl"])
def test_a_wandb_history_gives_every_epoch_its_metrics(loop, tmp_path, form):
    rows = _wandb_rows(loop["logged"])
    if form == "csv":  # the run history export: one column per key, empty cells where a row lacks one
        path = tmp_path / "wandb_export.csv"
        keys = sorted({k for r in rows for k in r})
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, keys)
            writer.writeheader()
            writer.writerows(rows)
    else:
        path = tmp_path / "wandb-history.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"
    glob = f"{loop['files']}/checkpoint_epoch_*.pth"
    result = cli("import", "files", glob, run, "--task", "binary", "--log", path, "--selected-by", "val_loss:min")
    assert result.exit_code == 0, result.output
    for epoch, values in loop["logged"].items():
        logged = json.loads((run / "checkpoints" / f"epoch-{epoch:04d}" / "meta.json").read_text())["logged"]
        assert logged == values  # exactly what training logged: no _step, _runtime or _timestamp


def test_a_log_without_epochs_is_a_one_line_error(tmp_path, loop):
    path = tmp_path / "wandb-history.jsonl"
    path.write_text(json.dumps({"_step": 0, "val_loss": 0.3}) + "\n")
    result = cli("import", "files", f"{loop['files']}/checkpoint_epoch_*.pth", tmp_path / "run", "--log", path)
    assert result.exit_code == 2 and "epoch" in result.output and len(result.output.strip().splitlines()) == 1


# --------------------------------------------------------------------------- hugging face regression


def test_hf_regression_records_selected_by_when_eval_loss_equals_eval_mse(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    import torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    rng = np.random.default_rng(0)
    ids = rng.integers(1, 20, size=(96, 8))
    target = ((ids == 7).sum(axis=1) + 0.1 * rng.normal(size=96)).astype(np.float32)

    class Rows(torch.utils.data.Dataset):
        def __init__(self, lo, hi):
            self.x, self.y = torch.from_numpy(ids[lo:hi]), torch.from_numpy(target[lo:hi])

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return {"input_ids": self.x[i], "labels": self.y[i]}

    def mse(pred):
        # NOTE: the loss the model computed is this MSE; float32 as the Trainer's loss is
        p = torch.from_numpy(pred.predictions).squeeze(-1)
        return {"mse": float(torch.nn.functional.mse_loss(p, torch.from_numpy(pred.label_ids)))}

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=20, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        max_position_embeddings=8, num_labels=1, problem_type="regression",
    )  # fmt: skip
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), num_train_epochs=3, per_device_train_batch_size=16, per_device_eval_batch_size=64,
        learning_rate=5e-3, eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
        metric_for_best_model="mse", greater_is_better=False, logging_strategy="epoch", report_to=[], use_cpu=True,
        seed=0, disable_tqdm=True,
    )  # fmt: skip
    Trainer(
        model=BertForSequenceClassification(config), args=args, train_dataset=Rows(0, 64), eval_dataset=Rows(64, 96),
        compute_metrics=mse,
    ).train()  # fmt: skip
    states = sorted((tmp_path / "out").glob("checkpoint-*/trainer_state.json"))
    history = json.loads(states[-1].read_text())["log_history"]
    evals = [e for e in history if "eval_mse" in e]
    assert evals and all(e["eval_loss"] == e["eval_mse"] for e in evals)  # the case of the issue
    run = tmp_path / "run"
    result = cli("import", "hf", tmp_path / "out", run, "--task", "regression")
    assert result.exit_code == 0, result.output
    assert rm.run_json(run)["selected_by"] == {"metric": "eval_mse", "mode": "min"}
    assert "equal at every evaluation" in result.output


def test_an_offline_wandb_run_gives_every_epoch_its_metrics(loop, tmp_path, monkeypatch):
    """A real offline W&B run (run-<id>.wandb), read without the wandb package's help."""
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_ = wandb.init(project="routes", dir=str(tmp_path), mode="offline")
    for epoch, values in loop["logged"].items():
        run_.log({"train/batch_loss": 0.1})  # a step-level row without an epoch
        run_.log({"epoch": epoch, **values})
    run_.finish()
    folder = next((tmp_path / "wandb").glob("offline-run-*"))
    run = tmp_path / "run"
    glob = f"{loop['files']}/checkpoint_epoch_*.pth"
    result = cli("import", "files", glob, run, "--task", "binary", "--log", folder)
    assert result.exit_code == 0, result.output
    for epoch, values in loop["logged"].items():
        logged = json.loads((run / "checkpoints" / f"epoch-{epoch:04d}" / "meta.json").read_text())["logged"]
        assert logged == values
