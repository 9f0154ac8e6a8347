"""``import hf``: the ``checkpoint-*/`` folders and ``trainer_state.json`` of a Hugging Face
Trainer ``output_dir``; evaluations whose folder rotation deleted become metrics-only."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import RunFormatError, UsageError
from ..store.reader import MAX_COUNTER
from ..store.safeio import read_json
from .loading import NOT_MODEL_FILES, WEIGHT_SUFFIXES
from .source import Source, SourceCheckpoint, _counter, _number, _shown

# --------------------------------------------------------------------------- hugging face

_EVAL_NOISE = ("_runtime", "_samples_per_second", "_steps_per_second")


def _hf_weight_files(folder: Path) -> tuple[Path, ...]:
    keep = []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name in NOT_MODEL_FILES:
            continue
        if p.suffix.lower() in WEIGHT_SUFFIXES or p.name in ("config.json", "model.safetensors.index.json"):
            keep.append(p)
    return tuple(keep)


def read_hf(src: Path, *, selected_by: Mapping[str, str] | None = None) -> Source:
    """``checkpoint-*/`` folders and ``trainer_state.json`` of a Trainer ``output_dir``.

    Every evaluation in ``log_history`` becomes a checkpoint; one whose folder rotation
    deleted becomes a metrics-only checkpoint (no weights, no predictions).
    """
    folders = {}
    for p in src.glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-([0-9]{1,40})", p.name)
        if m and p.is_dir():
            folders[_counter(int(m.group(1)), "the step in the folder name", p, UsageError)] = p
    states = [p / "trainer_state.json" for p in folders.values()] + [src / "trainer_state.json"]
    read: dict[Path, dict[str, Any]] = {}
    best_state: dict[str, Any] | None = None
    best_path = src
    for path in states:
        if not path.is_file():
            continue
        state = read[path] = _trainer_state(path)
        if best_state is None or state["global_step"] > best_state["global_step"]:
            best_state, best_path = state, path
    if best_state is None:
        raise UsageError("no trainer_state.json in a checkpoint-*/ folder or here (is this a Trainer output_dir?)", src)
    history = best_state["log_history"]
    train_logs = sorted(
        (e["step"], float(e["loss"])) for e in history if "step" in e and "loss" in e and _number(e["loss"]) is not None
    )
    evals: dict[int, dict[str, Any]] = {}
    for e in history:
        if "step" in e and any(str(k).startswith("eval_") for k in e):
            evals.setdefault(e["step"], {}).update(e)
    checkpoints = []
    for step in sorted(set(evals) | set(folders)):
        entry = evals.get(step, {})
        logged = {
            k: float(v)
            for k, v in entry.items()
            if k.startswith("eval_") and not k.endswith(_EVAL_NOISE) and _number(v) is not None
        }
        loss = [v for s, v in train_logs if s <= step]
        if loss and entry:
            logged["loss"] = loss[-1]
        epoch_f = entry.get("epoch")
        where = best_path
        folder = folders.get(step)
        if epoch_f is None and folder is not None and (folder / "trainer_state.json") in read:
            where = folder / "trainer_state.json"
            epoch_f = read[where].get("epoch")
        epoch = _hf_epoch(epoch_f, step, where)
        name = f"checkpoint-{step}"
        if folder is None:
            checkpoints.append(
                SourceCheckpoint(
                    name,
                    epoch,
                    step,
                    logged,
                    metrics_only=True,
                    note=f"{name}/ was deleted (save_total_limit rotation): logged metrics only",
                )
            )
        else:
            checkpoints.append(SourceCheckpoint(name, epoch, step, logged, _hf_weight_files(folder), origin=folder))
    if not checkpoints:
        raise UsageError("no checkpoint-*/ folder and no evaluation in trainer_state.json", src)
    chosen = None
    best = best_state.get("best_model_checkpoint")
    if isinstance(best, str) and best and "\0" not in best:
        chosen = Path(best).name
        if not any(c.name == chosen for c in checkpoints):
            chosen = None
    notes: list[str] = []
    inferred = dict(selected_by) if selected_by else _hf_selected_by(best_state, evals, notes)
    return Source("hf", tuple(checkpoints), inferred, chosen, tuple(notes))


def _trainer_state(path: Path) -> dict[str, Any]:
    """A trainer_state.json, checked where this module relies on its shape: an object whose
    ``global_step`` is a count and whose ``log_history`` is a list of objects, each
    ``step`` a count (entries of other shapes are passed over)."""
    state = read_json(path)
    if not isinstance(state, dict):
        raise RunFormatError(f"must hold a JSON object, not {type(state).__name__}", path)
    state = dict(state)
    state["global_step"] = _counter(state.get("global_step") or 0, "'global_step'", path)
    history = state.get("log_history")
    if history is None:
        history = []
    if not isinstance(history, list):
        raise RunFormatError(f"'log_history' must be a list, not {type(history).__name__}", path)
    entries = []
    for i, e in enumerate(history):
        if not isinstance(e, dict):
            continue
        if "step" in e:
            e = {**e, "step": _counter(e["step"], f"log_history[{i}]: 'step'", path)}
        entries.append(e)
    state["log_history"] = entries
    return state


def _hf_epoch(value: Any, step: int, path: Path) -> int:
    """The whole epoch of a (fractional) Trainer epoch, 0 when none was logged."""
    if value is None:
        return 0
    number = _number(value)
    if number is None or not math.isfinite(number) or number < 0 or number >= MAX_COUNTER:
        raise RunFormatError(f"step {step}: 'epoch' must be a number from 0 to 2**63-1, got {_shown(value)}", path)
    return _counter(int(math.floor(number + 1e-6)), f"step {step}: 'epoch'", path)


def _hf_selected_by(
    state: Mapping[str, Any], evals: Mapping[int, Mapping[str, Any]], notes: list[str] | None = None
) -> dict[str, str] | None:
    """metric_for_best_model lives only in the pickled training_args.bin (never loaded):
    infer it as the eval metric whose value at best_global_step equals best_metric.

    Several names can equal it: a regression's ``eval_loss`` is its ``eval_mse`` at every
    evaluation. Names whose values agree at every evaluation select the same checkpoint, so
    the named metric (not the loss) is recorded; names that agree only at the best are
    ambiguous, and ``notes`` says so instead of leaving selected_by out silently."""
    from ..metrics.spec import infer_logged_mode

    notes = [] if notes is None else notes
    best_metric = _number(state.get("best_metric"))
    best_step = state.get("best_global_step")
    if best_metric is None:
        return None
    entry = evals.get(best_step) if isinstance(best_step, int) and not isinstance(best_step, bool) else None
    candidates = [entry] if entry else list(evals.values())
    names = sorted({k for e in candidates for k, v in e.items() if k.startswith("eval_") and _number(v) == best_metric})
    names = [n for n in names if not n.endswith(_EVAL_NOISE)]
    if len(names) > 1:
        series = {n: [_number(e.get(n)) for _, e in sorted(evals.items())] for n in names}
        if all(series[n] == series[names[0]] for n in names):
            named = [n for n in names if "loss" not in n] or names
            notes.append(
                f"{' and '.join(names)} are equal at every evaluation: selected_by recorded as {named[0]} "
                "(either name selects the same checkpoint)"
            )
            names = named[:1]
    if len(names) != 1:
        notes.append(
            "selected_by unknown: "
            + (
                f"{', '.join(names)} all equal best_metric {best_metric:g}"
                if names
                else f"no eval metric equals best_metric {best_metric:g}"
            )
            + "; give --selected-by NAME:max|min"
        )
        return None
    name = names[0]
    values = [float(e[name]) for e in evals.values() if _number(e.get(name)) is not None]
    mode = infer_logged_mode(name)
    if mode is None and best_metric == max(values) and best_metric != min(values):
        mode = "max"
    elif mode is None and best_metric == min(values) and best_metric != max(values):
        mode = "min"
    return {"metric": name, "mode": mode} if mode else {"metric": name}
