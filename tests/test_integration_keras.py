"""Keras 3 integration on the torch backend: real tiny training on a scikit-learn data set."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover - another test imported keras first
    pytest.skip("keras was imported with another backend", allow_module_level=True)
from _framework_checks import breast_cancer, run_the_verbs, val_arrays  # noqa: E402
from sklearn.metrics import accuracy_score  # noqa: E402

from ckptaudit.errors import UsageError  # noqa: E402
from ckptaudit.integrations.keras import CkptauditKerasCallback  # noqa: E402
from ckptaudit.store.reader import read_run  # noqa: E402

EPOCHS = 4


def build():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((30,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="binary_crossentropy", metrics=["accuracy"])
    return model


def fit(tmp_path, with_callback=True, **cb_kwargs):
    (xt, yt), (xv, yv) = breast_cancer()
    model = build()
    mc = keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="val_accuracy", mode="auto", save_best_only=True)
    callbacks = [mc]
    if with_callback:
        ids = np.arange(len(yv)) + 7000
        callbacks.append(
            CkptauditKerasCallback(
                tmp_path / "run", validation_data=(xv, yv, ids), checkpoint=mc, task="binary", output="probability", **cb_kwargs
            )
        )
    history = model.fit(
        xt, yt, validation_data=(xv, yv), epochs=EPOCHS, batch_size=32, shuffle=True, verbose=0, callbacks=callbacks
    )
    return model, history.history, mc


def test_every_epoch_is_recorded_and_chosen_is_the_model_checkpoints_best(tmp_path):
    model, history, mc = fit(tmp_path)
    run = tmp_path / "run"
    r = read_run(run)
    assert [c.epoch for c in r.checkpoints] == list(range(1, EPOCHS + 1))  # as Keras prints and names epochs
    # mode="auto" resolved as Keras resolves it (accuracy: max)
    assert r.selected_by.metric == "val_accuracy" and r.selected_by.mode == "max"
    best = int(np.argmax(history["val_accuracy"]))  # Keras keeps the first of equal bests
    assert r.chosen == f"epoch-{best + 1:04d}"
    # the chosen checkpoint holds the same tensors as the file ModelCheckpoint kept
    kept = keras.saving.load_model(tmp_path / "best.keras")
    ours = keras.saving.load_model(r.checkpoint(r.chosen).path / "model.keras")
    assert all(np.array_equal(a, b) for a, b in zip(kept.get_weights(), ours.get_weights(), strict=True))
    (_, _), (xv, yv) = breast_cancer()
    for ckpt, val_acc, loss in zip(r.checkpoints, history["val_accuracy"], history["loss"], strict=True):
        preds = val_arrays(run, ckpt.name)
        assert preds.output.shape == (len(yv), 1)  # sigmoid head: (N, 1) is read like (N,)
        assert preds.ids.tolist() == list(range(7000, 7000 + len(yv))) and len(set(preds.input_hash.tolist())) == len(yv)
        assert ckpt.logged["val_accuracy"] == pytest.approx(val_acc)
        assert accuracy_score(yv, preds.output[:, 0] > 0.5) == pytest.approx(val_acc)
        assert ckpt.logged["loss"] == pytest.approx(loss)
    verbs = run_the_verbs(run, "val_accuracy")
    assert verbs["check"]["chosen"] == r.chosen
    assert verbs["rank"][0]["val_accuracy"] == max(history["val_accuracy"])


def test_recording_does_not_change_training(tmp_path, monkeypatch):
    plain = fit(tmp_path / "a", with_callback=False)
    recorded = fit(tmp_path / "b")
    assert plain[1] == recorded[1]
    assert all(np.array_equal(a, b) for a, b in zip(plain[0].get_weights(), recorded[0].get_weights(), strict=True))


def test_misuse_fails_before_training(tmp_path):
    (_, _), (xv, yv) = breast_cancer()
    with pytest.raises(UsageError, match="validation_data must be"):
        CkptauditKerasCallback(tmp_path / "run", validation_data=xv, task="binary", output="probability")
    fit(tmp_path)
    with pytest.raises(UsageError, match="already holds"):
        CkptauditKerasCallback(tmp_path / "run", validation_data=(xv, yv), task="binary", output="probability")
