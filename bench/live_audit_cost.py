"""What the live audit costs, as a share of the epoch, on the integration tests' models.

    PYTHONPATH=. python bench/live_audit_cost.py [--epochs 6] [--repeats 3] [--rows 0]

For each framework (Lightning, Keras, HF: the tiny models of tests/test_integration_*.py,
on their data, with ``train_sample`` so the leakage check has train rows to read), trains
with the live audit on and times every ``LiveAudit.observe`` call (the whole live audit: one
call per save), and trains again with it off for the epoch time. Prints one line per
framework: median observe time, the epoch time (live off; (fit of E epochs - fit of 1) / (E-1),
so the fit's start-up is not counted), the share, and the fit-time
difference on / off (noisy on a shared machine). ``--rows N`` replaces the Lightning data by
N synthetic training and N validation rows (the scale of docs/integrations.md's overhead table).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from tempfile import TemporaryDirectory

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from ckptaudit.auditing.live import LiveAudit  # noqa: E402

TIMES: list[float] = []
_observe = LiveAudit.observe


def _timed(self, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    try:
        return _observe(self, *args, **kwargs)
    finally:
        TIMES.append(time.perf_counter() - start)


LiveAudit.observe = _timed  # type: ignore[method-assign]


def lightning(root: Path, live: bool, epochs: int, rows: int) -> float:
    import lightning.pytorch as L
    import numpy as np
    import torch
    from test_integration_lightning import TinyNet, loaders
    from torch.utils.data import DataLoader, TensorDataset

    from ckptaudit.integrations.lightning import CkptauditCallback

    L.seed_everything(0, verbose=False)
    train, val, _ = loaders()
    if rows:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(2 * rows, 30)).astype(np.float32)
        y = (x[:, 0] > 0).astype(np.int64)
        train = DataLoader(TensorDataset(torch.from_numpy(x[:rows]), torch.from_numpy(y[:rows])), batch_size=256, shuffle=True)
        ids = torch.arange(rows)
        val = DataLoader(TensorDataset(torch.from_numpy(x[rows:]), torch.from_numpy(y[rows:]), ids), batch_size=1024)
    cb = CkptauditCallback(root / "run", task="binary", output="logit", weights=None, train_sample=300, live_audit=live)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        callbacks=[cb],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        default_root_dir=root,
    )
    start = time.perf_counter()
    trainer.fit(TinyNet(), train, val)
    return time.perf_counter() - start


def keras_fit(root: Path, live: bool, epochs: int, rows: int) -> float:
    import numpy as np
    from _framework_checks import breast_cancer
    from test_integration_keras import build

    from ckptaudit.integrations.keras import CkptauditKerasCallback

    (xt, yt), (xv, yv) = breast_cancer()
    cb = CkptauditKerasCallback(
        root / "run",
        validation_data=(xv, yv, np.arange(len(yv))),
        task="binary",
        output="probability",
        weights=False,
        train_data=(xt, yt),
        train_sample=300,
        live_audit=live,
    )
    model = build()
    start = time.perf_counter()
    model.fit(xt, yt, validation_data=(xv, yv), epochs=epochs, batch_size=32, verbose=0, callbacks=[cb])
    return time.perf_counter() - start


def hf(root: Path, live: bool, epochs: int, rows: int) -> float:
    from test_integration_hf import train, wine

    from ckptaudit.integrations.hf import CkptauditTrainerCallback

    (xt, _), (xv, _) = wine()
    cb = CkptauditTrainerCallback(
        root / "run", task="multiclass", output="logit", weights=False, val_inputs=xv, train_sample=120, live_audit=live
    )
    start = time.perf_counter()
    train(root, cb, epochs=epochs, save_strategy="no", load_best_model_at_end=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=0)
    parser.add_argument("--only", default="lightning,keras,hf")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    for name in args.only.split(","):
        fn = {"lightning": lightning, "keras": keras_fit, "hf": hf}[name]
        on, off, one = [], [], []
        TIMES.clear()
        with TemporaryDirectory() as tmp:
            for r in range(args.repeats):
                one.append(fn(Path(tmp) / f"one{r}", False, 1, args.rows))
                off.append(fn(Path(tmp) / f"off{r}", False, args.epochs, args.rows))
                on.append(fn(Path(tmp) / f"on{r}", True, args.epochs, args.rows))
        observe = statistics.median(TIMES)
        # NOTE: the epoch without the fit's start-up: (fit of E epochs - fit of 1) / (E - 1)
        epoch = (statistics.median(off) - statistics.median(one)) / (args.epochs - 1)
        fit_diff = (statistics.median(on) - statistics.median(off)) / statistics.median(off)
        print(
            f"{name}{' rows=' + str(args.rows) if args.rows else ''}: live audit {observe * 1e3:.2f} ms per save "
            f"(max {max(TIMES) * 1e3:.2f} ms, {len(TIMES)} saves), epoch {epoch * 1e3:.1f} ms: "
            f"{100 * observe / epoch:.2f}% of the epoch; fit time on vs off {100 * fit_diff:+.1f}% (noisy)"
        )


if __name__ == "__main__":
    main()
