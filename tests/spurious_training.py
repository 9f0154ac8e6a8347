"""A real tiny training with a spurious feature (the Waterbirds idea on synthetic tabular
data), recorded with the Recorder: each row's label is a bird (landbird/waterbird), the
background matches the bird in 97% of the training rows and 85% of the validation rows,
and the 4 (bird, background) pairs are the validation groups.

Logistic regression by full-batch gradient descent: the core features (8 weak dimensions)
are learned in the first epochs; the background feature, stored at a small scale, is
learned slowly and keeps growing, so the average accuracy plateaus while the rows whose
background disagrees with the bird (the minority groups) are lost epoch after epoch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ckptaudit import Recorder

GROUP_NAMES = np.array(["landbird/land", "landbird/water", "waterbird/land", "waterbird/water"])


def spurious_data(rng: np.random.Generator, n: int, align: float, mu: float = 1.0, dims: int = 8, scale: float = 0.15):
    """Features (core dims, then the background), labels and group names."""
    y = rng.integers(0, 2, n)
    background = np.where(rng.random(n) < align, y, 1 - y)
    core = (2 * y - 1)[:, None] * (mu / np.sqrt(dims)) + rng.normal(size=(n, dims))
    spur = ((2 * background - 1) + 0.3 * rng.normal(size=n)) * scale
    return np.column_stack([core, spur]), y, GROUP_NAMES[2 * y + background]


def train_spurious(path: Path, *, epochs: int = 24, steps: int = 25, lr: float = 1.0, seed: int = 0) -> Path:
    """Train and record one checkpoint per epoch (weights, val and train predictions with
    groups); training selects by val_loss, as a Lightning/HF default would."""
    rng = np.random.default_rng(seed)
    xt, yt, gt = spurious_data(rng, 4000, 0.97)
    xv, yv, gv = spurious_data(rng, 3000, 0.85)
    rec = Recorder(
        path, task="binary", output="logit", classes=["landbird", "waterbird"], selected_by={"metric": "val_loss", "mode": "min"}
    )
    w = np.zeros(xt.shape[1])
    b = 0.0
    for epoch in range(epochs):
        for _ in range(steps):
            p = 1 / (1 + np.exp(-(xt @ w + b)))
            w -= lr * xt.T @ (p - yt) / len(yt)
            b -= lr * float((p - yt).mean())
        val, tr = xv @ w + b, xt @ w + b
        val_loss = float(np.mean(np.logaddexp(0, val) - yv * val))
        rec.save(
            epoch,
            {"weight": np.append(w, b).astype(np.float32)},
            val_target=yv,
            val_output=val.astype(np.float32),
            val_groups=gv,
            train_target=yt,
            train_output=tr.astype(np.float32),
            train_groups=gt,
            logged={"val_loss": val_loss},
        )
    return path
