"""Where checkpoints are predicted: this process, a local process pool, or Ray.

Every engine returns each checkpoint's outputs to this process, which writes them into
the run through the one atomic writer (:func:`.predict.write_split`); workers never write
into the run, so a Ray cluster needs no shared writable file system (it must be able to
read the weights files, and import the ``--model`` function).

- ``local``, one worker: checkpoints one after another, with a progress bar per checkpoint.
- ``local``, ``--workers N``: a spawn-started process pool; each worker builds the model and
  receives the data once, then takes checkpoints one by one. With several GPUs, worker i uses
  GPU i mod count. Torch threads are divided between workers.
- ``ray``: one task per checkpoint (``num_gpus=1`` when the cluster has GPUs), the data put
  in Ray's object store once. ``ray.init(address=...)`` or a local instance; an instance this
  process already started is reused.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..errors import CkptauditError, UsageError
from .predict import Job, Options, PredictData, PredictEntry, Predictor, predict_job, write_split


def _entries(
    job: Job, outputs: Mapping[str, np.ndarray] | None, seconds: float, error: str | None, datasets: Mapping[str, PredictData]
) -> list[PredictEntry]:
    if error is not None:
        return [PredictEntry(job.checkpoint, job.epoch, s, "failed", note=error) for s in job.splits]
    assert outputs is not None
    out = []
    for split in job.splits:
        write_split(job.folder, split, datasets[split], outputs[split])
        out.append(PredictEntry(job.checkpoint, job.epoch, split, "predicted", datasets[split].n, round(seconds, 4)))
    return out


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, CkptauditError) else f"{type(exc).__name__}: {exc}"


def run_jobs(
    jobs: Sequence[Job],
    datasets: Mapping[str, PredictData],
    options: Options,
    *,
    workers: int = 1,
    engine: str = "local",
    address: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    checkpoint_progress: Callable[[str], Callable[[int, int], None] | None] | None = None,
) -> list[PredictEntry]:
    """Predict every job with the chosen engine and write the results; one entry per split."""
    if engine == "ray":
        return _run_ray(jobs, datasets, options, address=address, workers=workers, progress=progress)
    if workers > 1 and len(jobs) > 1:
        return _run_pool(jobs, datasets, options, workers=workers, progress=progress)
    predictor = Predictor(
        options.model,
        device=options.device,
        batch_size=options.batch_size,
        autocast=options.autocast,
        trust_pickle=options.trust_pickle,
    )
    entries: list[PredictEntry] = []
    for done, job in enumerate(jobs, 1):
        start = time.perf_counter()
        bar = checkpoint_progress(job.checkpoint) if checkpoint_progress is not None else None
        try:
            outputs = predict_job(predictor, job, datasets, bar)
            entries += _entries(job, outputs, time.perf_counter() - start, None, datasets)
        except CkptauditError as exc:
            entries += _entries(job, None, 0.0, _describe(exc), datasets)
        if progress is not None:
            progress(done, len(jobs))
    return entries


# --------------------------------------------------------------------------- local pool

_WORKER: dict[str, Any] = {}


def _pool_init(options: Options, datasets: Mapping[str, PredictData], counter: Any, workers: int) -> None:
    import torch

    with counter.get_lock():
        index = counter.value
        counter.value += 1
    device = options.device
    if device.startswith("cuda") and ":" not in device and torch.cuda.device_count() > 1:
        device = f"cuda:{index % torch.cuda.device_count()}"
    # NOTE: N workers each running all cores' threads would fight over them.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    _WORKER["datasets"] = datasets
    _WORKER["predictor"] = Predictor(
        options.model, device=device, batch_size=options.batch_size, autocast=options.autocast, trust_pickle=options.trust_pickle
    )


def _pool_task(job: Job) -> tuple[dict[str, np.ndarray] | None, float, str | None]:
    start = time.perf_counter()
    try:
        return predict_job(_WORKER["predictor"], job, _WORKER["datasets"]), time.perf_counter() - start, None
    except CkptauditError as exc:
        return None, 0.0, _describe(exc)


def _run_pool(
    jobs: Sequence[Job],
    datasets: Mapping[str, PredictData],
    options: Options,
    *,
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> list[PredictEntry]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = mp.get_context("spawn")
    counter = ctx.Value("i", 0)
    entries: list[PredictEntry] = []
    n = min(workers, len(jobs))
    try:
        with ProcessPoolExecutor(
            max_workers=n, mp_context=ctx, initializer=_pool_init, initargs=(options, dict(datasets), counter, n)
        ) as pool:
            futures = {pool.submit(_pool_task, job): job for job in jobs}
            for done, fut in enumerate(as_completed(futures), 1):
                outputs, seconds, error = fut.result()
                entries += _entries(futures[fut], outputs, seconds, error, datasets)
                if progress is not None:
                    progress(done, len(jobs))
    except Exception as exc:
        if isinstance(exc, CkptauditError):
            raise
        # NOTE: a worker that failed to start (for example --model raised) breaks the pool.
        cause = exc.__cause__ or exc
        raise CkptauditError(f"a predict worker failed: {_describe(cause)}") from None
    return entries


# --------------------------------------------------------------------------- ray


def _ray_task(options: Options, datasets: Mapping[str, PredictData], job: Job, paths: list[str]) -> tuple[Any, float, str | None]:
    for p in reversed(paths):
        if p not in sys.path:
            sys.path.insert(0, p)
    import torch

    device = options.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    start = time.perf_counter()
    try:
        predictor = Predictor(
            options.model,
            device=device,
            batch_size=options.batch_size,
            autocast=options.autocast,
            trust_pickle=options.trust_pickle,
        )
        return predict_job(predictor, job, datasets), time.perf_counter() - start, None
    except CkptauditError as exc:
        return None, 0.0, _describe(exc)


def _run_ray(
    jobs: Sequence[Job],
    datasets: Mapping[str, PredictData],
    options: Options,
    *,
    address: str | None,
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> list[PredictEntry]:
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray: pip install 'ckptaudit[ray]'") from None
    if not ray.is_initialized():
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=max(workers, 1) if workers > 1 else None, include_dashboard=False, log_to_driver=False)
    gpus = ray.cluster_resources().get("GPU", 0)
    opts = options
    if options.device == "auto":
        opts = replace(options, device="cuda" if gpus else "cpu")
    elif options.device.startswith("cuda") and not gpus:
        raise UsageError(f"--device {options.device}: the Ray cluster has no GPU")
    task = ray.remote(num_gpus=1 if opts.device.startswith("cuda") else 0, num_cpus=1)(_ray_task)
    data_ref: Any = ray.put(dict(datasets))
    paths = [os.getcwd()] + [p for p in sys.path if p and os.path.isdir(p) and "site-packages" not in p]
    pending = {task.remote(opts, data_ref, job, paths): job for job in jobs}
    entries: list[PredictEntry] = []
    done = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            job = pending.pop(ref)
            try:
                outputs, seconds, error = ray.get(ref)
            except Exception as exc:  # a task that crashed (RayTaskError): reported, the others go on
                outputs, seconds, error = None, 0.0, f"ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            entries += _entries(job, outputs, seconds, error, datasets)
            done += 1
            if progress is not None:
                progress(done, len(jobs))
    return entries
