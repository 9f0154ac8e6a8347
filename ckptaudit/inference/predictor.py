"""The model and the data of ``predict``: the user's ``--model``/``--data`` functions
(:func:`load_callable`), their data normalised and fingerprinted (:class:`PredictData`), and
the :class:`Predictor` that builds the architecture once, loads each checkpoint's weights as
data (:mod:`.loading`) and runs the inputs through it under ``torch.inference_mode()``.
:class:`Job` and :class:`Options` are what :mod:`.engines` hands a worker.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CkptauditError, UsageError
from ..store.recorder import hash_rows, to_numpy
from .loading import load_state

# --------------------------------------------------------------------------- user code


def load_callable(spec: str, option: str = "--model") -> Callable[..., Any]:
    """``package.module:function`` or ``path/to/file.py:function`` as a callable."""
    module_name, sep, func_name = spec.rpartition(":")
    if not sep or not module_name or not func_name:
        raise UsageError(f"{option} {spec!r}: write MODULE:FUNCTION (e.g. mypkg.models:build) or path/to/file.py:FUNCTION")
    try:
        if module_name.endswith(".py") or os.sep in module_name:
            path = Path(module_name)
            if not path.is_file():
                raise UsageError(f"{option} {spec!r}: no such file {module_name}")
            name = f"_ckptaudit_user_{hashlib.blake2b(str(path.resolve()).encode(), digest_size=6).hexdigest()}"
            module = sys.modules.get(name)
            # NOTE: as `python glue.py` does, the file's folder comes first on sys.path, so the
            # file imports its sibling modules (at load or inside FUNCTION, in workers too)
            folder = str(path.resolve().parent)
            if folder not in sys.path:
                sys.path.insert(0, folder)
            if module is None:
                spec_obj = importlib.util.spec_from_file_location(name, path)
                assert spec_obj is not None and spec_obj.loader is not None
                module = importlib.util.module_from_spec(spec_obj)
                sys.modules[name] = module
                try:
                    spec_obj.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]  # NOTE: a file that failed to load is loaded afresh next time
                    raise
        else:
            if "" not in sys.path and os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{option} {spec!r}: cannot import {module_name}: {type(exc).__name__}: {exc}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise UsageError(f"{option} {spec!r}: {module_name} has no function {func_name!r}")
    return func


# --------------------------------------------------------------------------- data


@dataclass
class PredictData:
    """One split's inputs (a tensor, an array or a dict of them), targets, ids, and the
    per-row input hashes and data fingerprint derived from them."""

    inputs: Any
    target: np.ndarray
    ids: np.ndarray | None
    input_hash: np.ndarray | None
    fingerprint: str
    #: group columns to store beside the predictions (``group``/``group:<name>`` -> (N,)), or None
    groups: dict[str, np.ndarray] | None = None

    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.target.shape[0])


def _combine(values: list[Any], batched: bool) -> Any:
    """Rows are stacked, batches concatenated; dicts combine key by key."""
    first = values[0]
    if isinstance(first, Mapping):
        return {k: _combine([v[k] for v in values], batched) for k in first}
    if hasattr(first, "detach"):
        import torch

        return torch.cat(values) if batched else torch.stack(values)
    arrays = [np.asarray(v) for v in values]
    return np.concatenate(arrays) if batched else np.stack(arrays)


def _rows_of(obj: Any, batched: bool) -> tuple[Any, Any, Any]:
    parts: list[list[Any]] = [[], [], []]
    count = 0
    for item in obj:
        if isinstance(item, Mapping):
            x = item.get("inputs", item.get("x"))
            y = item.get("target", item.get("y", item.get("labels")))
            i = item.get("ids", item.get("id"))
        elif isinstance(item, (tuple, list)) and len(item) in (2, 3):
            x, y = item[0], item[1]
            i = item[2] if len(item) == 3 else None
        else:
            raise UsageError("--data: each item or batch must be (inputs, target) or (inputs, target, ids)")
        parts[0].append(x)
        parts[1].append(y)
        parts[2].append(i)
        count += 1
    if not count:
        raise UsageError("--data returned no rows")
    out: list[Any] = []
    for values in parts:
        if any(v is None for v in values):
            out.append(None)
            continue
        out.append(_combine(values, batched))
    return out[0], out[1], out[2]


def as_predict_data(obj: Any, option: str = "--data") -> PredictData:
    """Normalise what a ``--data`` function returned.

    Accepted: ``(inputs, target)`` or ``(inputs, target, ids)``; a dict with ``inputs``
    (or ``x``), ``target`` (or ``y``) and optional ``ids``; a torch ``Dataset`` whose items
    are such tuples; a ``DataLoader`` (or any iterable) whose batches are such tuples.
    ``inputs`` may be an array, a tensor or a dict of them (passed as keyword arguments).
    Datasets and loaders are read once, in order, and held in memory. The dict form may
    also give ``groups``: the rows' group columns (one array, or a mapping of column name to
    array), stored in the prediction file (docs/format.md).
    """
    groups = obj.get("groups") if isinstance(obj, Mapping) else None
    if isinstance(obj, Mapping) and ("inputs" in obj or "x" in obj):
        inputs = obj.get("inputs", obj.get("x"))
        target = obj.get("target", obj.get("y"))
        ids = obj.get("ids", obj.get("id"))
    elif isinstance(obj, tuple) and len(obj) in (2, 3):
        inputs, target = obj[0], obj[1]
        ids = obj[2] if len(obj) == 3 else None
    elif hasattr(obj, "__getitem__") and hasattr(obj, "__len__") and not hasattr(obj, "shape"):
        inputs, target, ids = _rows_of((obj[i] for i in range(len(obj))), batched=False)
    elif hasattr(obj, "__iter__"):
        inputs, target, ids = _rows_of(obj, batched=True)
    else:
        raise UsageError(f"{option} returned a {type(obj).__name__}: return (inputs, target[, ids]), a Dataset or a DataLoader")
    if target is None or inputs is None:
        raise UsageError(f"{option}: inputs and target are both required")
    target_np = to_numpy(target)
    ids_np = None if ids is None else to_numpy(ids)
    n = target_np.shape[0]
    fp = hashlib.blake2b(digest_size=16)
    leaves = sorted(inputs.items()) if isinstance(inputs, Mapping) else [("", inputs)]
    for key, value in leaves:
        arr = np.ascontiguousarray(to_numpy(value))
        if arr.shape[0] != n:
            raise UsageError(f"{option}: inputs{'[' + key + ']' if key else ''} has {arr.shape[0]} rows, target {n}")
        fp.update(f"{key}|{arr.dtype}|{arr.shape}".encode())
        fp.update(arr.tobytes())
    for label, maybe in (("target", target_np), ("ids", ids_np)):
        if maybe is None:
            continue
        arr = maybe
        if arr.shape[0] != n:
            raise UsageError(f"{option}: {label} has {arr.shape[0]} rows, inputs {n}")
        arr = np.ascontiguousarray(arr)
        fp.update(f"{label}|{arr.dtype}|{arr.shape}".encode())
        fp.update(arr.tobytes() if arr.dtype.kind != "O" else repr(arr.tolist()).encode())
    # NOTE: hashed exactly as the recorder hashes val_inputs, so the leakage audit can
    # compare recorded and re-predicted checkpoints.
    input_hash = None if isinstance(inputs, Mapping) else hash_rows(inputs)
    group_cols = None
    if groups is not None:
        from ..store.groups import group_arrays

        group_cols = group_arrays(groups, to_numpy)
        for key, arr in sorted(group_cols.items()):
            if arr.ndim != 1 or arr.shape[0] != n:
                raise UsageError(f"{option}: groups {key!r} must be (N,) with N = {n}, got shape {arr.shape}")
            fp.update(f"{key}|{arr.dtype}|{arr.shape}".encode())
            fp.update(np.ascontiguousarray(arr).tobytes())
    return PredictData(
        inputs=inputs, target=target_np, ids=ids_np, input_hash=input_hash, fingerprint=fp.hexdigest(), groups=group_cols
    )


# --------------------------------------------------------------------------- models


def resolve_device(device: str) -> str:
    """``auto`` (a GPU when present, else cpu), ``cpu``, ``cuda`` or ``cuda:N``."""
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, not {device!r}")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: CUDA is not available on this machine")
        if ":" in device and int(device[5:]) >= torch.cuda.device_count():
            raise UsageError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) here")
    return device


def _is_keras(model: Any) -> bool:
    return any(c.__module__.split(".")[0] == "keras" for c in type(model).__mro__)


def _align_keys(state: Mapping[str, Any], wanted: set[str]) -> dict[str, Any]:
    """Match a checkpoint's keys to the model's: a LightningModule's ``model.`` prefix (or
    any common prefix) is stripped or added when that makes the key sets equal."""
    have = set(state)
    if have == wanted or not have:
        return dict(state)
    first = next(iter(have))
    for i, ch in enumerate(first):
        if ch == ".":
            prefix = first[: i + 1]
            if all(k.startswith(prefix) for k in have) and {k[len(prefix) :] for k in have} == wanted:
                return {k[len(prefix) :]: v for k, v in state.items()}
    some = next(iter(wanted)) if wanted else ""
    for i, ch in enumerate(some):
        if ch == ".":
            prefix = some[: i + 1]
            if all(k.startswith(prefix) for k in wanted) and {prefix + k for k in have} == wanted:
                return {prefix + k: v for k, v in state.items()}
    return dict(state)


def build_model(model: Any) -> Any:
    """The architecture (no weights) that ``model`` names: a ``MODULE:FUNCTION`` spec, a
    function returning the model, or the model itself (a torch ``nn.Module`` or a Keras
    model, copied so that loading checkpoints into it leaves the caller's object alone)."""
    if isinstance(model, str):
        return load_callable(model, "--model")()
    if hasattr(model, "load_state_dict") or _is_keras(model):
        import copy

        return copy.deepcopy(model)
    if callable(model):
        return model()
    raise UsageError(f"model: give MODULE:FUNCTION, a function returning the model, or the model, not a {type(model).__name__}")


def _model_label(model: Any) -> str:
    return model if isinstance(model, str) else getattr(model, "__qualname__", type(model).__name__)


class Predictor:
    """Builds the model once and predicts checkpoints one after another on one device."""

    def __init__(
        self, model_spec: Any, *, device: str = "cpu", batch_size: int = 1024, autocast: bool = False, trust_pickle: bool = False
    ) -> None:
        self.model = build_model(model_spec)
        self.device = device
        self.batch_size = batch_size
        self.autocast = autocast
        self.trust_pickle = trust_pickle
        self.keras = _is_keras(self.model)
        if not self.keras:
            if not hasattr(self.model, "load_state_dict"):
                raise UsageError(
                    f"--model {_model_label(model_spec)}: returned a {type(self.model).__name__}, not a torch nn.Module or keras Model"
                )
            self.model.to(device)

    def read_weights(self, weights: Path) -> dict[str, Any] | None:
        """One checkpoint's weights read from disk (as data only), not yet in the model: a
        Ray actor reads the next checkpoint's while this one predicts. None for Keras (its
        weights are read by the load)."""
        if self.keras:
            return None
        # NOTE: a sharded save (model-00001-of-00002.safetensors, ...) is loaded whole.
        shard = re.fullmatch(r"(.+)-\d{5}-of-(\d{5})(\.\w+)", weights.name)
        files = sorted(weights.parent.glob(f"{shard[1]}-*-of-{shard[2]}{shard[3]}")) if shard else [weights]
        state: dict[str, Any] = {}
        for f in files:
            state.update(load_state(f, trust_pickle=self.trust_pickle))
        return state

    def load(self, weights: Path, state: dict[str, Any] | None = None) -> None:
        """Load one checkpoint's weights into the model (as data only); ``state``: those
        weights already read (:meth:`read_weights`)."""
        if self.keras:
            if weights.suffix not in (".keras", ".h5"):
                raise CkptauditError("a keras model loads .keras or .weights.h5 files", weights)
            # NOTE: Keras reads only model.weights.h5 from a .keras zip here; the config (which
            # may hold serialized code) is not deserialized.
            self.model.load_weights(str(weights))
            return
        if state is None:
            state = self.read_weights(weights) or {}
        wanted = set(self.model.state_dict())
        state = _align_keys(state, wanted)
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            missing = sorted(wanted - set(state))[:3]
            unexpected = sorted(set(state) - wanted)[:3]
            detail = f"missing {missing}, unexpected {unexpected}" if missing or unexpected else str(exc).splitlines()[0]
            raise CkptauditError(f"weights do not fit the --model architecture: {detail}", weights) from None

    def run(self, data: PredictData, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """The model's outputs on every row of ``data``, as float32 (or the model's dtype)."""
        if self.keras:
            inputs = (
                {k: to_numpy(v) for k, v in data.inputs.items()} if isinstance(data.inputs, Mapping) else to_numpy(data.inputs)
            )
            out = np.asarray(self.model.predict(inputs, batch_size=self.batch_size, verbose=0))
            return _fit_output(out, data)
        import contextlib

        import torch

        self.model.eval()
        dev = torch.device(self.device)
        chunks = []
        n, bs = data.n, self.batch_size
        total = (n + bs - 1) // bs
        amp = (
            torch.autocast(device_type=dev.type, dtype=torch.bfloat16 if dev.type == "cpu" else torch.float16)
            if self.autocast
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), amp:
            for b, start in enumerate(range(0, n, bs)):
                xb = _slice(data.inputs, start, start + bs, dev)
                out = self.model(**xb) if isinstance(xb, dict) else self.model(xb)
                out = _logits(out)
                if out.dtype in (torch.float16, torch.bfloat16):
                    out = out.float()
                chunks.append(out.detach().cpu().numpy())
                if progress is not None:
                    progress(b + 1, total)
        return _fit_output(np.concatenate(chunks), data)


def _slice(inputs: Any, start: int, stop: int, device: Any) -> Any:
    import torch

    if isinstance(inputs, Mapping):
        return {k: _slice(v, start, stop, device) for k, v in inputs.items()}
    part = inputs[start:stop]
    if not isinstance(part, torch.Tensor):
        part = torch.as_tensor(np.asarray(part))
    return part.to(device, non_blocking=True)


def _logits(out: Any) -> Any:
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, Mapping) and "logits" in out:
        return out["logits"]
    if isinstance(out, (tuple, list)):
        return out[0]
    return out


def _fit_output(out: np.ndarray, data: PredictData) -> np.ndarray:
    # NOTE: a single-output head (N, 1) scored against (N,) targets is stored as (N,), as a
    # training loop would (logits.squeeze(1)).
    if out.ndim == 2 and out.shape[1] == 1 and data.target.ndim == 1:
        out = out[:, 0]
    if out.shape[0] != data.n:
        raise CkptauditError(f"the model returned {out.shape[0]} rows for {data.n} inputs")
    return out


@dataclass(frozen=True)
class Job:
    """One checkpoint to predict: its folder, weights, and the splits it lacks."""

    checkpoint: str
    epoch: int
    folder: Path
    weights: Path
    splits: tuple[str, ...]


@dataclass(frozen=True)
class Options:
    """How to predict: model factory, device, batching, safety."""

    model: Any  #: MODULE:FUNCTION, a function returning the model, or the model (:func:`build_model`)
    device: str = "cpu"
    batch_size: int = 1024
    autocast: bool = False
    trust_pickle: bool = False


def _call_user(func: Any, option: str, spec: str) -> Any:
    """Call the user's data function; what it raises becomes one line naming it, not an
    internal error (ckptaudit's own errors pass through)."""
    try:
        return func()
    except CkptauditError:
        raise
    except Exception as exc:
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        raise UsageError(f"{option} {spec}: the function raised {type(exc).__name__}" + (f": {first}" if first else "")) from None


def _data(spec: str | Any, option: str) -> PredictData:
    if isinstance(spec, PredictData):
        return spec
    if isinstance(spec, str):
        return as_predict_data(_call_user(load_callable(spec, option), option, spec), option)
    if callable(spec) and not hasattr(spec, "__getitem__") and not hasattr(spec, "__iter__"):
        # NOTE: a function returning the data (a Dataset is data)
        return as_predict_data(_call_user(spec, option, getattr(spec, "__name__", "the function")), option)
    return as_predict_data(spec, option)
