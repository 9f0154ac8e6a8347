"""The live audit's hook in the Keras and Hugging Face callbacks: a planted leak reported as
each framework reports (a Keras warning, a logged Trainer warning) at the first epoch, and
``on_finding="raise"`` stopping ``fit`` / ``train`` there."""

from __future__ import annotations

import logging
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import pytest  # noqa: E402

from ckptaudit.auditing.live import LiveAuditError  # noqa: E402
from ckptaudit.store.reader import read_run  # noqa: E402


def test_keras_warns_of_a_leak_at_epoch_0_and_raise_stops_fit(tmp_path):
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":  # pragma: no cover
        pytest.skip("keras was imported with another backend")
    from _framework_checks import breast_cancer
    from test_integration_keras import build

    from ckptaudit.integrations.keras import CkptauditKerasCallback

    (xt, yt), _ = breast_cancer()
    leaky = (xt[:101], yt[:101])  # validation rows taken from the training set
    seen = []

    class Epochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(epoch)

    def callback(root, **kw):
        return CkptauditKerasCallback(
            root,
            validation_data=leaky,
            task="binary",
            output="probability",
            weights=False,
            train_data=(xt, yt),
            train_sample=300,
            **kw,
        )

    with pytest.warns(UserWarning, match="ckptaudit live audit: error train-val-overlap") as caught:
        build().fit(xt, yt, validation_data=leaky, epochs=2, verbose=0, callbacks=[callback(tmp_path / "a"), Epochs()])
    assert sum("live audit" in str(w.message) for w in caught) == 1
    seen.clear()
    with pytest.raises(LiveAuditError, match="train-val-overlap"):
        build().fit(
            xt, yt, validation_data=leaky, epochs=3, verbose=0, callbacks=[callback(tmp_path / "b", on_finding="raise"), Epochs()]
        )
    # the first epoch's checkpoint is written (Keras' callback numbers epochs from 1), epoch 2 never began
    assert seen == [0] and [c.epoch for c in read_run(tmp_path / "b").checkpoints] == [1]


def test_hf_logs_a_leak_at_the_first_evaluation_and_raise_stops_training(tmp_path, caplog):
    pytest.importorskip("transformers")
    from test_integration_hf import train, wine

    from ckptaudit.integrations.hf import CkptauditTrainerCallback

    (xt, yt), (xv, yv) = wine()
    # the hashes given for the validation rows are those of training rows: a planted leak
    leaky = dict(task="multiclass", output="logit", weights=False, val_inputs=xt[: len(yv)], train_sample=120)
    with caplog.at_level(logging.WARNING, logger="ckptaudit.integrations.hf"):
        train(tmp_path / "a", CkptauditTrainerCallback(tmp_path / "a" / "run", **leaky), epochs=2)
    said = [r.getMessage() for r in caplog.records if "live audit" in r.getMessage()]
    assert len(said) == 1 and "error train-val-overlap" in said[0]
    with pytest.raises(LiveAuditError, match="train-val-overlap"):
        train(tmp_path / "b", CkptauditTrainerCallback(tmp_path / "b" / "run", on_finding="raise", **leaky), epochs=3)
    assert len(read_run(tmp_path / "b" / "run").checkpoints) == 1
