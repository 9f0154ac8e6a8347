"""Weight averages of checkpoints, streamed: one checkpoint and the running sum in memory.

:class:`StateSum` adds checkpoints' state dicts one at a time into a float64 running sum
(each loaded as data only, :func:`ckptaudit.inference.loading.load_state`) and gives their
(count-weighted) mean in each tensor's own dtype. Only checkpoints with identical parameter
names, shapes and dtypes are averaged; anything else is refused with the first difference.
Integer tensors (BatchNorm's ``num_batches_tracked``) cannot be averaged: the newest added
member's value is kept. :func:`refresh_batchnorm` recomputes BatchNorm statistics for the
averaged weights on training data (``torch.optim.swa_utils.update_bn``): averaged running
statistics are not the statistics of the averaged weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import CkptauditError


class StateSum:
    """A running, count-weighted float64 sum of state dicts of one architecture."""

    def __init__(self) -> None:
        self.sum: dict[str, Any] = {}
        self.meta: dict[str, tuple[Any, tuple[int, ...]]] = {}
        self.count = 0.0
        self.first: str | None = None

    def copy(self) -> StateSum:
        """An independent copy (the greedy soup tries a member on a copy of its soup)."""
        other = StateSum()
        other.sum = {k: v.clone() for k, v in self.sum.items()}
        other.meta, other.count, other.first = dict(self.meta), self.count, self.first
        return other

    def add(self, state: dict[str, Any], count: float = 1.0, label: str = "a checkpoint") -> None:
        """Add ``count`` times ``state``; raise :class:`CkptauditError` when its parameter
        names, shapes or dtypes differ from the first state added."""
        import torch

        if self.first is None:
            self.first = label
            for name, t in state.items():
                t = torch.as_tensor(t)
                self.meta[name] = (t.dtype, tuple(t.shape))
                self.sum[name] = t.double() * count if t.is_floating_point() else t.clone()
            self.count = count
            return
        if set(state) != set(self.meta):
            extra = sorted(set(state) - set(self.meta))[:3]
            missing = sorted(set(self.meta) - set(state))[:3]
            raise CkptauditError(
                f"cannot average {label} with {self.first}: different parameter names (extra {extra}, missing {missing})"
            )
        for name, t in state.items():
            t = torch.as_tensor(t)
            dtype, shape = self.meta[name]
            if tuple(t.shape) != shape or t.dtype != dtype:
                raise CkptauditError(
                    f"cannot average {label} with {self.first}: {name} is {t.dtype} {tuple(t.shape)}, not {dtype} {shape}"
                )
            if t.is_floating_point():
                self.sum[name] += t.double() * count
            else:
                self.sum[name] = t.clone()
        self.count += count

    def mean(self) -> dict[str, Any]:
        """The average, each tensor in its original dtype."""
        if not self.count:
            raise CkptauditError("nothing to average")
        return {
            name: (s / self.count).to(self.meta[name][0]) if s.is_floating_point() else s.clone() for name, s in self.sum.items()
        }


def average_files(files: Sequence[Path], counts: Iterable[float] | None = None, *, trust_pickle: bool = False) -> dict[str, Any]:
    """The mean of the weights files ``files`` (``counts`` times each), loaded one at a time."""
    from ..inference.loading import load_state

    total = StateSum()
    for path, count in zip(files, counts if counts is not None else [1.0] * len(files), strict=True):
        state = load_state(path, trust_pickle=trust_pickle)
        total.add(state, float(count), str(path))
        del state  # NOTE: one checkpoint and the running sum in memory, never all of them
    return total.mean()


def has_batchnorm(model: Any) -> bool:
    """Whether a torch model has BatchNorm layers with running statistics."""
    # NOTE: by the public attributes every BatchNorm layer has, not torch's private base class
    return any(getattr(m, "running_mean", None) is not None for m in model.modules())


def refresh_batchnorm(model: Any, inputs: Any, batch_size: int = 256, device: str = "cpu") -> None:
    """Recompute ``model``'s BatchNorm running statistics on ``inputs`` (training rows) with
    ``torch.optim.swa_utils.update_bn`` (a cumulative average over one pass)."""
    import numpy as np
    import torch
    from torch.optim.swa_utils import update_bn

    x = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(np.asarray(inputs))
    batches = [x[i : i + batch_size].to(device) for i in range(0, x.shape[0], batch_size)]
    update_bn(batches, model, device=torch.device(device))
