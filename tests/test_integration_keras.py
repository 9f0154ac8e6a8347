"""Keras 3 integration on the torch backend: real tiny training on a scikit-learn data set."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover - another test imported keras first
    pytest.skip("keras was imported with another backend", allow_module_level=True)
from _framework_checks import breast_cancer, cli_json, run_the_verbs, val_arrays  # noqa: E402
from sklearn.metrics import accuracy_score, mean_absolute_error  # noqa: E402

from ckptaudit.errors import UsageError  # noqa: E402
from ckptaudit.integrations.keras import CkptauditKerasCallback  # noqa: E402
from ckptaudit.store.reader import read_predictions, read_run  # noqa: E402

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


# -- the shapes real training loops take (issue 19) -----------------------------------------


def test_a_regression_head_with_one_output_is_recorded(tmp_path):
    (xt, yt), (xv, yv) = breast_cancer()
    rt, rv = xt[:, 0].copy(), xv[:, 0].copy()  # a continuous target, predicted from the other features
    xt, xv = xt[:, 1:], xv[:, 1:]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((29,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", metrics=["mae"])
    cb = CkptauditKerasCallback(tmp_path / "run", validation_data=(xv, rv), task="regression", output="value", weights=False)
    history = model.fit(xt, rt, validation_data=(xv, rv), epochs=2, batch_size=32, verbose=0, callbacks=[cb]).history
    r = read_run(tmp_path / "run")
    for ckpt, mae in zip(r.checkpoints, history["val_mae"], strict=True):
        preds = val_arrays(tmp_path / "run", ckpt.name)
        assert preds.output.shape == (len(rv),)
        assert mean_absolute_error(rv, preds.output) == pytest.approx(mae, rel=1e-5)


def test_a_two_stage_fit_with_the_same_callback_continues_the_run(tmp_path):
    (xt, yt), (xv, yv) = breast_cancer()
    model = build()
    mc = keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="val_loss", save_best_only=True)
    cb = CkptauditKerasCallback(tmp_path / "run", validation_data=(xv, yv), checkpoint=mc, task="binary", output="probability")
    first = model.fit(xt, yt, validation_data=(xv, yv), epochs=2, verbose=0, callbacks=[mc, cb]).history
    model.layers[0].trainable = False  # fine-tune the head only
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="binary_crossentropy", metrics=["accuracy"])
    second = model.fit(xt, yt, validation_data=(xv, yv), epochs=2, verbose=0, callbacks=[mc, cb]).history
    r = read_run(tmp_path / "run")
    assert [c.epoch for c in r.checkpoints] == [1, 2, 3, 4]
    losses = first["val_loss"] + second["val_loss"]
    assert [c.logged["val_loss"] for c in r.checkpoints] == pytest.approx(losses)
    assert r.chosen == f"epoch-{int(np.argmin(losses)) + 1:04d}"
    # a new callback on the same run continues it with resume=True and fit(initial_epoch=...)
    with pytest.raises(
        UsageError, match="fit\\(\\) starts at epoch 1 but the run already holds epoch-0004: pass initial_epoch=4"
    ):
        model.fit(
            xt,
            yt,
            validation_data=(xv, yv),
            epochs=1,
            verbose=0,
            callbacks=[
                CkptauditKerasCallback(
                    tmp_path / "run", validation_data=(xv, yv), task="binary", output="probability", resume=True
                )
            ],
        )
    again = CkptauditKerasCallback(tmp_path / "run", validation_data=(xv, yv), task="binary", output="probability", resume=True)
    model.fit(xt, yt, validation_data=(xv, yv), epochs=5, initial_epoch=4, verbose=0, callbacks=[again])
    assert [c.epoch for c in read_run(tmp_path / "run").checkpoints] == [1, 2, 3, 4, 5]


def test_dict_outputs_with_output_key_and_a_predict_hook(tmp_path):
    (xt, yt), (xv, yv) = breast_cancer()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((30,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    model = keras.Model(inputs, {"prob": keras.layers.Dense(1, activation="sigmoid", name="prob")(hidden)})
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss={"prob": "binary_crossentropy"}, metrics={"prob": ["accuracy"]})
    cb = CkptauditKerasCallback(
        tmp_path / "run", validation_data=(xv, yv), task="binary", output="probability", output_key="prob", weights=False
    )
    history = model.fit(xt, {"prob": yt}, validation_data=(xv, {"prob": yv}), epochs=2, verbose=0, callbacks=[cb]).history
    key = next(k for k in history if k.startswith("val") and k.endswith("accuracy"))
    r = read_run(tmp_path / "run")
    for ckpt, acc in zip(r.checkpoints, history[key], strict=True):
        assert accuracy_score(yv, val_arrays(tmp_path / "run", ckpt.name).output[:, 0] > 0.5) == pytest.approx(acc)
    with pytest.raises(UsageError, match=r"dict with keys \['prob'\]: give output_key="):
        model.fit(
            xt,
            {"prob": yt},
            epochs=1,
            verbose=0,
            callbacks=[CkptauditKerasCallback(tmp_path / "run2", validation_data=(xv, yv), task="binary", output="probability")],
        )
    hook = CkptauditKerasCallback(
        tmp_path / "run3",
        validation_data=(xv, yv),
        task="binary",
        output="probability",
        weights=False,
        predict=lambda m, x: m(x, training=False)["prob"],
    )
    model.fit(xt, {"prob": yt}, epochs=1, verbose=0, callbacks=[hook])
    assert val_arrays(tmp_path / "run3", "epoch-0001").output.shape == (len(yv), 1)


def test_mixed_bfloat16_outputs_are_recorded(tmp_path):
    (xt, yt), (xv, yv) = breast_cancer()
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = build()
        cb = CkptauditKerasCallback(
            tmp_path / "run", validation_data=(xv, yv), task="binary", output="probability", weights=False
        )
        history = model.fit(xt, yt, validation_data=(xv, yv), epochs=2, verbose=0, callbacks=[cb]).history
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    r = read_run(tmp_path / "run")
    for ckpt, acc in zip(r.checkpoints, history["val_accuracy"], strict=True):
        preds = val_arrays(tmp_path / "run", ckpt.name)
        assert preds.output.dtype == np.float32
        assert accuracy_score(yv, preds.output[:, 0] > 0.5) == pytest.approx(acc)


def test_training_rows_given_as_validation_data_are_warned_about(tmp_path):
    (xt, yt), (xv, yv) = breast_cancer()
    model = build()
    # the callback is given training rows, fit validates on the real validation set
    cb = CkptauditKerasCallback(tmp_path / "run", validation_data=(xt[:101], yt[:101]), task="binary", output="probability")
    with pytest.warns(
        UserWarning, match=r"epoch-0001: training logged val_accuracy=.* but the recorded validation predictions score accuracy="
    ):
        model.fit(xt, yt, validation_data=(xv, yv), epochs=2, verbose=0, callbacks=[cb])
    # rightly given, nothing is said
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="ckptaudit")
        fit(tmp_path / "ok")


def test_train_sample_records_training_rows_for_the_leakage_audit(tmp_path):
    (xt, yt), (xv, yv) = breast_cancer()
    model = build()
    leaky_x, leaky_y = np.concatenate([xv[:81], xt[:20]]), np.concatenate([yv[:81], yt[:20]])
    cb = CkptauditKerasCallback(
        tmp_path / "run",
        validation_data=(leaky_x, leaky_y),
        task="binary",
        output="probability",
        weights=False,
        train_data=(xt, yt),
        train_sample=300,
    )
    model.fit(xt, yt, validation_data=(leaky_x, leaky_y), epochs=2, verbose=0, callbacks=[cb])
    r = read_run(tmp_path / "run")
    tr = read_predictions(r, r.checkpoints[0], "train")
    assert tr.target.tolist() == yt.tolist() and tr.output.shape == (300, 1)
    _, audited = cli_json("audit", tmp_path / "run", "--fail-on", "never", "--resamples", "200")
    overlap = next(f for f in audited if f["code"] == "train-val-overlap")
    assert overlap["evidence"]["count"] == 20 and overlap["evidence"]["matched_by"] == ["input_hash"]
    with pytest.raises(UsageError, match="train_sample=N and train_data"):
        CkptauditKerasCallback(tmp_path / "x", validation_data=(xv, yv), task="binary", output="probability", train_sample=5)


def test_the_callback_records_into_an_object_store_url(tmp_path):
    """A URL where the callback takes a folder (here fsspec's memory://, served by the same
    remote writer as s3://): every epoch is committed there (meta.json last) and the run read
    back through the remote reader equals what Keras trained: epochs, chosen, predictions."""
    fsspec = pytest.importorskip("fsspec")
    from ckptaudit.store import mirror

    url = "memory://ckptaudit-keras-test/runs/keras"
    fs = fsspec.filesystem("memory")
    if fs.exists("/ckptaudit-keras-test"):
        fs.rm("/ckptaudit-keras-test", recursive=True)
    (xt, yt), (xv, yv) = breast_cancer()
    model = build()
    mc = keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="val_accuracy", save_best_only=True)
    cb = CkptauditKerasCallback(url, validation_data=(xv, yv), checkpoint=mc, task="binary", output="probability")
    model.fit(xt, yt, validation_data=(xv, yv), epochs=2, batch_size=32, verbose=0, callbacks=[mc, cb])
    try:
        local = mirror.localize(url)
        r = read_run(local)
        assert [c.epoch for c in r.checkpoints] == [1, 2] and r.chosen in {c.name for c in r.checkpoints}  # Keras counts from 1
        last = read_predictions(r, r.checkpoints[-1])
        np.testing.assert_allclose(last.output.ravel(), model.predict(xv, verbose=0).ravel(), rtol=1e-5, atol=1e-6)
        assert accuracy_score(yv, last.output.ravel() > 0.5) == pytest.approx(
            accuracy_score(yv, model.predict(xv, verbose=0).ravel() > 0.5)
        )
    finally:
        mirror.end_command()
        fs.rm("/ckptaudit-keras-test", recursive=True)
