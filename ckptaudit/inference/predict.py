"""``ckptaudit predict``: re-create the predictions of saved checkpoints.

For every checkpoint of a run that lacks ``val.npz`` (and ``train.npz`` when training data
is given), build the architecture (``--model MOD:FN``, no weights), load the checkpoint's
weights as data (:mod:`.loading`), run the validation inputs (``--data MOD:FN``) through it
under ``torch.inference_mode()`` and write the split atomically (a hidden temporary file
renamed into place). The arrays are those the recorder writes (``target``, ``output``,
``id``, ``input_hash``) plus ``predict_fingerprint``: a hash of the data the predictions
were made on. A checkpoint whose file carries the same fingerprint is skipped, so an
interrupted predict simply runs again; a file written by the recorder during training (no
fingerprint) is kept as it is.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CkptauditError, RunFormatError, UsageError
from ..store.reader import META_FILE, Checkpoint, Run, read_run
from ..store.recorder import hash_rows, to_numpy
from ..store.safeio import read_json
from .loading import find_weights, load_state

FINGERPRINT_KEY = "predict_fingerprint"


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
    Datasets and loaders are read once, in order, and held in memory.
    """
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
    return PredictData(inputs=inputs, target=target_np, ids=ids_np, input_hash=input_hash, fingerprint=fp.hexdigest())


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

    def load(self, weights: Path) -> None:
        """Load one checkpoint's weights into the model (as data only)."""
        if self.keras:
            if weights.suffix not in (".keras", ".h5"):
                raise CkptauditError("a keras model loads .keras or .weights.h5 files", weights)
            # NOTE: Keras reads only model.weights.h5 from a .keras zip here; the config (which
            # may hold serialized code) is not deserialized.
            self.model.load_weights(str(weights))
            return
        # NOTE: a sharded save (model-00001-of-00002.safetensors, ...) is loaded whole.
        shard = re.fullmatch(r"(.+)-\d{5}-of-(\d{5})(\.\w+)", weights.name)
        files = sorted(weights.parent.glob(f"{shard[1]}-*-of-{shard[2]}{shard[3]}")) if shard else [weights]
        state: dict[str, Any] = {}
        for f in files:
            state.update(load_state(f, trust_pickle=self.trust_pickle))
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


# --------------------------------------------------------------------------- run bookkeeping


def weights_of(checkpoint: Checkpoint) -> Path | None:
    """The checkpoint's weights: a file in its folder, else the original it references."""
    return weights_in(checkpoint.path)


def weights_in(folder: Path) -> Path | None:
    """The weights of the checkpoint in ``folder``: a file in it, else the original it references."""
    found = find_weights(folder)
    if found is not None:
        return found
    try:
        meta = read_json(folder / META_FILE)  # a regular file of bounded size only
    except (OSError, CkptauditError):
        return None
    source = meta.get("source") if isinstance(meta, dict) else None
    if isinstance(source, dict) and source.get("weights") == "reference":
        listed = source.get("files")
        files = [Path(f) for f in listed if isinstance(f, str) and f and "\0" not in f] if isinstance(listed, list) else []
        for f in files:
            if f.name not in ("config.json",) and f.is_file():
                return f
    return None


def stored_fingerprint(path: Path) -> str | None:
    """The data fingerprint a prediction file was written with ("" when the file has none,
    as when the recorder wrote it during training; None when the file is missing)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            return str(npz[FINGERPRINT_KEY]) if FINGERPRINT_KEY in npz.files else ""
    except Exception:
        return "unreadable"


def write_split(folder: Path, split: str, data: PredictData, output: np.ndarray) -> Path:
    """Write ``SPLIT.npz`` atomically: a hidden temporary file, fsync, rename."""
    final = folder / f"{split}.npz"
    tmp = folder / f".{split}.npz.{uuid.uuid4().hex[:8]}.tmp"
    arrays: dict[str, np.ndarray] = {"target": data.target, "output": output}
    if data.ids is not None:
        arrays["id"] = data.ids
    if data.input_hash is not None:
        arrays["input_hash"] = data.input_hash
    arrays[FINGERPRINT_KEY] = np.array(data.fingerprint)
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


@dataclass(frozen=True)
class PredictEntry:
    """What predict did for one split of one checkpoint."""

    checkpoint: str
    epoch: int
    split: str
    action: str  #: predicted, skipped (same data), recorded (from training), metrics-only, failed
    rows: int | None = None
    seconds: float | None = None
    note: str | None = None


@dataclass(frozen=True)
class PredictReport:
    """Every checkpoint's outcome, and where the predictions were made."""

    run: Path
    device: str
    engine: str
    workers: int
    entries: tuple[PredictEntry, ...]
    seconds: float
    #: how an imported run without a task got one (None: run.json had it)
    task_note: str | None = None

    @property
    def failures(self) -> tuple[PredictEntry, ...]:
        """The entries that failed (the command then exits 2)."""
        return tuple(e for e in self.entries if e.action == "failed")


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


def plan(run: Run, datasets: Mapping[str, PredictData], *, force: bool = False) -> tuple[list[Job], list[PredictEntry]]:
    """The jobs to do and the entries for what needs nothing (skipped, recorded, metrics-only)."""
    jobs: list[Job] = []
    done: list[PredictEntry] = []
    for ckpt in run.checkpoints:
        if getattr(ckpt, "metrics_only", False) and not ckpt.has_split("val"):
            done.append(PredictEntry(ckpt.name, ckpt.epoch, "val", "metrics-only", note="no weights (deleted by rotation)"))
            continue
        todo = []
        for split, data in datasets.items():
            # NOTE: a predict killed while writing leaves its own hidden temporary file; the
            # name (.SPLIT.npz.<8 hex>.tmp) is ours alone, so it is removed before retrying.
            for stale in ckpt.path.glob(f".{split}.npz.*.tmp"):
                if re.fullmatch(rf"\.{split}\.npz\.[0-9a-f]{{8}}\.tmp", stale.name) and stale.is_file():
                    stale.unlink()
            stored = stored_fingerprint(ckpt.split_file(split))
            if stored is None or (force and stored != data.fingerprint):
                todo.append(split)
            elif stored == data.fingerprint:
                done.append(PredictEntry(ckpt.name, ckpt.epoch, split, "skipped", data.n, note="already predicted on this data"))
            elif stored == "":
                done.append(PredictEntry(ckpt.name, ckpt.epoch, split, "recorded", note="written during training; kept"))
            elif stored == "unreadable":
                raise UsageError(f"{split}.npz is unreadable; pass --force to predict it again", ckpt.path)
            else:
                raise UsageError(
                    f"{split}.npz was predicted on other data (fingerprint differs); pass --force to predict it again",
                    ckpt.path,
                )
        if not todo:
            continue
        weights = weights_of(ckpt)
        if weights is None:
            done.extend(PredictEntry(ckpt.name, ckpt.epoch, s, "failed", note="no weights file in the checkpoint") for s in todo)
            continue
        jobs.append(Job(ckpt.name, ckpt.epoch, ckpt.path, weights, tuple(todo)))
    return jobs, done


def predict(
    run_path: str | os.PathLike[str],
    model: str | Any,
    data: str | Any,
    *,
    train_data: str | Any | None = None,
    task: str | None = None,
    output: str | None = None,
    device: str = "auto",
    batch_size: int = 1024,
    autocast: bool = False,
    workers: int = 1,
    engine: str = "local",
    address: str | None = None,
    trust_pickle: bool = False,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    checkpoint_progress: Callable[[str], Callable[[int, int], None] | None] | None = None,
) -> PredictReport:
    """Fill ``val.npz`` (and ``train.npz``) of every checkpoint of the run that lacks them.

    ``model`` is a ``MODULE:FUNCTION`` spec, a function returning the architecture, or the
    model object (copied); ``data`` a ``MODULE:FUNCTION`` spec, a function returning the
    data, or the data itself ((inputs, target[, ids]), a Dataset or a DataLoader). With
    ``workers`` > 1 or Ray, an object must be picklable (a module-level function or a model). ``workers`` > 1 predicts several checkpoints at once in a local process pool;
    ``engine="ray"`` sends one task per checkpoint to a Ray cluster (``address``, or a
    local one). An imported run without a task gets it here, from the data
    (:func:`.tasks.infer_task`; ``task``/``output`` say it instead). Every output is checked
    against the run's task before it is written, as the readers will check it. Returns what
    was done per checkpoint; failures do not stop the others.
    """
    from .engines import run_jobs

    start = time.perf_counter()
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    if engine not in ("local", "ray"):
        raise UsageError(f"--engine must be local or ray, not {engine!r}")
    if not isinstance(model, str) and (engine == "ray" or workers > 1):
        import pickle

        try:
            pickle.dumps(model)
        except Exception as exc:
            raise UsageError(
                f"model {_model_label(model)} cannot be sent to other processes ({type(exc).__name__}: {exc}): "
                "give a module-level function or MODULE:FUNCTION, or workers=1"
            ) from None
    datasets = {"val": _data(data, "--data")}
    if train_data is not None:
        datasets["train"] = _data(train_data, "--train-data")
    resolved = resolve_device(device) if engine == "local" else device
    options = Options(model=model, device=resolved, batch_size=batch_size, autocast=autocast, trust_pickle=trust_pickle)
    task_note = _settle_task(Path(run_path), datasets["val"], options, task, output)
    run = read_run(Path(run_path))
    if not run.checkpoints:
        raise RunFormatError("the run has no checkpoints", run.path)
    jobs, entries = plan(run, datasets, force=force)
    entries = list(entries)

    def on_result(job: Job, outputs: Mapping[str, np.ndarray] | None, seconds: float, error: str | None) -> None:
        for split in job.splits:
            if error is None and outputs is not None:
                try:
                    _check_fits(run, job, split, datasets[split], outputs[split])
                except CkptauditError as exc:
                    entries.append(PredictEntry(job.checkpoint, job.epoch, split, "failed", note=str(exc)))
                    continue
                write_split(job.folder, split, datasets[split], outputs[split])
                entries.append(PredictEntry(job.checkpoint, job.epoch, split, "predicted", datasets[split].n, round(seconds, 4)))
            else:
                entries.append(PredictEntry(job.checkpoint, job.epoch, split, "failed", note=error))

    if jobs:
        run_jobs(
            jobs,
            datasets,
            options,
            Predictor,
            on_result,
            workers=workers,
            engine=engine,
            address=address,
            progress=progress,
            checkpoint_progress=checkpoint_progress,
        )
    order = {c.name: i for i, c in enumerate(run.checkpoints)}
    entries.sort(key=lambda e: (order.get(e.checkpoint, 0), e.split != "val"))
    return PredictReport(run.path, resolved, engine, workers, tuple(entries), time.perf_counter() - start, task_note)


def _check_fits(run: Run, job: Job, split: str, data: PredictData, output: np.ndarray) -> None:
    """The reader's own checks of the arrays, before the file is written: a model whose
    outputs do not fit the run's task fails here, not at ``rank``."""
    from ..store.reader import check_arrays

    try:
        check_arrays(run, job.folder / f"{split}.npz", data.target, output, data.ids, data.input_hash)
    except CkptauditError as exc:
        raise CkptauditError(f"outputs do not fit the run's task {run.task!r} ({run.output}): {exc.args[0]}") from None


def _settle_task(path: Path, data: PredictData, options: Options, task: str | None, kind: str | None) -> str | None:
    """Give an imported run without a task its task, read from the data and the outputs of
    one checkpoint (written as that checkpoint's val.npz, so it is not predicted twice).
    Returns the note to show, or None when run.json already had a task."""
    from ..store.reader import RUN_FILE
    from ..store.recorder import write_json_atomic
    from .tasks import infer_task

    run_file = path / RUN_FILE
    try:
        raw = read_json(run_file)  # a regular file of bounded size only
    except (OSError, CkptauditError):
        return None  # read_run reports it
    if not isinstance(raw, dict):
        return None
    if raw.get("task") is not None:
        for option, given, have in (("--task", task, raw.get("task")), ("--output", kind, raw.get("output"))):
            if given is not None and given != have:
                raise UsageError(
                    f"{option} {given} contradicts run.json ({have}): {option} only completes an imported run that has none"
                )
        return None
    kind = kind if kind is not None else raw.get("output")
    folder, weights = _a_checkpoint_with_weights(path)
    predictor = Predictor(
        options.model,
        device=options.device,
        batch_size=options.batch_size,
        autocast=options.autocast,
        trust_pickle=options.trust_pickle,
    )
    predictor.load(weights)
    out = predictor.run(data)
    task, kind, why = infer_task(data.target, out, task=task, kind=kind)
    raw["task"], raw["output"] = task, kind
    if task == "binary":
        raw.setdefault("positive_class", 1)
    if task in ("multiclass", "multilabel") and out.ndim == 2 and "classes" not in raw and "num_classes" not in raw:
        raw["num_classes"] = int(out.shape[1])
    raw["task_from"] = f"predict: {why}"
    write_json_atomic(run_file, raw)
    run = read_run(path)
    ckpt = next(c for c in run.checkpoints if c.path == folder)
    job = Job(ckpt.name, ckpt.epoch, folder, weights, ("val",))
    if stored_fingerprint(ckpt.split_file("val")) is None:
        _check_fits(run, job, "val", data, out)
        write_split(folder, "val", data, out)
    return f"task {why}"


def _a_checkpoint_with_weights(path: Path) -> tuple[Path, Path]:
    """The last checkpoint folder (by epoch in meta.json) that has weights: trained the longest,
    its outputs show the output kind most plainly."""
    from ..store.reader import CHECKPOINTS_DIR

    found: list[tuple[int, str, Path, Path]] = []
    root = path / CHECKPOINTS_DIR
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            meta = read_json(folder / META_FILE)
        except (OSError, CkptauditError):
            continue
        weights = weights_in(folder)
        if isinstance(meta, dict) and weights is not None and isinstance(meta.get("epoch"), int):
            found.append((meta["epoch"], folder.name, folder, weights))
    if not found:
        raise RunFormatError("no checkpoint with weights to read the task from", path)
    _, _, folder, weights = max(found)
    return folder, weights


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
