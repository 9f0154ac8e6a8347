"""Prediction ensembles from saved predictions: the members' probabilities, held once.

:func:`load_members` reads every scorable checkpoint's validation predictions of a run (one
file at a time, through the run reader's checks) into one ``(K, N)`` or ``(K, N, C)`` array
of probabilities (regression: values), in epoch order; checkpoints that are themselves
combinations (meta.json ``kind``) are not candidates. :func:`ensemble_mean` averages members
(with repetition: a greedy ensemble may hold a checkpoint twice) and :func:`stored_output`
turns the mean back into what the run's ``output`` says a ``val.npz`` holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engines import read_ahead
from ..errors import RunFormatError
from ..metrics.evaluation import prepare_predictions
from ..metrics.outcome import raise_error
from ..store.reader import META_FILE, Checkpoint, PassReader, Run, ValSetGuard

#: meta.json ``kind`` of a checkpoint ckptaudit combined from others
ENSEMBLE, AVERAGE = "ensemble", "weight-average"


def combination_of(checkpoint: Checkpoint) -> dict | None:
    """The ``kind``/``members`` record of a combined checkpoint (from its meta.json), or None
    for an ordinary one."""
    try:
        meta = json.loads((checkpoint.path / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("kind") not in (ENSEMBLE, AVERAGE):
        return None
    members = meta.get("members")
    names = [m.get("checkpoint") for m in members if isinstance(m, dict)] if isinstance(members, list) else []
    return {"kind": meta["kind"], "members": [n for n in names if isinstance(n, str)], "weights": meta.get("weights_file")}


@dataclass(frozen=True)
class Members:
    """The candidate checkpoints of one run and their validation predictions."""

    run: Run
    checkpoints: tuple[Checkpoint, ...]  #: in epoch order
    probs: np.ndarray  #: (K, N) or (K, N, C): probabilities (regression: values)
    y: np.ndarray  #: the kernels' targets (binary: 1 = positive)
    target: np.ndarray  #: the stored targets, written again into a combined checkpoint
    ids: np.ndarray | None
    input_hash: np.ndarray | None
    eps: float  #: probability clipping of log_loss (the stored float type's epsilon)
    notes: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The members' folder names, in epoch order."""
        return tuple(c.name for c in self.checkpoints)


def load_members(run: Run, minimum: int = 2) -> Members:
    """Read the run's scorable, not-combined checkpoints; raise :class:`RunFormatError` when
    fewer than ``minimum`` remain. Checkpoints without val.npz or with non-finite outputs are
    left out with a note."""
    reader, guard = PassReader(run), ValSetGuard(run)
    # NOTE: under --engine ray the files are read (and checked) in Ray tasks, ahead of this loop
    pool = read_ahead([run], [()], guard=True, read_all=True)
    try:
        return _members(run, minimum, reader, guard, None if pool is None else pool.outcomes(run))
    finally:
        if pool is not None:
            pool.close()


def _members(run: Run, minimum: int, reader: PassReader, guard: ValSetGuard, ahead: Iterator[Any] | None) -> Members:
    """:func:`load_members`' loop (``ahead``: a read-ahead's items, one per checkpoint)."""
    kept: list[Checkpoint] = []
    arrays: list[np.ndarray] = []
    notes: list[str] = []
    first = None
    eps = float(np.finfo(np.float64).eps)
    for ckpt in run.checkpoints:
        fetched = next(ahead) if ahead is not None else None
        if combination_of(ckpt) is not None:
            continue
        if ckpt.metrics_only or not ckpt.has_split("val"):
            notes.append(f"{ckpt.name}: no val.npz, not a candidate")
            continue
        if fetched is not None and fetched[0] == "error":
            raise_error(fetched[1])
        preds = fetched[1] if fetched is not None else reader.read(ckpt)
        guard.check(ckpt, preds)
        prep = prepare_predictions(run, preds)
        # NOTE: stored float32 probabilities stay float32 (no float64 copy of a 50k x 100 output)
        p = prep.proba if prep.proba is not None and prep.proba.dtype == np.float32 else prep.proba64
        if run.task == "regression":
            p = np.asarray(prep.proba, dtype=np.float64)
        if not np.isfinite(p.sum()) and not np.all(np.isfinite(p)):
            notes.append(f"{ckpt.name}: non-finite outputs, not a candidate")
            continue
        if first is None:
            first = (prep.y.copy(), np.array(preds.target), preds.ids, preds.input_hash)
            eps = prep.eps
        kept.append(ckpt)
        # NOTE: float32 outputs are held as float32 (a 50 x 50k x 100 run is 1 GB, not 2);
        # every sum over members is made in float64
        arrays.append(np.array(p, dtype=np.float32 if p.dtype == np.float32 else np.float64))
    if len(kept) < max(minimum, 1) or first is None:
        raise RunFormatError(f"combine needs at least {minimum} scorable checkpoints, the run has {len(kept)}", run.path)
    y, target, ids, hashes = first
    ids = None if ids is None else np.array(ids)
    hashes = None if hashes is None else np.array(hashes)
    return Members(run, tuple(kept), np.stack(arrays), y, target, ids, hashes, eps, tuple(notes))


def ensemble_mean(probs: np.ndarray, members: Sequence[int]) -> np.ndarray:
    """The mean of ``probs[m]`` over ``members`` (an index may repeat: it counts that often)."""
    counts = np.bincount(np.asarray(members, dtype=np.int64), minlength=probs.shape[0]).astype(np.float64)
    used = np.flatnonzero(counts)
    total = np.zeros(probs.shape[1:], dtype=np.float64)
    for i in used:
        total += counts[i] * probs[i]
    return total / counts.sum()


def stored_output(run: Run, p: np.ndarray) -> np.ndarray:
    """Ensemble probabilities as the run's ``output`` stores them: probabilities as they are
    (binary: the positive class's, (N,)), logits as log-odds (binary) or log-probabilities
    (multiclass: their softmax is the probabilities again), regression values as they are."""
    if run.output != "logit":
        return p
    tiny = np.finfo(np.float64).tiny
    with np.errstate(divide="ignore"):
        if run.task == "binary":
            q = np.clip(p, tiny, 1 - np.finfo(np.float64).eps / 2)
            return np.log(q) - np.log1p(-q)
        return np.log(np.maximum(p, tiny))
