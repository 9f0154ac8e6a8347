"""Train small torch models on scikit-learn's bundled data and write fixtures/runs/.

Every fixture is a real training run written by :class:`ckptaudit.Recorder`, the same
way a user's loop writes one; nothing is hand-edited. Re-run after changing the format:

    python scripts/make_fixtures.py            # rewrites fixtures/runs/

Runs (what each is for):
- fraud       imbalanced binary (4% positives), picked by validation accuracy: the
              accuracy paradox; its best checkpoint by accuracy is not its best by recall.
- digits      multiclass (10 classes), picked by validation loss: a clean run.
- friedman    regression (Friedman #1), picked by validation loss: a clean run.
- leak-ids    binary; validation holds training rows under the same sample ids.
- leak-hashes binary; validation holds training rows under new ids, caught by input hashes.
- overfit     regression on 60 training rows with a wide net: validation loss turns up.
- train-loss  binary, picked by training loss: the last epoch, not the best on validation.
- noisy-train binary; 30% of training labels flipped: validation beats training.
- target-leak binary; an input column is the label: near-perfect validation from epoch 1.
- tiny-val    multiclass (iris) with 10 validation rows per class: a small validation set.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ckptaudit.store.recorder import Recorder


@dataclass
class Split:
    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray

    def __post_init__(self) -> None:
        # NOTE: 32-bit class indices and ids keep the fixtures small.
        if self.y.dtype.kind in "iu":
            self.y = self.y.astype(np.int32)
        self.ids = self.ids.astype(np.int32)


@dataclass
class RunConfig:
    name: str
    task: str  # binary | multiclass | regression
    train: Split
    val: Split
    train_eval: Split  # the training rows whose predictions are recorded in train.npz
    epochs: int
    hidden: int
    lr: float
    batch: int = 64
    weight_decay: float = 0.0
    classes: list[str] | None = None
    selected_by: tuple[str, str] = ("val_loss", "min")
    hash_inputs: bool = False
    pos_weight: float | None = None  # binary: weight of positive rows in the loss
    seed: int = 0
    y_scale: tuple[float, float] = (0.0, 1.0)  # regression: targets are standardised for training
    extra_logged: Callable[[np.ndarray, np.ndarray], dict[str, float]] | None = field(default=None)


def _model(n_in: int, n_out: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mu, sd = train.mean(axis=0), train.std(axis=0)
    sd[sd == 0] = 1.0  # constant columns (blank pixels) stay constant
    return [((a - mu) / sd).astype(np.float32) for a in (train, *others)]


def train_run(root: Path, cfg: RunConfig) -> None:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    n_out = {"binary": 1, "regression": 1}.get(cfg.task, len(cfg.classes or []))
    model = _model(cfg.train.x.shape[1], n_out, cfg.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.task == "binary":
        weight = None if cfg.pos_weight is None else torch.tensor(cfg.pos_weight)
        loss_fn: nn.Module = nn.BCEWithLogitsLoss(pos_weight=weight)
    elif cfg.task == "multiclass":
        loss_fn = nn.CrossEntropyLoss()
    else:
        loss_fn = nn.MSELoss()
    output = {"binary": "logit", "multiclass": "probability", "regression": "value"}[cfg.task]
    rec = Recorder(
        root / cfg.name,
        task=cfg.task,
        output=output,
        classes=cfg.classes,
        selected_by={"metric": cfg.selected_by[0], "mode": cfg.selected_by[1]},
    )
    mu, sd = cfg.y_scale

    def tensors(s: Split) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(s.x)
        if cfg.task == "multiclass":
            return x, torch.from_numpy(s.y.astype(np.int64))
        y = s.y.astype(np.float32)
        if cfg.task == "regression":
            y = (y - mu) / sd
        return x, torch.from_numpy(y)

    def predict(s: Split) -> tuple[np.ndarray, float]:
        model.eval()
        x, y = tensors(s)
        with torch.no_grad():
            out = model(x)
            if n_out == 1:
                out = out[:, 0]
            loss = float(loss_fn(out, y))
        if cfg.task == "multiclass":
            return torch.softmax(out, dim=1).numpy().astype(np.float32), loss
        if cfg.task == "regression":
            return (out.numpy() * sd + mu).astype(np.float32), loss
        return out.numpy().astype(np.float32), loss

    xt, yt = tensors(cfg.train)
    best: tuple[float, str] | None = None
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = rng.permutation(len(xt))
        for i in range(0, len(order), cfg.batch):
            idx = torch.from_numpy(order[i : i + cfg.batch])
            opt.zero_grad()
            out = model(xt[idx])
            if n_out == 1:
                out = out[:, 0]
            loss = loss_fn(out, yt[idx])
            loss.backward()
            opt.step()
            step += 1
        val_out, val_loss = predict(cfg.val)
        tr_out, train_loss = predict(cfg.train_eval)
        logged = {"train_loss": train_loss, "val_loss": val_loss}
        if cfg.task != "regression":
            pred = val_out.argmax(axis=1) if cfg.task == "multiclass" else (val_out > 0).astype(np.int64)
            logged["val_accuracy"] = float((pred == cfg.val.y).mean())
        path = rec.save(
            epoch,
            model,
            step=step,
            logged=logged,
            val_target=cfg.val.y,
            val_output=val_out,
            val_ids=cfg.val.ids,
            val_inputs=cfg.val.x if cfg.hash_inputs else None,
            train_target=cfg.train_eval.y,
            train_output=tr_out,
            train_ids=cfg.train_eval.ids,
            train_inputs=cfg.train_eval.x if cfg.hash_inputs else None,
        )
        # The training loop's own "save the best" rule (strictly better, like the seed pattern).
        metric, mode = cfg.selected_by
        value = logged[metric]
        if best is None or (value < best[0] if mode == "min" else value > best[0]):
            best = (value, path.name)
    assert best is not None
    rec.choose(best[1])


def _split(x: np.ndarray, y: np.ndarray, idx: np.ndarray, ids: np.ndarray | None = None) -> Split:
    return Split(x[idx], y[idx], idx if ids is None else ids)


def build(root: Path) -> None:
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, make_classification, make_friedman1

    torch.set_num_threads(1)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)

    # fraud: 4% positives; the loop keeps the epoch with the best validation accuracy.
    x, y = make_classification(
        n_samples=5000, n_features=20, n_informative=6, n_redundant=4, weights=[0.96], flip_y=0.0, class_sep=1.2, random_state=7
    )
    perm = np.random.default_rng(7).permutation(len(y))
    tr, va = perm[:3200], perm[3200:]
    xs, xv = _standardise(x[tr], x[va])
    xall = np.empty((len(y), x.shape[1]), dtype=np.float32)
    xall[tr], xall[va] = xs, xv
    train = _split(xall, y, tr)
    train_run(
        root,
        RunConfig(
            "fraud",
            "binary",
            train,
            _split(xall, y, va),
            _split(xall, y, tr[:800]),
            epochs=20,
            hidden=16,
            lr=0.004,
            batch=64,
            classes=["legit", "fraud"],
            selected_by=("val_accuracy", "max"),
            pos_weight=4.0,
            seed=1,
        ),
    )

    # digits: multiclass, a clean run picked by validation loss.
    d = load_digits()
    perm = np.random.default_rng(3).permutation(len(d.target))
    tr, va = perm[:1200], perm[1200:]
    xs, xv = _standardise(d.data[tr], d.data[va])
    train_run(
        root,
        RunConfig(
            "digits",
            "multiclass",
            Split(xs, d.target[tr], tr),
            Split(xv, d.target[va], va),
            Split(xs[:400], d.target[tr][:400], tr[:400]),
            epochs=12,
            hidden=16,
            lr=0.002,
            weight_decay=1e-4,
            classes=[str(i) for i in range(10)],
            seed=2,
        ),
    )

    # friedman: regression (Friedman #1), a clean run picked by validation loss, stopped while
    # still improving clearly from epoch to epoch.
    x, y = make_friedman1(n_samples=4000, n_features=8, noise=1.0, random_state=5)
    tr, va = np.arange(2500), np.arange(2500, 4000)
    xs, xv = _standardise(x[tr], x[va])
    ymu, ysd = float(y[tr].mean()), float(y[tr].std())
    train_run(
        root,
        RunConfig(
            "friedman",
            "regression",
            Split(xs, y[tr], tr),
            Split(xv, y[va], va),
            Split(xs[:500], y[tr][:500], tr[:500]),
            epochs=8,
            hidden=16,
            lr=0.002,
            batch=64,
            y_scale=(ymu, ysd),
            seed=3,
        ),
    )
    db = load_diabetes()

    # leak-ids / leak-hashes: breast cancer; 60 training rows copied into validation.
    bc = load_breast_cancer()
    perm = np.random.default_rng(11).permutation(len(bc.target))
    tr, held = perm[:400], perm[400:]
    xs, xh = _standardise(bc.data[tr], bc.data[held])
    train = Split(xs, bc.target[tr], tr)
    copied = np.arange(60)
    val_x = np.concatenate([xh, xs[copied]])
    val_y = np.concatenate([bc.target[held], bc.target[tr][copied]])
    same_ids = np.concatenate([held, tr[copied]])
    new_ids = np.concatenate([held, 10_000 + np.arange(60)])
    common = dict(epochs=10, hidden=16, lr=0.002, batch=32, classes=["malignant", "benign"], seed=4)
    train_run(root, RunConfig("leak-ids", "binary", train, Split(val_x, val_y, same_ids), train, **common))
    train_run(root, RunConfig("leak-hashes", "binary", train, Split(val_x, val_y, new_ids), train, hash_inputs=True, **common))

    # overfit: 60 training rows of diabetes and a wide net; validation loss turns up.
    perm_d = np.random.default_rng(9).permutation(len(db.target))
    tr_small, va = perm_d[:60], perm_d[300:]
    xs, xv = _standardise(db.data[tr_small], db.data[va])
    ymu, ysd = float(db.target[tr_small].mean()), float(db.target[tr_small].std())
    train_run(
        root,
        RunConfig(
            "overfit",
            "regression",
            Split(xs, db.target[tr_small], tr_small),
            Split(xv, db.target[va], va),
            Split(xs, db.target[tr_small], tr_small),
            epochs=25,
            hidden=64,
            lr=0.01,
            batch=16,
            y_scale=(ymu, ysd),
            seed=5,
        ),
    )

    # train-loss: noisy binary task, small training set; the loop keeps the lowest training loss.
    x, y = make_classification(n_samples=900, n_features=12, n_informative=4, flip_y=0.15, class_sep=0.8, random_state=13)
    tr, va = np.arange(200), np.arange(200, 900)
    xs, xv = _standardise(x[tr], x[va])
    train_run(
        root,
        RunConfig(
            "train-loss",
            "binary",
            Split(xs, y[tr], tr),
            Split(xv, y[va], va),
            Split(xs, y[tr], tr),
            epochs=20,
            hidden=48,
            lr=0.01,
            batch=32,
            selected_by=("train_loss", "min"),
            seed=6,
        ),
    )


def build_more(root: Path) -> None:
    from sklearn.datasets import load_breast_cancer, load_iris

    bc = load_breast_cancer()
    perm = np.random.default_rng(21).permutation(len(bc.target))
    tr, va = perm[:350], perm[350:]
    xs, xv = _standardise(bc.data[tr], bc.data[va])

    # noisy-train: 30% of the training labels are flipped, the validation labels are clean,
    # so validation accuracy beats training accuracy on every checkpoint.
    noisy = bc.target[tr].copy()
    flip = np.random.default_rng(22).random(len(noisy)) < 0.3
    noisy[flip] = 1 - noisy[flip]
    train_run(
        root,
        RunConfig(
            "noisy-train",
            "binary",
            Split(xs, noisy, tr),
            Split(xv, bc.target[va], va),
            Split(xs, noisy, tr),
            epochs=8,
            hidden=16,
            lr=0.002,
            batch=32,
            classes=["malignant", "benign"],
            seed=7,
        ),
    )

    # target-leak: one input column is the label itself; validation is perfect from epoch 1.
    leak_tr = np.c_[xs, bc.target[tr] * 6.0 - 3.0].astype(np.float32)
    leak_va = np.c_[xv, bc.target[va] * 6.0 - 3.0].astype(np.float32)
    train_run(
        root,
        RunConfig(
            "target-leak",
            "binary",
            Split(leak_tr, bc.target[tr], tr),
            Split(leak_va, bc.target[va], va),
            Split(leak_tr, bc.target[tr], tr),
            epochs=6,
            hidden=16,
            lr=0.02,
            batch=32,
            classes=["malignant", "benign"],
            seed=8,
        ),
    )

    # tiny-val: iris with 10 validation rows per class.
    iris = load_iris()
    perm = np.random.default_rng(23).permutation(len(iris.target))
    va = np.concatenate([perm[iris.target[perm] == c][:10] for c in range(3)])
    tr = np.setdiff1d(perm, va)
    xs, xv = _standardise(iris.data[tr], iris.data[va])
    train_run(
        root,
        RunConfig(
            "tiny-val",
            "multiclass",
            Split(xs, iris.target[tr], tr),
            Split(xv, iris.target[va], va),
            Split(xs, iris.target[tr], tr),
            epochs=10,
            hidden=8,
            lr=0.01,
            batch=16,
            classes=list(iris.target_names),
            seed=9,
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "fixtures" / "runs")
    args = parser.parse_args()
    build(args.out)
    build_more(args.out)
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"wrote {args.out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
