"""`check --chosen` on what the frameworks leave on disk (issue 19 items 9 and 10): an HF
Trainer's ``checkpoint-N/`` folder, which holds training state that needs code to unpickle
(``rng_state.pth``, ``training_args.bin``) beside the model, and a Keras model saved after
``EarlyStopping(restore_best_weights=True)``, whose layers are the best epoch's while its
optimizer's variables are the last epoch's. Real tiny trainings, models built from configs
in code."""

from __future__ import annotations

import json
import os
import shutil

os.environ.setdefault("KERAS_BACKEND", "torch")

import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from ckptaudit.cli import app  # noqa: E402
from ckptaudit.store.reader import read_run  # noqa: E402

runner = CliRunner()


def checked(run, metric, chosen):
    result = runner.invoke(
        app, ["check", str(run), "-m", metric, "--chosen", str(chosen), "--format", "json", "--resamples", "200"]
    )
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def test_an_hf_checkpoint_folder_is_identified_by_its_weights_files_only(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from test_integration_hf import train

    from ckptaudit.integrations.hf import CkptauditTrainerCallback

    run = tmp_path / "run"
    cb = CkptauditTrainerCallback(run, task="multiclass", output="logit", classes=["c0", "c1", "c2"])
    trainer = train(tmp_path, cb, epochs=3)  # rotation keeps the last and the best folder
    folders = sorted((tmp_path / "hf").glob("checkpoint-*"))
    names = {p.name for p in folders[0].iterdir()}
    assert {"rng_state.pth", "training_args.bin", "model.safetensors"} <= names  # what HF writes
    r = read_run(run)
    for folder in folders:
        step = int(folder.name.split("-")[1])
        doc = checked(run, "eval_accuracy", folder)
        expected = next(c.name for c in r.checkpoints if c.step == step)
        assert doc["chosen"] == expected, doc["chosen_how"]
        assert "model.safetensors" in doc["chosen_how"] and "rng_state" not in doc["chosen_how"]
    doc = checked(run, "eval_accuracy", trainer.state.best_model_checkpoint)
    assert doc["chosen"] == r.chosen
    # a broken copy of the folder: one line about its weights file, nothing about training state
    broken = shutil.copytree(trainer.state.best_model_checkpoint, tmp_path / "broken")
    with open(broken / "model.safetensors", "ab") as fh:
        fh.write(b"\0" * 8)
    result = runner.invoke(app, ["check", str(run), "-m", "eval_accuracy", "--chosen", str(broken)])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.stderr
    assert "model.safetensors" in lines[0] and "rng_state" not in lines[0]


def test_keras_restore_best_weights_then_save_is_the_best_epoch(tmp_path):
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":  # pragma: no cover - another test imported keras first
        pytest.skip("keras was imported with another backend")
    from _framework_checks import breast_cancer

    from ckptaudit.integrations.keras import CkptauditKerasCallback

    (xt, yt), (xv, yv) = breast_cancer()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((30,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"])
    # NOTE: "best" is the highest val_loss, the first epoch while the loss falls: the
    # restored weights are then an early epoch's and the optimizer's state the last one's.
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", mode="max", patience=10, restore_best_weights=True)
    record = CkptauditKerasCallback(tmp_path / "run", validation_data=(xv, yv), task="binary", output="probability")
    model.fit(xt, yt, validation_data=(xv, yv), epochs=4, batch_size=32, verbose=0, callbacks=[stop, record])
    best = f"epoch-{stop.best_epoch + 1:04d}"
    assert best != "epoch-0004"
    model.save(tmp_path / "final.keras")
    doc = checked(tmp_path / "run", "roc_auc", tmp_path / "final.keras")
    assert doc["chosen"] == best and doc["chosen_how"] == f"tensor content matches {best}/model.keras"
    model.save_weights(tmp_path / "final.weights.h5")  # the same weights, alone
    assert checked(tmp_path / "run", "roc_auc", tmp_path / "final.weights.h5")["chosen"] == best
