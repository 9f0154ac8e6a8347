"""Adapters that record a run while a training framework trains (see docs/integrations.md).

Each lives in its own module and imports its framework only there, so ``import ckptaudit``
stays light and a module fails only when its own framework is missing:

    from ckptaudit.integrations.lightning import CkptauditCallback   # pip install "ckptaudit[lightning]"
    from ckptaudit.integrations.hf import CkptauditTrainerCallback     # pip install "ckptaudit[hf]"
    from ckptaudit.integrations.keras import CkptauditKerasCallback    # pip install "ckptaudit[keras]"

They are thin: the :class:`ckptaudit.store.recorder.Recorder` writes and checks the run; the
helpers below hold what the torch-based adapters share (the RNG fork and the gathering of
predictions across processes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from ..store.recorder import hash_rows, to_numpy

#: what a ``predict`` function returns for one batch: (target, output) or (target, output, ids)
BatchPredictions = tuple[Any, ...]


@contextlib.contextmanager
def forked_rng() -> Iterator[None]:
    """Run the body without moving any random state training will draw from next.

    A DataLoader takes a base seed from torch's global generator even when it does not
    shuffle, so an inference pass inside a callback shifts every later random draw
    (dropout masks, shuffles) and training diverges. torch's CPU and current CUDA generators,
    numpy's and Python's global states are restored on exit.
    """
    import random

    import torch

    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    np_state = np.random.get_state()
    py_state = random.getstate()
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def default_predict(model: Any, batch: Any) -> BatchPredictions:
    """``(x, y)`` or ``(x, y, ids)`` batches (tuples, lists or dicts with x/y/id keys): ``model(x)``."""
    if isinstance(batch, dict):
        x, y, ids = batch.get("x", batch.get("input")), batch.get("y", batch.get("target")), batch.get("id")
    else:
        x, y = batch[0], batch[1]
        ids = batch[2] if len(batch) > 2 else None
    return (y, model(x), ids)


def batch_inputs(batch: Any) -> Any:
    """The model inputs of a batch, as :func:`default_predict` reads it (for input hashes)."""
    if isinstance(batch, dict):
        return batch.get("x", batch.get("input"))
    return batch[0]


def collect(
    batches: Iterable[Any], predict: Callable[[Any], BatchPredictions], *, hash_inputs: bool = True
) -> dict[str, np.ndarray]:
    """Predict every batch and concatenate: ``target``, ``output`` and, when known, ``id``
    and ``input_hash`` (a content hash of each input row; see :func:`ckptaudit.store.recorder.hash_rows`)."""
    parts: dict[str, list[np.ndarray]] = {"target": [], "output": [], "id": [], "input_hash": []}
    for batch in batches:
        got = predict(batch)
        parts["target"].append(to_numpy(got[0]))
        parts["output"].append(to_numpy(got[1]))
        if len(got) > 2 and got[2] is not None:
            parts["id"].append(to_numpy(got[2]))
        if hash_inputs:
            x = batch_inputs(batch)
            if x is not None and (hasattr(x, "detach") or isinstance(x, np.ndarray)):
                parts["input_hash"].append(hash_rows(x))
    n = len(parts["target"])
    return {k: np.concatenate(v) for k, v in parts.items() if v and len(v) == n}


def gather_by_index(local: dict[str, np.ndarray], indices: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Predictions of every process, in dataset order, each row once.

    ``indices`` are the dataset rows this process predicted (its sampler's order). A
    DistributedSampler pads the last shard with repeated rows so all shards are equally
    long; placing rows by index keeps one copy of each. Every process must call this.
    """
    import torch.distributed as dist

    world = dist.get_world_size()
    shards: list[Any] = [None] * world
    dist.all_gather_object(shards, (np.asarray(indices), local))
    out: dict[str, np.ndarray] = {}
    seen = np.zeros(size, dtype=bool)
    for key in shards[0][1]:
        arrs = [arrays[key] for _, arrays in shards]
        out[key] = np.zeros((size, *arrs[0].shape[1:]), dtype=np.result_type(*arrs))
    for idx, arrays in shards:
        if len(idx) != len(arrays["target"]):
            raise RuntimeError(f"a process predicted {len(arrays['target'])} rows for {len(idx)} sampler indices")
        for key, arr in arrays.items():
            out[key][idx] = arr
        seen[idx] = True
    if not seen.all():
        raise RuntimeError(f"{int((~seen).sum())} validation rows were predicted by no process")
    return out


def distributed() -> bool:
    """Whether torch.distributed runs with more than one process."""
    try:
        import torch.distributed as dist
    except ImportError:
        return False
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
