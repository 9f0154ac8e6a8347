"""One checkpoint's scoring outcome, as data that can cross a process boundary.

The evaluation pass (:mod:`ckptaudit.metrics.evaluation`) and the worker pool
(:mod:`ckptaudit.parallel`) both speak it: a worker scores a block of checkpoints into
:class:`Outcome` records, the pass turns them back into scores. Kept here, below both, so
that the pass never imports the pool (no import circle between the two rooms);
:class:`OutcomeSource` is all the pass knows of a pool.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import CkptauditError


class OutcomeSource(Protocol):
    """What the evaluation pass needs of a pool (:class:`ckptaudit.parallel.ScorePool`)."""

    read_only: bool

    def outcomes(self, run: Any) -> Iterator[Any]:
        """The run's checkpoints' outcomes (or read predictions, when ``read_only``), in order."""
        ...


@dataclass(frozen=True)
class Outcome:
    """What scoring one checkpoint gave, as one process computes it (see
    :func:`ckptaudit.metrics.evaluation.iter_scores`): values, notes, whether the file was
    unreadable, and for the validation-set check whether it was read (``read``), whether
    it equals its block's reference (``same``; None on the reference itself) and, on the
    reference, its fingerprint. ``error``: an exception to raise at this checkpoint."""

    values: tuple[float | None, ...]
    notes: tuple[str, ...]
    unreadable: bool = False
    metrics_only: bool = False
    read: bool = False
    same: bool | None = None
    fingerprint: bytes | None = None
    error: tuple[Any, ...] | None = None


def fingerprint(target: Any, ids: Any) -> bytes:
    """SHA-1 of the target and id arrays with their shapes and types."""
    h = hashlib.sha1()
    for arr in (target, ids):
        if arr is None:
            h.update(b"none;")
            continue
        h.update(f"{arr.dtype.str}{arr.shape};".encode())
        h.update(memoryview(arr.tobytes() if not arr.flags.c_contiguous else arr).cast("B"))
    return h.digest()


def pack_error(exc: BaseException) -> tuple[Any, ...]:
    """An exception as plain data that survives pickling (ckptaudit's errors keep their
    problem and path apart)."""
    if isinstance(exc, CkptauditError):
        return ("ckptaudit", type(exc), exc.problem, exc.path)
    return ("other", exc)


def raise_error(packed: tuple[Any, ...]) -> None:
    """Raise an exception packed by :func:`pack_error`."""
    if packed[0] == "ckptaudit":
        _, cls, problem, path = packed
        raise cls(problem, path)
    raise packed[1]
