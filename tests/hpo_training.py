"""Two tiny real hyper-parameter sweeps, as Ray Tune and Optuna leave them on disk.

Both train the same seeded logistic regression (6 features, full-batch gradient descent in
numpy) with different learning rates; large rates overshoot, so some trials' validation
loss is best before their last iteration (the case `pick --across` exists for).

* :func:`run_raytune`: 8 trials on a local Ray (2 CPUs); each iteration reports
  ``val_loss``/``val_acc`` through ``tune.report`` with a checkpoint written by Ray's
  ``tune.Checkpoint`` (``model.safetensors``: ``weight`` (1, 6) and ``bias`` (1,), the
  state_dict of :func:`net`), except the first iteration, which reports without one.
* :func:`run_optuna`: a study in a sqlite storage whose trials report the validation loss
  as intermediate values per step, with a median pruner; each step's weights saved beside.

``predict --model tests/hpo_training.py:net --data tests/hpo_training.py:val`` re-creates
the validation predictions of a Ray Tune checkpoint.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

FEATURES = 6
ITERATIONS = 5
#: one trial per rate: small rates improve to the end, large ones overshoot
RATES = (0.05, 0.2, 0.6, 1.5, 3.0, 6.0, 10.0, 16.0)


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, FEATURES)).astype(np.float32)
    y = (x @ rng.normal(size=FEATURES) + 0.9 * rng.normal(size=300) > 0.2).astype(np.int64)
    return x[:180], y[:180], x[180:], y[180:]


def val():
    """Validation (inputs, target) for ``predict --data``."""
    _, _, xv, yv = _data()
    return xv, yv


def net():
    """The architecture for ``predict --model``: one logit."""
    from torch import nn

    return nn.Linear(FEATURES, 1)


def _log_loss(z: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy of logits ``z`` (float64, stable)."""
    z = z.astype(np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def train(lr: float, iterations: int = ITERATIONS):
    """Yield (iteration from 1, weight (1, 6) float32, bias (1,) float32, val_loss, val_acc)."""
    xt, yt, xv, yv = _data()
    w = np.zeros((1, FEATURES), dtype=np.float32)
    b = np.zeros(1, dtype=np.float32)
    for it in range(1, iterations + 1):
        z = xt @ w[0] + b[0]
        g = (1.0 / (1.0 + np.exp(-z)) - yt).astype(np.float32)
        w = (w - lr * (g @ xt)[None, :] / len(yt)).astype(np.float32)
        b = (b - lr * g.mean()).astype(np.float32)
        zv = (xv @ w[0] + b[0]).astype(np.float32)
        yield it, w, b, _log_loss(zv, yv), float(np.mean((zv > 0) == (yv == 1)))


def raytune_trial(config: dict) -> None:
    """The Ray Tune function trainable."""
    from ray import tune
    from safetensors.numpy import save_file

    for it, w, b, loss, acc in train(config["lr"]):
        metrics = {"val_loss": loss, "val_acc": acc}
        if it == 1:  # reported without a checkpoint: imported as metrics-only
            tune.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as folder:
            save_file({"weight": w, "bias": b}, os.path.join(folder, "model.safetensors"))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def run_raytune(root: Path) -> Path:
    """Run the sweep under ``root``; returns the experiment folder."""
    import ray
    from ray import tune

    here = str(Path(__file__).resolve().parent)
    env = {"PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    try:
        tuner = tune.Tuner(
            raytune_trial,
            param_space={"lr": tune.grid_search(list(RATES))},
            run_config=tune.RunConfig(storage_path=str(root), name="exp", verbose=0),
        )
        tuner.fit()
    finally:
        ray.shutdown()
    return root / "exp"


def run_optuna(storage: str, name: str = "lr-sweep", trials: int = 8, save_to: Path | None = None) -> None:
    """A study of ``trials`` trials minimising the validation loss, intermediate values per step;
    with ``save_to``, each step's weights as ``save_to/trial{number}/step{step}.safetensors``
    (where the study does not record them: ``import optuna --checkpoints`` is told)."""
    import optuna
    from safetensors.numpy import save_file

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial) -> float:
        lr = trial.suggest_float("lr", 0.05, 16.0, log=True)
        trial.suggest_categorical("init", ["zeros"])
        loss = float("nan")
        for it, w, b, loss, _acc in train(lr):
            trial.report(loss, step=it - 1)
            if save_to is not None:
                (save_to / f"trial{trial.number}").mkdir(parents=True, exist_ok=True)
                save_file({"weight": w, "bias": b}, str(save_to / f"trial{trial.number}" / f"step{it - 1}.safetensors"))
            if trial.should_prune():
                raise optuna.TrialPruned()
        return loss

    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2),
    )
    study.optimize(objective, n_trials=trials)
