"""Real tiny trainings for the weight-averaging tests of `combine` (tests/test_combine_averaging.py).

Each writes a run in the ckptaudit/1 format: one checkpoint per epoch with its weights
(model.pt, a plain state_dict) and its validation logits, and returns the data (validation,
training and an independent held-out set drawn from the same distribution).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

FEATURES, CLASSES, HIDDEN = 20, 3, 16


def mlp(batchnorm: bool = False) -> torch.nn.Module:
    """The architecture (no weights): 20 -> 16 -> 3, or with BatchNorm 20 -> 16 -> 16 -> BN -> 3."""
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = [torch.nn.Linear(FEATURES, HIDDEN)]
    if batchnorm:
        # NOTE: BatchNorm after a non-linear layer: its input's statistics under averaged
        # weights are not the average of the members' statistics (after a linear layer
        # straight from the inputs, the means would be)
        layers += [torch.nn.ReLU(), torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.BatchNorm1d(HIDDEN)]
    layers += [torch.nn.ReLU(), torch.nn.Linear(HIDDEN, CLASSES)]
    return torch.nn.Sequential(*layers)


def mlp_bn() -> torch.nn.Module:
    return mlp(batchnorm=True)


def _draw(n: int, rng: np.random.Generator, centers: np.ndarray, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    y = rng.integers(0, CLASSES, n)
    x = centers[y] + rng.normal(0, noise, (n, FEATURES))
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)


@dataclass
class Trained:
    path: Path
    val: tuple[torch.Tensor, torch.Tensor]
    train: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]


def train_run(
    path: Path,
    *,
    lr: float,
    epochs: int,
    batchnorm: bool = False,
    seed: int = 0,
    noise: float = 2.0,
    n_train: int = 2000,
    batch: int = 64,
    momentum: float = 0.0,
) -> Trained:
    """Train with plain SGD at learning rate ``lr`` and save every epoch."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1, (CLASSES, FEATURES))
    train, val, test = _draw(n_train, rng, centers, noise), _draw(1000, rng, centers, noise), _draw(20000, rng, centers, noise)
    model = mlp(batchnorm)
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    (path / "checkpoints").mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"format": "ckptaudit/1", "task": "multiclass", "output": "logit"}))
    x, y = train
    torch.set_num_threads(1)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(x.shape[0])
        for i in range(0, x.shape[0], batch):
            idx = perm[i : i + batch]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        model.eval()
        folder = path / "checkpoints" / f"epoch-{epoch:04d}"
        folder.mkdir()
        (folder / "meta.json").write_text(json.dumps({"epoch": epoch}))
        torch.save(model.state_dict(), folder / "model.pt")
        with torch.no_grad():
            np.savez(folder / "val.npz", target=val[1].numpy(), output=model(val[0]).numpy())
    return Trained(path, val, train, test)


def held_out_log_loss(state_path: Path, test: tuple[torch.Tensor, torch.Tensor], batchnorm: bool = False) -> float:
    """log_loss of the weights in ``state_path`` on the held-out rows."""
    model = mlp(batchnorm)
    model.load_state_dict(torch.load(state_path, weights_only=True))
    model.eval()
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(model(test[0]), test[1]))


def held_out_accuracy(model: torch.nn.Module, test: tuple[torch.Tensor, torch.Tensor]) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(test[0]).argmax(1) == test[1]).float().mean())
