"""``predict --engine ray``: one model-holding actor per worker, weights swapped, outputs
written where they were made.

Each actor builds the ``--model`` architecture once (the data comes from Ray's object store,
once per actor) and takes checkpoints one after another: the checkpoint's weights are loaded
into the model it holds (``Predictor.load``: every parameter and buffer replaced, strict), so
the outputs are those of a model built for that checkpoint alone, as the local engine makes
them. While one checkpoint predicts, a thread reads the next one's weights file (the driver
gives each actor its next job with the current one). The actor checks and writes the outputs
itself, atomically (the caller's ``write``, :class:`~ckptaudit.inference.predict.SplitWriter`),
and returns only what was written per split: outputs never travel through the driver, whose
run folder the workers must see at the same path (a shared file system; a local cluster does).

Actors are as many as ``--workers`` (above 1), else as the cluster has GPUs (``--device
cuda``) or CPUs, and never more than the checkpoints. An actor that dies (killed, out of
memory) fails the checkpoint it held, with Ray's one line, and its reserved next checkpoint
goes back to the queue for the others.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import CkptauditError, UsageError
from .engines import OnResult, Write, _build, _describe, _predicted

if TYPE_CHECKING:
    from .predictor import Job, Options, PredictData


class ModelActor:
    """One worker: the model built once, checkpoints' weights swapped into it, the next
    checkpoint's weights read ahead, outputs written here."""

    def __init__(
        self,
        options: Options,
        datasets: Mapping[str, PredictData],
        paths: list[str],
        make_predictor: Callable[..., Any],
        write: Write,
    ) -> None:
        for p in reversed(paths):
            if p not in sys.path:
                sys.path.insert(0, p)
        self.datasets = datasets
        self.write = write
        self.broken: str | None = None
        self.predictor: Any = None
        self.ahead: tuple[Any, Future[Any]] | None = None
        self.reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ckptaudit-weights")
        self.builds = 0
        try:
            self.predictor = _build(make_predictor, options, options.device)
            self.builds = 1
        except CkptauditError as exc:
            self.broken = _describe(exc)

    def _read(self, weights: Any) -> Any:
        reader = getattr(self.predictor, "read_weights", None)
        return None if reader is None else reader(weights)

    def _prefetched(self, weights: Any) -> Any:
        """The weights read ahead for ``weights`` (None: none, or the read failed; the load
        then reads the file again and reports its error in place)."""
        ahead, self.ahead = self.ahead, None
        if ahead is None or ahead[0] != weights:
            return None
        try:
            return ahead[1].result()
        except Exception:
            return None

    def predict(self, job: Job, following: Job | None) -> tuple[Mapping[str, str | None] | None, float, str | None, int]:
        """Predict ``job`` and write its outputs; ``following``: this actor's next job, whose
        weights are read meanwhile. Returns (per split what was written, seconds, error,
        models built so far)."""
        if self.broken is not None:
            return None, 0.0, self.broken, self.builds
        state = self._prefetched(job.weights)
        if following is not None:
            self.ahead = (following.weights, self.reader.submit(self._read, following.weights))
        start = time.perf_counter()
        outputs, error = _predicted(self.predictor, job, self.datasets, state=state)
        seconds = 0.0 if error else time.perf_counter() - start
        written = None if outputs is None else self.write(job, self.datasets, outputs)
        return written, seconds, error, self.builds


def _actors(ray: Any, opts: Options, workers: int, jobs: int) -> int:
    """How many actors: ``--workers`` above 1, else the cluster's GPUs (cuda) or CPUs."""
    if workers > 1:
        return max(1, min(workers, jobs))
    resources = ray.cluster_resources()
    have = resources.get("GPU", 0) if opts.device.startswith("cuda") else resources.get("CPU", 1)
    return max(1, min(int(have), jobs))


def run_ray(
    jobs: Sequence[Job],
    datasets: Mapping[str, PredictData],
    options: Options,
    make_predictor: Callable[..., Any],
    on_result: OnResult,
    write: Write,
    *,
    address: str | None,
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Predict ``jobs`` on model-holding Ray actors (see the module docstring)."""
    from ..engines.raycluster import connect

    ray = connect(address, max(workers, 1) if workers > 1 else None)
    gpus = ray.cluster_resources().get("GPU", 0)
    opts = options
    if options.device == "auto":
        opts = replace(options, device="cuda" if gpus else "cpu")
    elif options.device.startswith("cuda") and not gpus:
        raise UsageError(f"--device {options.device}: the Ray cluster has no GPU")
    actor_class = ray.remote(num_gpus=1 if opts.device.startswith("cuda") else 0, num_cpus=1)(ModelActor)
    data_ref: Any = ray.put(dict(datasets))
    paths = [os.getcwd()] + [p for p in sys.path if p and os.path.isdir(p) and "site-packages" not in p]
    count = _actors(ray, opts, workers, len(jobs))
    actors = [actor_class.remote(opts, data_ref, paths, make_predictor, write) for _ in range(count)]
    queue: deque[Job] = deque(jobs)
    reserved: dict[int, Job | None] = {}
    pending: dict[Any, tuple[int, Job]] = {}

    def give(a: int, job: Job | None) -> None:
        if job is None:
            job = queue.popleft() if queue else None
        if job is None:
            return
        following = queue.popleft() if queue else None
        reserved[a] = following
        pending[actors[a].predict.remote(job, following)] = (a, job)

    try:
        _drain(
            ray,
            actors,
            pending,
            reserved,
            queue,
            give,
            lambda: actor_class.remote(opts, data_ref, paths, make_predictor, write),
            on_result,
            progress,
            len(jobs),
        )
    finally:
        for actor in actors:
            if actor is not None:
                ray.kill(actor)


def _drain(
    ray: Any,
    actors: list[Any],
    pending: dict[Any, tuple[int, Job]],
    reserved: dict[int, Job | None],
    queue: deque[Job],
    give: Callable[[int, Job | None], None],
    new_actor: Callable[[], Any],
    on_result: OnResult,
    progress: Callable[[int, int], None] | None,
    total: int,
) -> None:
    """Hand every job out and report each as it ends; an actor that died fails its job,
    puts its reserved next one back, and is replaced only when no other actor is left."""
    for a in range(len(actors)):
        give(a, None)
    done = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            a, job = pending.pop(ref)
            following = reserved.pop(a, None)
            try:
                written, seconds, error, _ = ray.get(ref)
            except Exception as exc:  # an actor that died (RayActorError): reported, the others go on
                written, seconds, error = None, 0.0, f"ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
                if following is not None:
                    queue.appendleft(following)
                if not any(i != a for i, _ in pending.values()) and queue:
                    actors[a] = new_actor()
                    following = None
                else:
                    following, actors[a] = None, None
            on_result(job, written, seconds, error)
            done += 1
            if progress is not None:
                progress(done, total)
            if actors[a] is not None:
                give(a, following)
