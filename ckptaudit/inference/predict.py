"""``ckptaudit predict``: re-create the predictions of saved checkpoints.

For every checkpoint of a run that lacks ``val.npz`` (and ``train.npz`` when training data
is given), build the architecture (``--model MOD:FN``, no weights), load the checkpoint's
weights as data (:mod:`.loading`), run the validation inputs (``--data MOD:FN``) through it
under ``torch.inference_mode()`` and write the split atomically (a hidden temporary file
renamed into place). The arrays are those the recorder writes (``target``, ``output``,
``id``, ``input_hash``) plus ``predict_fingerprint``: a hash of the data the predictions
were made on. A checkpoint whose file carries the same fingerprint is skipped, so an
interrupted predict simply runs again; a file written by the recorder during training (no
fingerprint) is kept as it is.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CkptauditError, RunFormatError, UsageError
from ..store.reader import Run, read_run
from .prediction_files import FINGERPRINT_KEY, _check_fits, stored_fingerprint, weights_in, weights_of, write_split
from .predictor import (
    Job,
    Options,
    PredictData,
    Predictor,
    _data,
    _model_label,
    as_predict_data,
    build_model,
    load_callable,
    resolve_device,
)
from .tasks import _settle_task

__all__ = [
    "FINGERPRINT_KEY",
    "Job",
    "Options",
    "PredictData",
    "PredictEntry",
    "PredictReport",
    "Predictor",
    "as_predict_data",
    "build_model",
    "load_callable",
    "plan",
    "predict",
    "resolve_device",
    "stored_fingerprint",
    "weights_in",
    "weights_of",
    "write_split",
]


@dataclass(frozen=True)
class PredictEntry:
    """What predict did for one split of one checkpoint."""

    checkpoint: str
    epoch: int
    split: str
    action: str  #: predicted, skipped (same data), recorded (from training), metrics-only, failed
    rows: int | None = None
    seconds: float | None = None
    note: str | None = None


@dataclass(frozen=True)
class PredictReport:
    """Every checkpoint's outcome, and where the predictions were made."""

    run: Path
    device: str
    engine: str
    workers: int
    entries: tuple[PredictEntry, ...]
    seconds: float
    #: how an imported run without a task got one (None: run.json had it)
    task_note: str | None = None

    @property
    def failures(self) -> tuple[PredictEntry, ...]:
        """The entries that failed (the command then exits 2)."""
        return tuple(e for e in self.entries if e.action == "failed")


def plan(run: Run, datasets: Mapping[str, PredictData], *, force: bool = False) -> tuple[list[Job], list[PredictEntry]]:
    """The jobs to do and the entries for what needs nothing (skipped, recorded, metrics-only)."""
    jobs: list[Job] = []
    done: list[PredictEntry] = []
    for ckpt in run.checkpoints:
        if getattr(ckpt, "metrics_only", False) and not ckpt.has_split("val"):
            done.append(PredictEntry(ckpt.name, ckpt.epoch, "val", "metrics-only", note="no weights (deleted by rotation)"))
            continue
        todo = []
        for split, data in datasets.items():
            # NOTE: a predict killed while writing leaves its own hidden temporary file; the
            # name (.SPLIT.npz.<8 hex>.tmp) is ours alone, so it is removed before retrying.
            for stale in ckpt.path.glob(f".{split}.npz.*.tmp"):
                if re.fullmatch(rf"\.{split}\.npz\.[0-9a-f]{{8}}\.tmp", stale.name) and stale.is_file():
                    stale.unlink()
            stored = stored_fingerprint(ckpt.split_file(split))
            if stored is None or (force and stored != data.fingerprint):
                todo.append(split)
            elif stored == data.fingerprint:
                done.append(PredictEntry(ckpt.name, ckpt.epoch, split, "skipped", data.n, note="already predicted on this data"))
            elif stored == "":
                done.append(PredictEntry(ckpt.name, ckpt.epoch, split, "recorded", note="written during training; kept"))
            elif stored == "unreadable":
                raise UsageError(f"{split}.npz is unreadable; pass --force to predict it again", ckpt.path)
            else:
                raise UsageError(
                    f"{split}.npz was predicted on other data (fingerprint differs); pass --force to predict it again",
                    ckpt.path,
                )
        if not todo:
            continue
        weights = weights_of(ckpt)
        if weights is None:
            done.extend(PredictEntry(ckpt.name, ckpt.epoch, s, "failed", note="no weights file in the checkpoint") for s in todo)
            continue
        jobs.append(Job(ckpt.name, ckpt.epoch, ckpt.path, weights, tuple(todo)))
    return jobs, done


@dataclass(frozen=True)
class SplitWriter:
    """Checks each predicted split with the reader's own checks and writes it atomically
    (:func:`write_split`); picklable, so that a Ray worker writes where it predicted."""

    run: Run

    def __call__(self, job: Job, datasets: Mapping[str, PredictData], outputs: Mapping[str, np.ndarray]) -> dict[str, str | None]:
        """Per split of ``job``: None (written) or why its outputs do not fit the run."""
        written: dict[str, str | None] = {}
        for split in job.splits:
            try:
                _check_fits(self.run, job, split, datasets[split], outputs[split])
            except CkptauditError as exc:
                written[split] = str(exc)
                continue
            write_split(job.folder, split, datasets[split], outputs[split])
            written[split] = None
        return written


def predict(
    run_path: str | os.PathLike[str],
    model: str | Any,
    data: str | Any,
    *,
    train_data: str | Any | None = None,
    task: str | None = None,
    output: str | None = None,
    device: str = "auto",
    batch_size: int = 1024,
    autocast: bool = False,
    workers: int = 1,
    engine: str = "local",
    address: str | None = None,
    trust_pickle: bool = False,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    checkpoint_progress: Callable[[str], Callable[[int, int], None] | None] | None = None,
) -> PredictReport:
    """Fill ``val.npz`` (and ``train.npz``) of every checkpoint of the run that lacks them.

    ``model`` is a ``MODULE:FUNCTION`` spec, a function returning the architecture, or the
    model object (copied); ``data`` a ``MODULE:FUNCTION`` spec, a function returning the
    data, or the data itself ((inputs, target[, ids]), a Dataset or a DataLoader). With
    ``workers`` > 1 or Ray, an object must be picklable (a module-level function or a model). ``workers`` > 1 predicts several checkpoints at once in a local process pool;
    ``engine="ray"`` predicts on model-holding Ray actors (``address``, or a local cluster),
    which write the files themselves (:mod:`.ray_predict`). An imported run without a task gets it here, from the data
    (:func:`.tasks.infer_task`; ``task``/``output`` say it instead). Every output is checked
    against the run's task before it is written, as the readers will check it. Returns what
    was done per checkpoint; failures do not stop the others.
    """
    from .engines import run_jobs

    start = time.perf_counter()
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    if engine not in ("local", "ray"):
        raise UsageError(f"--engine must be local or ray, not {engine!r}")
    if not isinstance(model, str) and (engine == "ray" or workers > 1):
        import pickle

        try:
            pickle.dumps(model)
        except Exception as exc:
            raise UsageError(
                f"model {_model_label(model)} cannot be sent to other processes ({type(exc).__name__}: {exc}): "
                "give a module-level function or MODULE:FUNCTION, or workers=1"
            ) from None
    datasets = {"val": _data(data, "--data")}
    if train_data is not None:
        datasets["train"] = _data(train_data, "--train-data")
    resolved = resolve_device(device) if engine == "local" else device
    options = Options(model=model, device=resolved, batch_size=batch_size, autocast=autocast, trust_pickle=trust_pickle)
    task_note = _settle_task(Path(run_path), datasets["val"], options, task, output)
    run = read_run(Path(run_path))
    if not run.checkpoints:
        raise RunFormatError("the run has no checkpoints", run.path)
    jobs, entries = plan(run, datasets, force=force)
    entries = list(entries)

    def on_result(job: Job, written: Mapping[str, str | None] | None, seconds: float, error: str | None) -> None:
        for split in job.splits:
            if error is None and written is not None:
                problem = written.get(split)
                if problem is not None:
                    entries.append(PredictEntry(job.checkpoint, job.epoch, split, "failed", note=problem))
                    continue
                entries.append(PredictEntry(job.checkpoint, job.epoch, split, "predicted", datasets[split].n, round(seconds, 4)))
            else:
                entries.append(PredictEntry(job.checkpoint, job.epoch, split, "failed", note=error))

    if jobs:
        run_jobs(
            jobs,
            datasets,
            options,
            Predictor,
            on_result,
            write=SplitWriter(run),
            workers=workers,
            engine=engine,
            address=address,
            progress=progress,
            checkpoint_progress=checkpoint_progress,
        )
    order = {c.name: i for i, c in enumerate(run.checkpoints)}
    entries.sort(key=lambda e: (order.get(e.checkpoint, 0), e.split != "val"))
    return PredictReport(run.path, resolved, engine, workers, tuple(entries), time.perf_counter() - start, task_note)
