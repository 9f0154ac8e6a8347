"""The local pool's work in Ray tasks: blocks of checkpoints read and scored near the data.

:class:`RayPool` has the interface of :class:`ckptaudit.parallel.ScorePool` (``read_only``,
``outcomes(run)``, ``close()``), and its tasks run the pool's own block functions
(:func:`ckptaudit.parallel.run_block`) on the same blocks: a scoring pass gets each
checkpoint's :class:`~ckptaudit.metrics.outcome.Outcome` (values, notes, the validation-set
fingerprint: a few dozen bytes), a read-ahead (a pass whose observers need the predictions:
the audit's and the selection statistics' per-row data) gets the checked predictions. The
evaluation pass puts them back in epoch order and reduces every statistic here, exactly as
with the local pool: the same values, notes and errors at the same checkpoint, so the same
output byte for byte.

The sweep's runs and specs are put in Ray's object store once; a worker fetches them at its
first block of a pass and keeps them for the next ones (one pass at a time). The files are
read where the task runs: every node must see the runs at the same paths (a shared file
system; a local cluster does). A block whose task failed (a worker killed, a node lost after
Ray's own retries) is computed in this process instead: the same function on the same data,
the same outcomes, later. A scoring pass sends every block at once (the outcomes are small);
a read-ahead keeps at most two blocks per CPU in flight, so memory stays bounded.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections import deque
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from ..parallel import OrderedOutcomes

#: in a Ray worker: the pass whose state it holds (token, state); one pass at a time
_HELD: dict[str, Any] = {}


def _ray_block(token: str, holder: list[Any], task: Any, read_only: bool) -> list[Any]:
    """One block in a Ray worker (``holder``: the state's object reference, in a list so
    that Ray does not fetch it for every task)."""
    from ..parallel import run_block

    state = _HELD.get(token)
    if state is None:
        import ray

        _HELD.clear()
        state = _HELD[token] = ray.get(holder[0])
    return run_block(state, task, read_only)


def _portable_specs(specs: Sequence[Any]) -> list[Any]:
    """What a read-ahead's workers need of a run's specs: only whether any reads predictions
    (a custom metric's function need not cross to the cluster)."""
    return [SimpleNamespace(source="predictions")] if any(s.source != "logged" for s in specs) else []


class RayPool(OrderedOutcomes):
    """Ray tasks scoring (or, with ``read_only``, reading) every checkpoint of ``runs``,
    started at once; :meth:`outcomes` hands one run's outcomes back in epoch order (see
    :class:`ckptaudit.parallel.ScorePool`, which it stands in for). Use as a context manager
    or call :meth:`close`."""

    _pool_name = "ray pool"

    def __init__(
        self,
        runs: Sequence[Any],
        specs: Sequence[Sequence[Any]],
        *,
        guard: bool = True,
        read_all: bool = False,
        read_only: bool = False,
    ):
        from ..parallel import REPORT_JOBS_ENV, blocks
        from . import current
        from .raycluster import connect

        ray = connect(current().address)
        self._ray = ray
        self.read_only = read_only
        self.jobs = max(1, int(ray.cluster_resources().get("CPU", 1)))
        if os.environ.get(REPORT_JOBS_ENV):
            kind = "read-ahead" if read_only else "scoring"
            sys.stderr.write(f"ckptaudit-jobs: {self.jobs} ray CPUs ({kind})\n")
        self._runs = list(runs)
        portable = [_portable_specs(s) for s in specs] if read_only else [list(s) for s in specs]
        self._state = (self._runs, portable, guard, read_all)
        self._token = uuid.uuid4().hex
        self._holder = [ray.put(self._state)]
        self._remote = ray.remote(num_cpus=1)(_ray_block)
        self._tasks = deque(blocks([len(r.checkpoints) for r in self._runs], self.jobs, read_only))
        self._ahead = 2 * self.jobs if read_only else len(self._tasks)
        self._window: deque[tuple[Any, Any]] = deque()
        self._pending: deque[tuple[int, int, list[Any]]] = deque()
        self._index = {id(r): i for i, r in enumerate(self._runs)}
        self._closed = False
        self._failed = False
        self._fill()

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        self.close()

    def close(self) -> None:
        """Cancel the blocks still running (what they compute belongs to runs given up)."""
        if self._closed:
            return
        self._closed = True
        for _, ref in self._window:
            try:
                self._ray.cancel(ref)
            except Exception:  # NOTE: a task already finished or lost: nothing to cancel
                pass
        self._window.clear()
        self._tasks.clear()

    def _fill(self) -> None:
        while self._tasks and len(self._window) < self._ahead and not self._closed:
            task = self._tasks.popleft()
            self._window.append((task, self._remote.remote(self._token, self._holder, task, self.read_only)))

    def _next_segment(self) -> tuple[int, int, list[Any]]:
        while not self._pending:
            self._fill()
            if not self._window:
                raise RuntimeError("ray pool: no block left")
            task, ref = self._window.popleft()
            self._pending.extend(self._result(task, ref))
        return self._pending.popleft()

    def _result(self, task: Any, ref: Any) -> list[Any]:
        """The block's outcomes; a task that failed is computed here instead (the block
        functions return errors as data, so a failure is the worker's, not the data's)."""
        try:
            return self._ray.get(ref)
        except Exception as exc:
            from ..parallel import REPORT_JOBS_ENV, run_block

            if os.environ.get(REPORT_JOBS_ENV):
                sys.stderr.write(f"ckptaudit-jobs: a ray task failed ({type(exc).__name__}), its block computed here\n")
            if not self._failed:
                # NOTE: said once: a cluster whose workers cannot run ckptaudit (not installed,
                # the runs not mounted) would otherwise be silently slow
                cause = getattr(exc, "cause", None) or exc  # NOTE: a RayTaskError carries the task's own exception
                first = re.sub(r"\x1b\[[0-9;]*m", "", (str(cause).strip().splitlines() or [""])[0])[:200]
                sys.stderr.write(
                    f"ckptaudit: note: a Ray task failed ({type(cause).__name__}: {first}); its blocks are computed here instead\n"
                )
            self._failed = True
            return run_block(self._state, task, self.read_only)
