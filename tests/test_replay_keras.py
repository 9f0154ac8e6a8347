"""Replay reproduces Keras' own EarlyStopping and ModelCheckpoint(save_best_only) on the same sequence.

A tiny real Keras model (torch backend) trains; a callback placed first writes the scripted
``val_loss`` into the epoch's logs, which Keras hands on to EarlyStopping and
ModelCheckpoint. The epoch whose weights the best-only file holds is found by comparing
the saved weights with each epoch's weights.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover - another test imported keras first
    pytest.skip("keras was imported with another backend", allow_module_level=True)

from replay_runs import SEQUENCES, epochs_of, replayed, write_sequence_run  # noqa: E402


class Script(keras.callbacks.Callback):
    """Feeds the scripted monitor into the logs and keeps each epoch's weights."""

    def __init__(self, sequence):
        super().__init__()
        self.sequence = sequence
        self.weights: list[list[np.ndarray]] = []

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = float(self.sequence[epoch])
        self.weights.append([np.array(w) for w in self.model.get_weights()])


def _fit(sequence, callbacks):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    script = Script(sequence)
    x = np.random.default_rng(0).normal(size=(8, 2)).astype("float32")
    model.fit(x, x.sum(axis=1), epochs=len(sequence), batch_size=8, verbose=0, callbacks=[script, *callbacks])
    return model, script


def _epoch_of(weights, script) -> int:
    (match,) = [e for e, ws in enumerate(script.weights) if all(np.array_equal(a, b) for a, b in zip(ws, weights, strict=True))]
    return match


@pytest.mark.parametrize("seq", range(len(SEQUENCES)))
@pytest.mark.parametrize(
    ("patience", "min_delta", "baseline", "start"),
    [(1, 0.0, None, 0), (2, 0.005, None, 0), (2, 0.0, 0.85, 0), (0, 0.0, None, 2), (3, 0.02, None, 1)],
)
def test_early_stopping_matches_keras(tmp_path, seq, patience, min_delta, baseline, start):
    sequence = SEQUENCES[seq]
    es = keras.callbacks.EarlyStopping(
        "val_loss",
        patience=patience,
        min_delta=min_delta,
        baseline=baseline,
        start_from_epoch=start,
        mode="min",
        restore_best_weights=True,
    )
    model, script = _fit(sequence, [es])
    rule = f"keras:patience={patience},min_delta={min_delta},start_from_epoch={start}" + (
        f",baseline={baseline}" if baseline is not None else ""
    )
    result = replayed(write_sequence_run(tmp_path / "run", sequence), rule)
    assert result.stop_epoch == len(script.weights) - 1
    assert es.stopped_epoch == (result.stop_epoch if result.stopped else 0)
    # restore_best_weights: the weights Keras restored are those of the epoch replay ships
    assert result.shipped == f"epoch-{_epoch_of(model.get_weights(), script):04d}"


@pytest.mark.parametrize("seq", range(len(SEQUENCES)))
@pytest.mark.parametrize("patience", [None, 2])
def test_save_best_only_matches_keras(tmp_path, seq, patience):
    sequence = SEQUENCES[seq]
    path = tmp_path / "best.weights.h5"
    callbacks = [
        keras.callbacks.ModelCheckpoint(str(path), monitor="val_loss", mode="min", save_best_only=True, save_weights_only=True)
    ]
    if patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping("val_loss", patience=patience, mode="min"))
    model, script = _fit(sequence, callbacks)
    model.load_weights(str(path))
    rule = "keras:save_best_only" + (f",patience={patience}" if patience is not None else "")
    result = replayed(write_sequence_run(tmp_path / "run", sequence), rule)
    assert result.stop_epoch == len(script.weights) - 1
    assert epochs_of(result.kept) == {_epoch_of(model.get_weights(), script)}
    assert result.shipped == result.kept[0]
