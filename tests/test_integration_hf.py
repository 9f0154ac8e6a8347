"""Hugging Face Trainer integration: a tiny PreTrainedModel built from a config in code,
trained on scikit-learn's wine data (no download)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("accelerate")
import torch  # noqa: E402
from _framework_checks import cli_json, run_the_verbs, val_arrays  # noqa: E402
from sklearn.datasets import load_wine  # noqa: E402
from sklearn.metrics import accuracy_score, mean_squared_error  # noqa: E402
from torch import nn  # noqa: E402
from transformers import PretrainedConfig, PreTrainedModel, Trainer, TrainerCallback, TrainingArguments  # noqa: E402
from transformers.modeling_outputs import SequenceClassifierOutput  # noqa: E402

from ckptaudit.errors import UsageError  # noqa: E402
from ckptaudit.integrations import sample_rows  # noqa: E402
from ckptaudit.integrations.hf import CkptauditTrainerCallback  # noqa: E402
from ckptaudit.store.reader import read_predictions, read_run  # noqa: E402
from ckptaudit.store.recorder import hash_rows  # noqa: E402

EPOCHS = 4


class TinyConfig(PretrainedConfig):
    model_type = "ckptaudit-tiny-mlp"

    def __init__(self, n_features=13, hidden=16, num_labels=3, **kwargs):
        super().__init__(num_labels=num_labels, **kwargs)
        self.n_features, self.hidden = n_features, hidden


class TinyModel(PreTrainedModel):
    config_class = TinyConfig
    main_input_name = "x"

    def __init__(self, config):
        super().__init__(config)
        self.net = nn.Sequential(
            nn.Linear(config.n_features, config.hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(config.hidden, config.num_labels)
        )
        self.post_init()

    def forward(self, x=None, labels=None):
        logits = self.net(x)
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


class Rows(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


def wine():
    x, y = load_wine(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order].astype(np.float32), y[order].astype(np.int64)
    x = (x - x[:120].mean(0)) / x[:120].std(0)
    return (x[:120], y[:120]), (x[120:], y[120:])


def accuracy(eval_pred):
    return {"accuracy": accuracy_score(eval_pred.label_ids, eval_pred.predictions.argmax(1))}


def train(tmp_path, callback=None, epochs=EPOCHS, **args):
    torch.manual_seed(0)
    (xt, yt), (xv, yv) = wine()
    model = TinyModel(TinyConfig())
    options = dict(
        output_dir=str(tmp_path / "hf"),
        num_train_epochs=epochs,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=16,
        learning_rate=0.05,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        save_total_limit=1,
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    targs = TrainingArguments(**{**options, **args})
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=Rows(xt, yt),
        eval_dataset=Rows(xv, yv),
        compute_metrics=callback.wrap(accuracy) if callback else accuracy,
        callbacks=[callback] if callback else [],
    )
    trainer.train()
    return trainer


def test_every_evaluation_is_recorded_and_chosen_is_the_trainers_best(tmp_path):
    run = tmp_path / "run"
    (_, _), (xv, yv) = wine()
    cb = CkptauditTrainerCallback(
        run, task="multiclass", output="logit", classes=["c0", "c1", "c2"], val_ids=np.arange(len(yv)) + 500, val_inputs=xv
    )
    trainer = train(tmp_path, cb)
    r = read_run(run)
    assert [c.epoch for c in r.checkpoints] == list(range(1, EPOCHS + 1))  # the epoch HF logs after each epoch
    assert r.selected_by.metric == "eval_accuracy" and r.selected_by.mode == "max"
    best_step = trainer.state.best_global_step
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best_step}")
    assert r.checkpoint(r.chosen).step == best_step
    # rotation kept one HF folder (plus the best); the run kept every epoch
    assert len(list((tmp_path / "hf").glob("checkpoint-*"))) < EPOCHS
    for ckpt in r.checkpoints:
        preds = val_arrays(run, ckpt.name)
        assert preds.target.tolist() == yv.tolist() and preds.ids.tolist() == list(range(500, 500 + len(yv)))
        assert len(set(preds.input_hash.tolist())) == len(yv)
        assert ckpt.logged["eval_accuracy"] == pytest.approx(accuracy_score(yv, preds.output.argmax(1)))
        assert "eval_loss" in ckpt.logged and "loss" in ckpt.logged
        reloaded = TinyModel.from_pretrained(ckpt.path).eval()
        with torch.no_grad():
            np.testing.assert_allclose(reloaded(torch.from_numpy(xv)).logits.numpy(), preds.output, rtol=1e-5, atol=1e-6)
    verbs = run_the_verbs(run, "eval_accuracy")
    assert verbs["check"]["chosen"] == r.chosen
    assert verbs["rank"][0]["eval_accuracy"] == max(c.logged["eval_accuracy"] for c in r.checkpoints)


def test_recording_does_not_change_training_nor_add_an_inference_pass(tmp_path, monkeypatch):
    calls = []
    original = TinyModel.forward

    def counted(self, x=None, labels=None):
        calls.append(len(x))
        return original(self, x, labels)

    monkeypatch.setattr(TinyModel, "forward", counted)
    plain = [h for h in train(tmp_path / "a").state.log_history if "eval_loss" in h]
    plain_rows, calls[:] = sum(calls), []
    cb = CkptauditTrainerCallback(tmp_path / "b" / "run", task="multiclass", output="logit")
    recorded = [h for h in train(tmp_path / "b", cb).state.log_history if "eval_loss" in h]
    assert sum(calls) == plain_rows  # the predictions came from the Trainer's own evaluation
    assert len(read_run(tmp_path / "b" / "run").checkpoints) == EPOCHS
    strip = lambda hs: [{k: v for k, v in h.items() if "runtime" not in k and "per_second" not in k} for h in hs]  # noqa: E731
    assert strip(plain) == strip(recorded)


def test_misuse_is_caught_before_training(tmp_path):
    cb = CkptauditTrainerCallback(tmp_path / "run", task="multiclass", output="logit")
    with pytest.raises(UsageError, match="compute_metrics=callback.wrap"):
        torch.manual_seed(0)
        (xt, yt), (xv, yv) = wine()
        Trainer(
            model=TinyModel(TinyConfig()),
            args=TrainingArguments(
                output_dir=str(tmp_path / "hf"), num_train_epochs=1, eval_strategy="epoch", report_to="none", use_cpu=True
            ),
            train_dataset=Rows(xt, yt),
            eval_dataset=Rows(xv, yv),
            callbacks=[cb],
        ).train()


def test_evaluations_every_n_steps_are_named_by_step(tmp_path):
    cb = CkptauditTrainerCallback(tmp_path / "run", task="multiclass", output="logit")
    torch.manual_seed(0)
    (xt, yt), (xv, yv) = wine()
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        num_train_epochs=2,
        per_device_train_batch_size=16,
        eval_strategy="steps",
        eval_steps=4,
        save_strategy="steps",
        save_steps=4,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=TinyModel(TinyConfig()),
        args=args,
        train_dataset=Rows(xt, yt),
        eval_dataset=Rows(xv, yv),
        compute_metrics=cb.wrap(),
        callbacks=[cb],
    )
    trainer.train()
    r = read_run(tmp_path / "run")
    assert [(c.name, c.step) for c in r.checkpoints] == [(f"step-{s:07d}", s) for s in (4, 8, 12, 16)]
    assert [c.epoch for c in r.checkpoints] == [0, 1, 1, 2]  # whole epochs completed, as state.epoch counts
    assert r.selected_by.metric == "eval_loss" and r.selected_by.mode == "min"
    assert r.checkpoint(r.chosen).step == trainer.state.best_global_step


# -- the shapes real training loops take (issue 19) -----------------------------------------


class RegressionModel(TinyModel):
    """One output unit (num_labels=1), trained on mean squared error."""

    def forward(self, x=None, labels=None):
        out = self.net(x)
        loss = None if labels is None else nn.functional.mse_loss(out[:, 0], labels)
        return SequenceClassifierOutput(loss=loss, logits=out)


def test_a_regression_head_with_one_output_is_recorded(tmp_path):
    (xt, yt), (xv, yv) = wine()
    # a continuous target: the first feature, predicted from the others
    rt, rv = xt[:, 0].copy(), xv[:, 0].copy()
    xt, xv = xt.copy(), xv.copy()
    xt[:, 0], xv[:, 0] = 0.0, 0.0
    cb = CkptauditTrainerCallback(tmp_path / "run", task="regression", output="value")

    def mse(eval_pred):
        return {"mse": float(np.mean((eval_pred.predictions[:, 0] - eval_pred.label_ids) ** 2))}

    torch.manual_seed(0)
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        num_train_epochs=2,
        per_device_train_batch_size=16,
        learning_rate=0.01,
        eval_strategy="epoch",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=RegressionModel(TinyConfig(num_labels=1)),
        args=args,
        train_dataset=Rows(xt, rt.astype(np.float32)),
        eval_dataset=Rows(xv, rv.astype(np.float32)),
        compute_metrics=cb.wrap(mse),
        callbacks=[cb],
    )
    trainer.train()
    r = read_run(tmp_path / "run")
    assert len(r.checkpoints) == 2
    for ckpt in r.checkpoints:
        preds = val_arrays(tmp_path / "run", ckpt.name)
        assert preds.output.shape == (len(rv),) and preds.target.tolist() == pytest.approx(rv.tolist())
        assert ckpt.logged["eval_mse"] == pytest.approx(mean_squared_error(rv, preds.output), rel=1e-5)


def test_evaluate_after_train_is_not_a_checkpoint_and_does_not_fail(tmp_path):
    cb = CkptauditTrainerCallback(tmp_path / "run", task="multiclass", output="logit")
    trainer = train(tmp_path, cb, epochs=2)
    before = [c.name for c in read_run(tmp_path / "run").checkpoints]
    metrics = trainer.evaluate()  # the best model, reloaded by load_best_model_at_end
    assert "eval_accuracy" in metrics
    assert [c.name for c in read_run(tmp_path / "run").checkpoints] == before == ["epoch-0001", "epoch-0002"]


def test_resume_from_an_earlier_checkpoint_fails_before_training(tmp_path):
    train(
        tmp_path, CkptauditTrainerCallback(tmp_path / "run", task="multiclass", output="logit"), epochs=3, save_total_limit=None
    )
    steps = []

    class Steps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            steps.append(state.global_step)

    (xt, yt), (xv, yv) = wine()
    cb = CkptauditTrainerCallback(tmp_path / "run", task="multiclass", output="logit", resume=True)
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        num_train_epochs=3,
        per_device_train_batch_size=16,
        eval_strategy="epoch",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=TinyModel(TinyConfig()),
        args=args,
        train_dataset=Rows(xt, yt),
        eval_dataset=Rows(xv, yv),
        compute_metrics=cb.wrap(accuracy),
        callbacks=[cb, Steps()],
    )
    with pytest.raises(UsageError, match=r"training resumes at step 8 .* already holds epoch-0003 at step 24"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "hf" / "checkpoint-8"))
    assert steps == []  # not one training step
    # from the last checkpoint the run is complete: resuming trains nothing and records nothing new
    trainer.train(resume_from_checkpoint=str(tmp_path / "hf" / "checkpoint-24"))
    assert [c.epoch for c in read_run(tmp_path / "run").checkpoints] == [1, 2, 3]


class DictOutputModel(TinyModel):
    """Returns a plain dict whose first non-loss entry is not the logits."""

    def forward(self, x=None, labels=None):
        hidden = self.net[1](self.net[0](x))
        logits = self.net[3](self.net[2](hidden))
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        out = {"embedding": hidden, "logits": logits}
        return out if loss is None else {"loss": loss, **out}


def test_output_key_names_the_output_to_record(tmp_path):
    def logits_accuracy(eval_pred):
        return {"accuracy": accuracy_score(eval_pred.label_ids, eval_pred.predictions[1].argmax(1))}

    (xt, yt), (xv, yv) = wine()
    cb = CkptauditTrainerCallback(tmp_path / "run", task="multiclass", output="logit", output_key="logits")
    torch.manual_seed(0)
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        num_train_epochs=2,
        per_device_train_batch_size=16,
        eval_strategy="epoch",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
    )
    Trainer(
        model=DictOutputModel(TinyConfig()),
        args=args,
        train_dataset=Rows(xt, yt),
        eval_dataset=Rows(xv, yv),
        compute_metrics=cb.wrap(logits_accuracy),
        callbacks=[cb],
    ).train()
    r = read_run(tmp_path / "run")
    for ckpt in r.checkpoints:
        preds = val_arrays(tmp_path / "run", ckpt.name)
        assert preds.output.shape == (len(yv), 3)
        assert ckpt.logged["eval_accuracy"] == pytest.approx(accuracy_score(yv, preds.output.argmax(1)))


def test_batch_eval_metrics_records_the_whole_evaluation(tmp_path):
    seen = []

    def batch_accuracy(eval_pred, compute_result):
        seen.append(len(eval_pred.label_ids))
        return {"accuracy": 0.0} if compute_result else {}

    cb = CkptauditTrainerCallback(tmp_path / "run", task="multiclass", output="logit")
    plain = train(
        tmp_path / "plain", CkptauditTrainerCallback(tmp_path / "plain" / "run", task="multiclass", output="logit"), epochs=2
    )
    torch.manual_seed(0)
    (xt, yt), (xv, yv) = wine()
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        num_train_epochs=2,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=16,
        learning_rate=0.05,
        eval_strategy="epoch",
        logging_strategy="epoch",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        batch_eval_metrics=True,
    )
    Trainer(
        model=TinyModel(TinyConfig()),
        args=args,
        train_dataset=Rows(xt, yt),
        eval_dataset=Rows(xv, yv),
        compute_metrics=cb.wrap(batch_accuracy),
        callbacks=[cb],
    ).train()
    assert sum(seen) == 2 * len(yv) and max(seen) == 16  # called per batch
    assert plain.state.global_step == 16
    for name in ("epoch-0001", "epoch-0002"):
        ours, theirs = val_arrays(tmp_path / "run", name), val_arrays(tmp_path / "plain" / "run", name)
        assert ours.target.tolist() == yv.tolist()
        np.testing.assert_allclose(ours.output, theirs.output, rtol=1e-5, atol=1e-6)


def test_train_sample_and_predict_hook(tmp_path):
    (xt, yt), (xv, yv) = wine()
    calls = []

    def predict(eval_pred):
        calls.append(1)
        return eval_pred.label_ids, eval_pred.predictions, np.arange(len(eval_pred.label_ids)) + 500

    cb = CkptauditTrainerCallback(
        tmp_path / "run",
        task="multiclass",
        output="logit",
        val_inputs=xv,
        train_sample=50,
        train_ids=np.arange(len(yt)),
        predict=predict,
    )
    train(tmp_path, cb, epochs=2)
    r = read_run(tmp_path / "run")
    rows = sample_rows(len(yt), 50, 0)
    assert len(calls) == 2
    for ckpt in r.checkpoints:
        val = val_arrays(tmp_path / "run", ckpt.name)
        assert val.ids.tolist() == list(range(500, 500 + len(yv)))
        tr = read_predictions(r, ckpt, "train")
        assert tr.target.tolist() == yt[rows].tolist() and tr.ids.tolist() == rows.tolist()
        assert tr.input_hash.tolist() == hash_rows(xt[rows]).tolist()
        reloaded = TinyModel.from_pretrained(ckpt.path).eval()
        with torch.no_grad():
            np.testing.assert_allclose(reloaded(torch.from_numpy(xt[rows])).logits.numpy(), tr.output, rtol=1e-5, atol=1e-6)
    _, audited = cli_json("audit", tmp_path / "run", "--fail-on", "never", "--resamples", "200")
    assert "train-val-overlap" not in {f["code"] for f in audited}  # the hashes are there, and the splits are apart


def test_two_processes_with_accelerate_launch_record_every_row_once(tmp_path):
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as sock:  # a free port: other test sessions may hold the default one
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    script = Path(__file__).parent / "_hf_two_processes.py"
    # NOTE: `--cpu` alone starts one process; two CPU processes are torchrun's (--multi_gpu)
    # with ACCELERATE_USE_CPU, which accelerate reads as MULTI_CPU (gloo).
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(port),
        str(script),
        str(tmp_path),
    ]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "world_size").read_text() == "2"
    (_, _), (xv, yv) = wine()
    assert len(yv) % 4 != 0  # batches of 16 over two processes: the last batch is padded and de-duplicated
    r = read_run(tmp_path / "run")
    assert [c.epoch for c in r.checkpoints] == [1, 2]
    assert r.checkpoint(r.chosen).step == int((tmp_path / "best_step").read_text())
    for ckpt in r.checkpoints:
        preds = val_arrays(tmp_path / "run", ckpt.name)
        # gathered by the Trainer across both processes: every row once, in the dataset's order
        assert preds.target.tolist() == yv.tolist() and preds.ids.tolist() == list(range(500, 500 + len(yv)))
        reloaded = TinyModel.from_pretrained(ckpt.path).eval()
        with torch.no_grad():
            np.testing.assert_allclose(reloaded(torch.from_numpy(xv)).logits.numpy(), preds.output, rtol=1e-5, atol=1e-6)


def test_the_callback_records_into_an_object_store_url(tmp_path):
    """A URL where the callback takes a folder (fsspec's memory://, the remote writer s3://
    uses): every evaluation is committed there and the run read back through the remote
    reader has the trainer's epochs, its best checkpoint as chosen, and logged accuracies
    equal to scikit-learn's on the recorded predictions."""
    fsspec = pytest.importorskip("fsspec")
    from ckptaudit.store import mirror

    url = "memory://ckptaudit-hf-test/runs/hf"
    fs = fsspec.filesystem("memory")
    if fs.exists("/ckptaudit-hf-test"):
        fs.rm("/ckptaudit-hf-test", recursive=True)
    cb = CkptauditTrainerCallback(url, task="multiclass", output="logit", classes=["c0", "c1", "c2"])
    trainer = train(tmp_path, cb, epochs=2)
    (_, _), (_, yv) = wine()
    try:
        r = read_run(mirror.localize(url))
        assert [c.epoch for c in r.checkpoints] == [1, 2]  # the epoch HF logs after each epoch
        assert r.checkpoint(r.chosen).step == trainer.state.best_global_step
        for ckpt in r.checkpoints:
            preds = read_predictions(r, ckpt)
            assert ckpt.logged["eval_accuracy"] == pytest.approx(accuracy_score(yv, preds.output.argmax(1)))
    finally:
        mirror.end_command()
        fs.rm("/ckptaudit-hf-test", recursive=True)
