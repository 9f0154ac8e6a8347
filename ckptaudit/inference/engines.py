"""Where checkpoints are predicted: this process, a local process pool, or Ray.

Each checkpoint's outputs are checked and written by the caller's ``write(job, datasets,
outputs)`` (``predict``'s atomic writer, :class:`ckptaudit.inference.predict.SplitWriter`),
and ``on_result`` gets what was written per split (or the checkpoint's one-line error). The
local engines write in this process; the Ray engine writes from its workers, where the
outputs were made (the run folder must be on a file system the workers share, as it is on
a local cluster), and only the per-split result travels back.

This module knows a predictor only by its methods, ``load(weights, state=None)``,
``run(data, progress)`` and, optionally, ``read_weights(weights)`` (the file read ahead,
off the model), and builds it with the ``make_predictor`` the caller passes (a module-level
class, so it pickles by reference into pool workers and Ray actors): it never imports
:mod:`.predict`, which calls into it.

- ``local``, one worker: checkpoints one after another, with a progress bar per checkpoint.
- ``local``, ``--workers N``: a spawn-started process pool; each worker builds the model and
  receives the data once, then takes checkpoints one by one. With several GPUs, worker i uses
  GPU i mod count. Torch threads are divided between workers.
- ``ray``: one model-holding actor per worker (:mod:`.ray_predict`): the model is built once
  per actor and each checkpoint's weights are swapped into it, the next checkpoint's weights
  read while this one predicts; the data put in Ray's object store once.
  ``ray.init(address=...)`` or a local instance; an instance this process already started is reused.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

# NOTE: reaching a cluster is shared with the read-heavy verbs' Ray engine; the names stay importable from here.
from ..engines.raycluster import RAY_CONNECT_ENV as RAY_CONNECT_ENV
from ..engines.raycluster import reachable as reachable
from ..errors import CkptauditError, UsageError

if TYPE_CHECKING:  # NOTE: types only: predict (and its predictor) call into this module, never the reverse
    from .predictor import Job, Options, PredictData

#: what an engine reports per job: (job, per split None (written) or why it was not, or None
#: when the checkpoint failed; seconds; the checkpoint's error or None)
OnResult = Callable[["Job", "Mapping[str, str | None] | None", float, "str | None"], None]
#: checks and writes a job's outputs: per split None (written) or why it was not
Write = Callable[["Job", "Mapping[str, PredictData]", "Mapping[str, np.ndarray]"], "Mapping[str, str | None]"]


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
    predictor: Any,
    job: Job,
    datasets: Mapping[str, PredictData],
    progress: Callable[[int, int], None] | None = None,
    state: Any = None,
) -> dict[str, np.ndarray]:
    """Load one checkpoint (``state``: its weights already read, by ``read_weights``) and
    predict each split it lacks; returns ``{split: output}``."""
    if state is None:
        predictor.load(job.weights)
    else:
        predictor.load(job.weights, state)
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


def _predicted(
    predictor: Any, job: Job, datasets: Mapping[str, PredictData], bar: Any = None, state: Any = None
) -> tuple[Any, str | None]:
    """``(outputs, None)``, or ``(None, why)`` when this checkpoint failed: a problem with its
    files, or the model raised while loading its weights or predicting (user code: reported
    for this checkpoint, the others go on)."""
    try:
        return predict_job(predictor, job, datasets, bar, state), None
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
    write: Write,
    workers: int = 1,
    engine: str = "local",
    address: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    checkpoint_progress: Callable[[str], Callable[[int, int], None] | None] | None = None,
) -> None:
    """Predict every job with the chosen engine, ``write`` its outputs; ``on_result``
    receives what was written (or the job's one-line error) as soon as it is done, in this process."""
    if engine == "ray":
        from .ray_predict import run_ray

        run_ray(jobs, datasets, options, make_predictor, on_result, write, address=address, workers=workers, progress=progress)
        return
    if workers > 1 and len(jobs) > 1:
        _run_pool(jobs, datasets, options, make_predictor, on_result, write, workers=workers, progress=progress)
        return
    predictor = _build(make_predictor, options)
    for done, job in enumerate(jobs, 1):
        start = time.perf_counter()
        bar = checkpoint_progress(job.checkpoint) if checkpoint_progress is not None else None
        outputs, error = _predicted(predictor, job, datasets, bar)
        seconds = 0.0 if error else time.perf_counter() - start
        on_result(job, None if outputs is None else write(job, datasets, outputs), seconds, error)
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
    write: Write,
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
                job = futures[fut]
                on_result(job, None if outputs is None else write(job, datasets, outputs), seconds, error)
                if progress is not None:
                    progress(done, len(jobs))
    except Exception as exc:
        if isinstance(exc, CkptauditError):
            raise
        # NOTE: a worker that died (killed, out of memory) breaks the pool; the exception
        # re-raised here carries the worker's message (its traceback is not shown).
        cause = exc.__cause__ or exc
        raise CkptauditError(f"a predict worker failed: {_describe(cause)}") from None
