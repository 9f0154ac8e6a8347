"""Both cores: a process pool that reads and scores many checkpoints at once.

Reading a prediction file, checking it against run.json and computing the metrics is
independent per checkpoint, so worker processes do it for blocks of consecutive
checkpoints while the parent puts the results back in epoch order, run by run, exactly
as one process would have produced them: same values, same notes, same errors at the
same checkpoint (an error a worker met is raised again in the parent when its turn
comes; whatever the workers computed past a run's error is thrown away).

Where it is used: a scoring pass without observers and without ``--cache`` (``rank``):
workers read and score, and send back values and notes. A pass whose observers need each
checkpoint's predictions in the parent (``rank --ci`` and ``pick``: the selection
statistics' per-row data and the audit's statistics), or one with a custom metric (a
user's function runs in one process only), gets a *read-ahead* instead, only when a number
of workers is asked for (``--jobs``, ``CKPTAUDIT_JOBS``) and the files are small
(:data:`READ_AHEAD_MAX_FILE`): workers read and check the files, a bounded window ahead,
and the parent scores them and feeds the observers exactly as before (measured on the HPO
sweep: the statistics, not the reads, take the time there, so it is not automatic). A
cache build or read, ``audit`` and ``check`` (their own passes) stay in one process.

The validation-set check (every checkpoint of a run validated on the same rows) runs in
the workers against the first readable checkpoint of their block, exactly; the parent
compares each block's reference with the run's first by a SHA-1 of the target and id
arrays (one per block, not one per checkpoint). A difference there, or a checkpoint a
worker found different, is settled by the same exact comparison as in one process, on
the two files read again in the parent (only then, and so the message is the same).

How many workers (:func:`resolve_jobs`): ``--jobs N`` / ``-j N``, else the environment
variable ``CKPTAUDIT_JOBS``, else automatic: min(idle cores, 4) when the pass is big
enough to pay for starting processes (:data:`AUTO_MIN_CHECKPOINTS` checkpoints, or
:data:`AUTO_MIN_BYTES` of prediction files), else 1; idle cores are the usable cores less
the load average (other work), since workers on busy cores only add their cost. ``1`` is
the single-process path.

Workers are forked (cheap, nothing re-imported) unless torch is already imported in the
parent, in which case a fork server starts them (a forked torch can deadlock); they
ignore SIGINT, so Ctrl-C reaches only the parent, which stops them before exiting 130,
and on Linux each worker is told to exit when the parent dies. A worker that dies (the OOM
killer, kill -9) loses the block it held without multiprocessing ever saying so: the parent
watches its workers while it waits, and on a death stops the pool and computes every block
not yet returned itself (same function, same data: the same output, later).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from .errors import UsageError

# NOTE: what one checkpoint's scoring gives (Outcome) and how an error travels between
# processes live with the evaluation pass (ckptaudit.metrics.outcome), so that the pass
# never imports the pool (no circle); the names stay importable from here.
from .metrics.outcome import Outcome as Outcome
from .metrics.outcome import fingerprint as fingerprint
from .metrics.outcome import pack_error as pack_error
from .metrics.outcome import raise_error as raise_error

#: the environment variable giving the default number of worker processes
JOBS_ENV = "CKPTAUDIT_JOBS"
#: set (to anything non-empty), every pool started says on stderr how many workers it has
#: (``ckptaudit-jobs: N workers (scoring|read-ahead)``): the benches read it to compare
#: commands at the same process count; no line means one process
REPORT_JOBS_ENV = "CKPTAUDIT_REPORT_JOBS"
#: the most workers the automatic choice starts
MAX_AUTO_JOBS = 4
#: automatic: a pass of at least this many checkpoints uses the pool ...
AUTO_MIN_CHECKPOINTS = 200
#: ... or of at least this many checkpoints ...
AUTO_MIN_FEW = 8
#: ... whose prediction files add up to at least this many bytes (estimated from the first)
AUTO_MIN_BYTES = 64 * 2**20
#: blocks per worker: enough to balance uneven files, few enough to keep messages rare
_BLOCKS_PER_JOB = 8
#: read-ahead (a pass with observers): only for prediction files of at most this many bytes
#: on average (they travel back to the parent pickled) ...
READ_AHEAD_MAX_FILE = 1 << 20
#: ... in blocks of at most this many checkpoints
READ_AHEAD_BLOCK = 32


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def parse_jobs(text: str | int | None, source: str) -> int | None:
    """``N`` (>= 1), or None for automatic (``auto``, ``0`` or empty)."""
    if text is None:
        return None
    raw = str(text).strip().lower()
    if raw in ("", "auto", "0"):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{source} must be a number of worker processes or 'auto', got {text!r}") from None
    if value < 0:
        raise UsageError(f"{source} must be a number of worker processes or 'auto', got {text!r}")
    return value


def requested_jobs(jobs: int | None = None) -> int | None:
    """The number of workers asked for: ``jobs`` (from ``--jobs``), else ``CKPTAUDIT_JOBS``;
    None when neither asks (automatic)."""
    if jobs is not None:
        return parse_jobs(jobs, "--jobs")
    return parse_jobs(os.environ.get(JOBS_ENV), JOBS_ENV)


def idle_cores() -> float:
    """Cores not busy with other work (usable cores less the 1-minute load average, this
    process counted as idle); the usable cores where the load cannot be read."""
    cores = usable_cores()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return float(cores)
    return cores - max(0.0, load - 1.0)


def auto_jobs(checkpoints: int, approx_bytes: int) -> int:
    """The automatic choice: several workers only where starting them pays: enough work
    (forking costs a few milliseconds per worker, each block of results one message) and
    idle cores (measured on a 2-core machine shared with other jobs, load 4-5: two workers
    ran `rank` on bench_scale's binary sweep 25% slower than one process, in 25% more CPU
    time; they cannot run at the same time when the cores are busy)."""
    cores = min(usable_cores(), MAX_AUTO_JOBS, int(idle_cores() + 0.5))
    if cores < 2 or checkpoints < AUTO_MIN_FEW:
        return 1
    if checkpoints >= AUTO_MIN_CHECKPOINTS or approx_bytes >= AUTO_MIN_BYTES:
        return min(cores, checkpoints)
    return 1


def resolve_jobs(jobs: int | None, checkpoints: int, approx_bytes: int) -> int:
    """Workers for a pass of ``checkpoints`` checkpoints (see the module docstring)."""
    asked = requested_jobs(jobs)
    if asked is None:
        return auto_jobs(checkpoints, approx_bytes)
    return max(1, min(asked, checkpoints))


# --------------------------------------------------------------------------- the pool

#: how often (seconds) the parent checks that its workers are alive while it waits
_WATCH_SECONDS = 0.5
#: how long stopping the pool may take before its workers are killed instead (seconds)
_STOP_SECONDS = 5.0


def _children() -> set[int]:
    """Process ids of this process's live children started by multiprocessing."""
    return {p.pid for p in multiprocessing.active_children() if p.pid is not None}


#: in a worker: (runs, specs of each run, guard, read_all), set once by the initializer
_STATE: tuple[Sequence[Any], Sequence[Sequence[Any]], bool, bool] | None = None
_SCORERS: dict[int, Any] = {}


def _init_worker(state: tuple[Sequence[Any], Sequence[Sequence[Any]], bool, bool], creator: int | None = None) -> None:
    global _STATE
    _STATE = state
    _SCORERS.clear()
    from .allocator import keep_freed_memory

    keep_freed_memory()  # NOTE: a forked worker has it already; a fork-server's worker does not
    # NOTE: Ctrl-C goes to the whole process group; only the parent acts on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # NOTE: the signal follows the *thread* that forked the worker. A worker forked to replace
    # one that died is forked by the pool's worker-handler thread, which ends when the pool
    # is stopped: the signal would then kill that worker while it waits for a task holding
    # the task queue's lock, and stopping the pool would wait for that lock for ever. Such a
    # worker still ends with the parent: the task queue then reads end-of-file.
    if creator is None or threading.get_ident() == creator:
        _die_with_parent()


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when the parent dies, so none is left behind."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _score_block(task: tuple[tuple[int, int, int], ...]) -> list[tuple[int, int, list[Outcome]]]:
    """Score each (run index, first, stop) segment of ``task`` in this worker."""
    from .metrics.evaluation import score_segment

    assert _STATE is not None
    runs, specs, guard, read_all = _STATE
    out = []
    for run_index, start, stop in task:
        scorer = _SCORERS.get(run_index)
        if scorer is None:
            from .metrics.evaluation import RunScorer

            scorer = _SCORERS[run_index] = RunScorer(runs[run_index], specs[run_index])
        out.append((run_index, start, score_segment(scorer, start, stop, guard=guard, read_all=read_all)))
    return out


def _read_block(task: tuple[tuple[int, int, int], ...]) -> list[tuple[int, int, list[Any]]]:
    """Read (and check) the val.npz of each checkpoint of ``task`` that the parent's pass
    will read: per checkpoint ``("ok", predictions)``, ``("error", packed exception)`` or
    None (not read)."""
    from .metrics.evaluation import reads_predictions
    from .store.reader import read_predictions

    assert _STATE is not None
    runs, specs, guard, read_all = _STATE
    out = []
    for run_index, start, stop in task:
        run = runs[run_index]
        needs = _SCORERS.get(run_index)
        if needs is None:
            needs = _SCORERS[run_index] = any(s.source != "logged" for s in specs[run_index])
        items: list[Any] = []
        for ckpt in run.checkpoints[start:stop]:
            if not reads_predictions(ckpt, needs, guard=guard, read_all=read_all):
                items.append(None)
                continue
            try:
                items.append(("ok", read_predictions(run, ckpt, "val")))
            except Exception as exc:
                items.append(("error", pack_error(exc)))
        out.append((run_index, start, items))
    return out


def run_block(state: tuple[Sequence[Any], Sequence[Sequence[Any]], bool, bool], task: Any, read_only: bool) -> list[Any]:
    """What one worker does with one block (:func:`_score_block`, or :func:`_read_block`
    with ``read_only``) under ``state`` (runs, specs, guard, read_all), in this process:
    for other engines' workers (:mod:`ckptaudit.engines.ray_pool`), which pass the same
    ``state`` object for every block of a pass."""
    global _STATE
    if _STATE is not state:
        _STATE = state
        _SCORERS.clear()
    return (_read_block if read_only else _score_block)(task)


def blocks(sizes: Sequence[int], jobs: int, read_only: bool) -> list[tuple[tuple[int, int, int], ...]]:
    """The (run, first, stop) blocks of a pass over runs of ``sizes`` checkpoints for
    ``jobs`` workers, as the pool cuts them (a read-ahead's of at most :data:`READ_AHEAD_BLOCK`)."""
    return _blocks(sizes, jobs, READ_AHEAD_BLOCK if read_only else None)


def _blocks(sizes: Sequence[int], jobs: int, most: int | None = None) -> list[tuple[tuple[int, int, int], ...]]:
    """Consecutive (run, first, stop) segments grouped into about jobs x 8 blocks (of at
    most ``most`` checkpoints); a block never splits a small run, and a big run is split
    into several blocks."""
    total = sum(sizes)
    block = max(1, -(-total // (jobs * _BLOCKS_PER_JOB)))
    if most is not None:
        block = max(1, min(block, most))
    tasks: list[tuple[tuple[int, int, int], ...]] = []
    current: list[tuple[int, int, int]] = []
    filled = 0
    for r, size in enumerate(sizes):
        start = 0
        while start < size:
            stop = min(size, start + block - filled)
            current.append((r, start, stop))
            filled += stop - start
            start = stop
            if filled >= block:
                tasks.append(tuple(current))
                current, filled = [], 0
    if current:
        tasks.append(tuple(current))
    return tasks


def _context() -> Any:
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    # NOTE: a forked torch (or anything that started threads of its own) can deadlock;
    # the fork server starts workers from a clean process instead.
    if "fork" in methods and "torch" not in sys.modules:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


class OrderedOutcomes:
    """Hands a run's outcomes back in checkpoint order from a pool's ``_next_segment`` (the
    local pool and the Ray pool share it: the same order is what keeps their output equal)."""

    _index: dict[int, int]
    _pool_name = "scoring pool"

    def _next_segment(self) -> tuple[int, int, list[Any]]:
        raise NotImplementedError

    def outcomes(self, run: Any) -> Iterator[Any]:
        """The outcomes of ``run``'s checkpoints in order; earlier runs' leftovers (a run
        given up part-way) are skipped."""
        index = self._index[id(run)]
        given = 0
        size = len(run.checkpoints)
        while given < size:
            r, start, outcomes = self._next_segment()
            if r < index:
                continue
            if r != index or start != given:
                raise RuntimeError(f"{self._pool_name} out of order: run {r} from {start}, expected run {index} from {given}")
            for outcome in outcomes:
                yield outcome
                given += 1


class ScorePool(OrderedOutcomes):
    """Workers scoring every checkpoint of ``runs`` (each under its ``specs``), started at
    once; :meth:`outcomes` hands one run's outcomes back in epoch order. Use as a
    context manager: leaving it (normally, on an error or on Ctrl-C) stops the workers.

    With ``read_only`` the workers only read and check the prediction files (a pass with
    observers, which need the predictions here): the outcomes are then ``("ok",
    Predictions)``, ``("error", packed)`` or None per checkpoint, in blocks of at most
    :data:`READ_AHEAD_BLOCK` checkpoints, at most ``2 x jobs`` blocks ahead of the parent
    (memory stays bounded whatever the size of the sweep)."""

    def __init__(
        self,
        runs: Sequence[Any],
        specs: Sequence[Sequence[Any]],
        jobs: int,
        *,
        guard: bool = True,
        read_all: bool = False,
        read_only: bool = False,
    ):
        self.jobs = jobs
        self.read_only = read_only
        if os.environ.get(REPORT_JOBS_ENV):
            kind = "read-ahead" if read_only else "scoring"
            sys.stderr.write(f"ckptaudit-jobs: {jobs} workers ({kind})\n")
        self._runs = list(runs)
        self._state = (self._runs, list(specs), guard, read_all)
        ctx = _context()
        self._others = _children()
        creator = threading.get_ident() if ctx.get_start_method() == "fork" else None
        self._pool = ctx.Pool(jobs, initializer=_init_worker, initargs=(self._state, creator))
        self._workers = _children() - self._others
        self._here = False
        sizes = [len(r.checkpoints) for r in self._runs]
        self._tasks = deque(_blocks(sizes, jobs, READ_AHEAD_BLOCK if read_only else None))
        self._work = _read_block if read_only else _score_block
        self._window: deque[Any] = deque()
        self._ahead = 2 * jobs if read_only else len(self._tasks)
        self._pending: deque[tuple[int, int, list[Any]]] = deque()
        self._index = {id(r): i for i, r in enumerate(self._runs)}
        self._closed = False

    def __enter__(self) -> ScorePool:
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        self.close(abort=kind is not None)

    def close(self, abort: bool = False) -> None:
        """Stop the workers."""
        if self._closed:
            return
        self._closed = True
        # NOTE: by now every outcome needed was taken (or none is wanted any more): what
        # the workers still compute belongs to runs given up, so they are stopped at once.
        # A worker killed while it waited for a task (kill -9 of an idle worker) leaves the
        # task queue's lock held for good, and Pool.terminate waits for that lock: it runs
        # in a thread, and when it does not end in time the workers are killed instead.
        stopper = threading.Thread(target=self._terminate, name="ckptaudit-pool-stop", daemon=True)
        stopper.start()
        stopper.join(_STOP_SECONDS)
        if stopper.is_alive():
            for pid in _children() - self._others:  # live children only: never a reused pid
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    def _terminate(self) -> None:
        self._pool.terminate()
        self._pool.join()

    def _next_segment(self) -> tuple[int, int, list[Any]]:
        while not self._pending:
            while not self._here and self._tasks and len(self._window) < self._ahead:
                task = self._tasks.popleft()
                self._window.append((task, self._pool.apply_async(self._work, (task,))))
            if self._window:
                task, result = self._window.popleft()
                self._pending.extend(self._result(task, result))
            elif self._here and self._tasks:
                self._pending.extend(self._in_this_process(self._tasks.popleft()))
            else:
                raise RuntimeError("scoring pool: no block left")
        return self._pending.popleft()

    def _result(self, task: tuple[tuple[int, int, int], ...], result: Any) -> list[Any]:
        """``result``'s outcomes once ready. A worker that dies (the OOM killer, kill -9)
        takes its block with it and the pool never says so: the workers are watched while
        waiting, and on a death the pool is stopped and every block not yet returned is
        computed in this process instead (the same function on the same data: the same
        outcomes, only slower)."""
        while not self._here:
            try:
                return result.get(timeout=_WATCH_SECONDS)
            except multiprocessing.TimeoutError:
                pass
            alive = _children()
            if self._workers - alive:
                self._here = True
                if not result.ready():
                    break
                return result.get()
            self._workers |= alive - self._others  # the pool's replacements for workers that ended
        if result.ready():
            try:
                return result.get(timeout=0)
            except Exception:  # recomputed below, where the error is raised in place
                pass
        return self._in_this_process(task)

    def _in_this_process(self, task: tuple[tuple[int, int, int], ...]) -> list[Any]:
        global _STATE
        if not self._closed:
            self.close()
        if _STATE is not self._state:
            _STATE = self._state
            _SCORERS.clear()
        return self._work(task)
