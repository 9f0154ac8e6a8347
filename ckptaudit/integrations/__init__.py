"""Adapters that record a run while a training framework trains (see docs/integrations.md).

Each lives in its own module and imports its framework only there, so ``import ckptaudit``
stays light and a module fails only when its own framework is missing:

    from ckptaudit.integrations.lightning import CkptauditCallback   # pip install "ckptaudit[lightning]"
    from ckptaudit.integrations.hf import CkptauditTrainerCallback     # pip install "ckptaudit[hf]"
    from ckptaudit.integrations.keras import CkptauditKerasCallback    # pip install "ckptaudit[keras]"

They are thin: the :class:`ckptaudit.store.recorder.Recorder` writes and checks the run; the
helpers below hold what the adapters share: the RNG fork, the gathering of predictions across
processes, picking the output out of a dict or tuple (``output_key=``), one-output heads, the
fixed training sample (``train_sample=``), re-validation of a recorded checkpoint after a
resume, and the comparison of what the framework logged with what the recorded predictions score.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
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


OutputKey = str | int | None


def select_output(output: Any, output_key: OutputKey = None) -> Any:
    """The prediction array out of what a model returns: ``output[output_key]`` for a dict
    (``{"logits": ...}``, a Hugging Face ``ModelOutput``) or a tuple, else ``output`` itself.

    A dict without ``output_key`` is an error naming its keys, rather than a guess: a model
    that returns ``{"logits", "embedding"}`` must not have its embedding recorded."""
    if isinstance(output, Mapping):
        if output_key is None:
            raise UsageError(f"the model returns a dict with keys {sorted(map(str, output))}: give output_key= (e.g. 'logits')")
        if output_key not in output:
            raise UsageError(f"output_key={output_key!r} is not among the model's outputs {sorted(map(str, output))}")
        return output[output_key]
    if isinstance(output, (tuple, list)):
        if output_key is None:
            raise UsageError(f"the model returns a {type(output).__name__} of {len(output)}: give output_key= (its position)")
        if not isinstance(output_key, int) or not -len(output) <= output_key < len(output):
            raise UsageError(f"output_key={output_key!r} is not a position in the model's {len(output)} outputs")
        return output[output_key]
    if output_key is not None and not hasattr(output, "shape"):
        raise UsageError(f"output_key={output_key!r} was given but the model returns {type(output).__name__}")
    return output


def as_array(value: Any) -> np.ndarray:
    """A tensor or array as numpy, half-precision floats widened to float32.

    Keras under ``mixed_bfloat16`` hands back ml_dtypes ``bfloat16`` arrays (numpy kind
    ``'V'``), which the run format refuses as non-numeric; bfloat16 widens to float32 exactly."""
    arr = to_numpy(value)
    if arr.dtype.kind not in "biufc" or arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    return arr


def fit_shapes(task: str, target: np.ndarray, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-output heads as the run format reads them: a regression head of one unit gives
    ``(N, 1)`` for ``(N,)`` targets (HF ``num_labels=1``, Keras ``Dense(1)``), and Keras
    labels often come as ``(N, 1)``; :func:`ckptaudit.inference.predict` accepts the same."""
    if task == "regression":
        if target.ndim == 1 and output.ndim == 2 and output.shape[1] == 1:
            output = output[:, 0]
        elif target.ndim == 2 and target.shape[1] == 1 and output.ndim == 1:
            target = target[:, 0]
    elif task in ("binary", "multiclass") and target.ndim == 2 and target.shape[1] == 1:
        target = target[:, 0]
    return target, output


def sample_rows(size: int, n: int, seed: int) -> np.ndarray:
    """The fixed training rows scored at every validation: ``n`` of ``size``, drawn once with
    their own generator (training's random state is not touched), in dataset order."""
    if n >= size:
        return np.arange(size)
    return np.sort(np.random.default_rng(seed).choice(size, n, replace=False))


def check_train_sample(train_sample: Any) -> int | None:
    """``train_sample=`` validated: None or a positive number of rows."""
    if train_sample is None:
        return None
    if isinstance(train_sample, bool) or not isinstance(train_sample, int) or train_sample < 1:
        raise UsageError(f"train_sample must be a positive number of training rows, not {train_sample!r}")
    return train_sample


class Resumed:
    """What an earlier session recorded, kept when the callback is built (before training).

    ``check_start(step)`` refuses, before any training, a resume from a point before the last
    recorded evaluation (those evaluations would be trained again and recorded twice).
    ``already(name, arrays)`` says whether a checkpoint is recorded with these very
    predictions (a framework re-validating the restored epoch: nothing to do) and raises
    when it is recorded with other ones."""

    def __init__(self, run: Any) -> None:
        self.path = None if run is None else Path(run.path)
        self.steps = {} if run is None else {c.name: c.step for c in run.checkpoints}
        self.last = None if run is None else run.checkpoints[-1]

    def check_start(self, step: int, what: str) -> None:
        last = self.last
        if last is None or last.step is None or step >= last.step:
            return
        raise UsageError(
            f"training resumes at step {step} ({what}) but the run already holds {last.name} at step {last.step}: "
            "the steps between would be trained and recorded again. Resume from the checkpoint of the last recorded "
            "evaluation, or pass fresh=True to move the earlier run aside",
            self.path,
        )

    def already(self, name: str, target: np.ndarray, output: np.ndarray) -> bool:
        if name not in self.steps or self.path is None:
            return False
        from ..store.reader import read_predictions, read_run

        run = read_run(self.path)
        ckpt = run.checkpoint(name)
        if ckpt is None:
            return False
        old = read_predictions(run, ckpt)
        same = (
            old.target.shape == target.shape
            and old.output.shape == output.shape
            and np.array_equal(old.target, target)
            and np.allclose(old.output, output, rtol=1e-5, atol=1e-6)
        )
        if not same:
            raise UsageError(
                f"{name} is recorded already, with other predictions than this re-validation gives: "
                "the resumed model differs from the recorded one; pass fresh=True to start the run again",
                self.path,
            )
        return True


_LOADER_SUFFIX = re.compile(r"/dataloader_idx_(\d+)$")
_ACCURACY = ("accuracy", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy")
_VAL_PREFIX = re.compile(r"^(val|valid|validation|eval|dev)[_/.-]", re.IGNORECASE)


def loader_of(metric: str | None) -> int | None:
    """The validation dataloader a Lightning metric name belongs to (``val_acc/dataloader_idx_1``: 1)."""
    found = _LOADER_SUFFIX.search(metric or "")
    return int(found.group(1)) if found else None


class LoggedCheck:
    """Compare what the framework logged for validation with what the recorded predictions
    score, and warn (once per metric) when they disagree: the predictions recorded are then
    not the ones the framework scored (another validation split, another loader, another
    precision). Checked: accuracy (any ``val_``/``eval_`` accuracy name) for classification,
    ``mse``/``mae`` for regression; a difference of more than half a row (``0.5 / N``) or,
    for errors, more than 0.1% relative is reported."""

    def __init__(self, path: str | os.PathLike[str], enabled: bool = True) -> None:
        from ..store.remotewrite import run_location

        self.path = run_location(path)
        self.enabled = enabled
        self.warned: set[str] = set()
        self.last: dict[str, tuple[float, float]] = {}
        self._run: Any = None

    def __call__(
        self,
        name: str,
        logged: Mapping[str, float],
        target: np.ndarray,
        output: np.ndarray,
        *,
        loader: int | None = None,
        slack_rows: int = 0,
    ) -> dict[str, tuple[float, float]]:
        """Each checked metric's (logged, re-scored); warns where they disagree."""
        self.last = {}
        if not self.enabled:
            return self.last
        from ..metrics import kernels
        from ..metrics.evaluation import prepare_predictions
        from ..metrics.spec import base_name, parse_metric
        from ..store.reader import Predictions, read_run

        if self._run is None:
            if isinstance(self.path, str):  # a URL: its run.json through a local mirror
                from ..store.remoterecorder import existing_remote_run

                self._run = read_run(existing_remote_run(self.path) or self.path, name=self.path)
            else:
                self._run = read_run(self.path)
        run = self._run
        n = len(target)
        prepared = None
        for key, value in logged.items():
            idx = loader_of(key)
            if idx is not None and idx != (loader or 0):
                continue  # another dataloader's metric
            bare = _LOADER_SUFFIX.sub("", key)
            if not _VAL_PREFIX.match(bare) or not math.isfinite(value):
                continue
            base = base_name(bare)
            if run.task in ("binary", "multiclass") and base in _ACCURACY:
                metric, tolerance = "accuracy", (0.5 + slack_rows) / n + 1e-6
            elif run.task == "regression" and base in ("mse", "mae", "mean_squared_error", "mean_absolute_error"):
                metric, tolerance = ("mse" if base in ("mse", "mean_squared_error") else "mae"), None
            else:
                continue
            if prepared is None:
                preds = Predictions(path=self.path, target=target, output=output, ids=None)
                prepared = prepare_predictions(run, preds)
            spec = parse_metric(metric)
            scored = float(kernels.KERNELS[spec.name](prepared, spec))
            self.last[key] = (float(value), scored)
            if tolerance is None:
                tolerance = 1e-3 * max(abs(scored), 1e-12) + 1e-7
            if abs(scored - value) > tolerance and key not in self.warned:
                self.warned.add(key)
                warnings.warn(
                    f"ckptaudit: {name}: training logged {key}={value:.6g} but the recorded validation predictions "
                    f"score {metric}={scored:.6g}: the rows or outputs recorded are not the ones training scored "
                    f"(check validation_data / the dataloader / the precision; check_logged=False if {key} is not plain {metric})",
                    UserWarning,
                    stacklevel=3,
                )
        return self.last


def sequence_index(container: Any, index: int | str) -> Any:
    """Item ``index`` of a list/tuple of dataloaders, or of a dict of them by position or key."""
    if isinstance(container, Mapping):
        if isinstance(index, str):
            return container[index]
        return list(container.values())[index]
    if isinstance(container, Sequence):
        return container[int(index)]
    return container
