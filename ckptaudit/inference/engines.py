"""Where checkpoints are predicted: this process, a local process pool, or Ray.

Every engine returns each checkpoint's outputs to this process, which hands them to the
caller's ``on_result`` (``predict`` checks them and writes them through its one atomic
writer); workers never write into the run, so a Ray cluster needs no shared writable file
system (it must be able to read the weights files, and import the ``--model`` function).

This module knows a predictor only by its two methods, ``load(weights)`` and
``run(data, progress)``, and builds it with the ``make_predictor`` the caller passes (a
module-level class, so it pickles by reference into pool workers and Ray tasks): it never
imports :mod:`.predict`, which calls into it.

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
from typing import TYPE_CHECKING, Any

import numpy as np

# NOTE: reaching a cluster is shared with the read-heavy verbs' Ray engine; the names stay importable from here.
from ..engines.raycluster import RAY_CONNECT_ENV as RAY_CONNECT_ENV
from ..engines.raycluster import reachable as reachable
from ..errors import CkptauditError, UsageError

if TYPE_CHECKING:  # NOTE: types only: predict (and its predictor) call into this module, never the reverse
    from .predictor import Job, Options, PredictData

#: what an engine reports per job: (job, outputs per split or None, seconds, error or None)
OnResult = Callable[["Job", "Mapping[str, np.ndarray] | None", float, "str | None"], None]


def _build(make_predictor: Callable[..., Any], options: Options, device: str | None = None) -> Any:
    """The ``--model`` architecture on ``device``; an exception the user's function raises
    is a :class:`UsageError` naming it (not an internal error)."""
    try:
        return make_predictor(
            options.model,
            device=options.device if device is None else device,
            batch_size=options.batch_size,
            autocast=options.autocast,
            trust_pickle=options.trust_pickle,
        )
    except CkptauditError:
        raise
    except Exception as exc:
        raise UsageError(f"--model {options.model}: building the model raised {_describe(exc)}") from None


def predict_job(
    predictor: Any, job: Job, datasets: Mapping[str, PredictData], progress: Callable[[int, int], None] | None = None
) -> dict[str, np.ndarray]:
    """Load one checkpoint and predict each split it lacks; returns ``{split: output}``."""
    predictor.load(job.weights)
    return {split: predictor.run(datasets[split], progress) for split in job.splits}


def _describe(exc: BaseException) -> str:
    """One line for a failure: ckptaudit's own message, or the exception's type and the
    first line of its message (user code raises what it likes; a worker's traceback is not
    shown, CKPTAUDIT_DEBUG=1 shows the parent's)."""
    if isinstance(exc, CkptauditError):
        return str(exc)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _predicted(predictor: Any, job: Job, datasets: Mapping[str, PredictData], bar: Any = None) -> tuple[Any, str | None]:
    """``(outputs, None)``, or ``(None, why)`` when this checkpoint failed: a problem with its
    files, or the model raised while loading its weights or predicting (user code: reported
    for this checkpoint, the others go on)."""
    try:
        return predict_job(predictor, job, datasets, bar), None
    except CkptauditError as exc:
        return None, _describe(exc)
    except Exception as exc:
        return None, f"the model raised {_describe(exc)}"


def run_jobs(
    jobs: Sequence[Job],
    datasets: Mapping[str, PredictData],
    options: Options,
    make_predictor: Callable[..., Any],
    on_result: OnResult,
    *,
    workers: int = 1,
    engine: str = "local",
    address: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    checkpoint_progress: Callable[[str], Callable[[int, int], None] | None] | None = None,
) -> None:
    """Predict every job with the chosen engine; ``on_result`` receives each job's outputs
    (or its one-line error) as soon as it is done, in this process."""
    if engine == "ray":
        _run_ray(jobs, datasets, options, make_predictor, on_result, address=address, workers=workers, progress=progress)
        return
    if workers > 1 and len(jobs) > 1:
        _run_pool(jobs, datasets, options, make_predictor, on_result, workers=workers, progress=progress)
        return
    predictor = _build(make_predictor, options)
    for done, job in enumerate(jobs, 1):
        start = time.perf_counter()
        bar = checkpoint_progress(job.checkpoint) if checkpoint_progress is not None else None
        outputs, error = _predicted(predictor, job, datasets, bar)
        on_result(job, outputs, 0.0 if error else time.perf_counter() - start, error)
        if progress is not None:
            progress(done, len(jobs))


# --------------------------------------------------------------------------- local pool

_WORKER: dict[str, Any] = {}


def _pool_init(
    options: Options, datasets: Mapping[str, PredictData], counter: Any, workers: int, make_predictor: Callable[..., Any]
) -> None:
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
    # NOTE: an exception here would break the pool with the worker's traceback on stderr;
    # it is kept and given back, as one line, by the worker's first task instead.
    try:
        _WORKER["predictor"] = _build(make_predictor, options, device)
    except Exception as exc:
        _WORKER["broken"] = _describe(exc)


def _pool_task(job: Job) -> tuple[dict[str, np.ndarray] | None, float, str | None, bool]:
    """(outputs, seconds, why it failed, whether the worker could not start at all)."""
    if "broken" in _WORKER:
        return None, 0.0, _WORKER["broken"], True
    start = time.perf_counter()
    outputs, error = _predicted(_WORKER["predictor"], job, _WORKER["datasets"])
    return outputs, 0.0 if error else time.perf_counter() - start, error, False


def _run_pool(
    jobs: Sequence[Job],
    datasets: Mapping[str, PredictData],
    options: Options,
    make_predictor: Callable[..., Any],
    on_result: OnResult,
    *,
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = mp.get_context("spawn")
    counter = ctx.Value("i", 0)
    n = min(workers, len(jobs))
    try:
        with ProcessPoolExecutor(
            max_workers=n, mp_context=ctx, initializer=_pool_init, initargs=(options, dict(datasets), counter, n, make_predictor)
        ) as pool:
            futures = {pool.submit(_pool_task, job): job for job in jobs}
            for done, fut in enumerate(as_completed(futures), 1):
                outputs, seconds, error, broken = fut.result()
                if broken:
                    raise UsageError(error or "a predict worker could not start")
                on_result(futures[fut], outputs, seconds, error)
                if progress is not None:
                    progress(done, len(jobs))
    except Exception as exc:
        if isinstance(exc, CkptauditError):
            raise
        # NOTE: a worker that died (killed, out of memory) breaks the pool; the exception
        # re-raised here carries the worker's message (its traceback is not shown).
        cause = exc.__cause__ or exc
        raise CkptauditError(f"a predict worker failed: {_describe(cause)}") from None


# --------------------------------------------------------------------------- ray


def _ray_task(
    options: Options, datasets: Mapping[str, PredictData], job: Job, paths: list[str], make_predictor: Callable[..., Any]
) -> tuple[Any, float, str | None]:
    for p in reversed(paths):
        if p not in sys.path:
            sys.path.insert(0, p)
    import torch

    device = options.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    start = time.perf_counter()
    try:
        predictor = _build(make_predictor, options, device)
    except CkptauditError as exc:
        return None, 0.0, _describe(exc)
    outputs, error = _predicted(predictor, job, datasets)
    return outputs, 0.0 if error else time.perf_counter() - start, error


def _run_ray(
    jobs: Sequence[Job],
    datasets: Mapping[str, PredictData],
    options: Options,
    make_predictor: Callable[..., Any],
    on_result: OnResult,
    *,
    address: str | None,
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    from ..engines.raycluster import connect

    ray = connect(address, max(workers, 1) if workers > 1 else None)
    gpus = ray.cluster_resources().get("GPU", 0)
    opts = options
    if options.device == "auto":
        opts = replace(options, device="cuda" if gpus else "cpu")
    elif options.device.startswith("cuda") and not gpus:
        raise UsageError(f"--device {options.device}: the Ray cluster has no GPU")
    task = ray.remote(num_gpus=1 if opts.device.startswith("cuda") else 0, num_cpus=1)(_ray_task)
    data_ref: Any = ray.put(dict(datasets))
    paths = [os.getcwd()] + [p for p in sys.path if p and os.path.isdir(p) and "site-packages" not in p]
    pending = {task.remote(opts, data_ref, job, paths, make_predictor): job for job in jobs}
    done = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            job = pending.pop(ref)
            try:
                outputs, seconds, error = ray.get(ref)
            except Exception as exc:  # a task that crashed (RayTaskError): reported, the others go on
                outputs, seconds, error = None, 0.0, f"ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            on_result(job, outputs, seconds, error)
            done += 1
            if progress is not None:
                progress(done, len(jobs))
