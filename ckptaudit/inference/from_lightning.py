"""``import lightning``: the ``*.ckpt`` files of a Lightning run, its ModelCheckpoint's
choice, and the epochs it logged but did not keep."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import RunFormatError, UsageError
from .loading import torch_load
from .source import Source, SourceCheckpoint, _counter, _number, read_log

# --------------------------------------------------------------------------- lightning

_MODE = re.compile(r"'mode':\s*'(min|max)'")


def read_lightning(src: Path, *, metrics_csv: Path | None = None, trust_pickle: bool = False) -> Source:
    """``*.ckpt`` files under ``src``, ordered by (epoch, global_step) read from each file."""
    files = sorted(p for p in src.rglob("*.ckpt") if p.is_file())
    if not files:
        raise UsageError("no *.ckpt file here or below", src)
    infos = []
    for f in files:
        data = torch_load(f, trust_pickle=trust_pickle, mmap=True)
        if not isinstance(data, dict) or "epoch" not in data or "state_dict" not in data:
            raise RunFormatError("not a Lightning checkpoint (no 'epoch' and 'state_dict')", f)
        callbacks = data.get("callbacks")
        callbacks = callbacks if isinstance(callbacks, dict) else {}
        mc = next(((k, v) for k, v in callbacks.items() if str(k).startswith("ModelCheckpoint") and isinstance(v, dict)), None)
        epoch = _counter(data["epoch"], "'epoch'", f)
        step = _counter(data.get("global_step") or 0, "'global_step'", f)
        infos.append((epoch, step, f.name.startswith("last"), f, mc))
        del data
    infos.sort(key=lambda i: (i[0], i[1], i[2], i[3].name))
    notes: list[str] = []
    kept: list[Any] = []
    for info in infos:
        if kept and (kept[-1][0], kept[-1][1]) == (info[0], info[1]):
            notes.append(f"{info[3].name} repeats epoch {info[0]} step {info[1]} of {kept[-1][3].name}: not imported twice")
            continue
        kept.append(info)
    per_epoch: dict[int, int] = {}
    for info in kept:
        per_epoch[info[0]] = per_epoch.get(info[0], 0) + 1
    if metrics_csv is None:
        metrics_csv = _lightning_log(src)
    logs = read_log(metrics_csv) if metrics_csv is not None else {}
    # NOTE: each file records the best as of its own save; only the newest knows the final best.
    newest = max(kept, key=lambda i: (i[0], i[1]))
    names: dict[Path, str] = {}
    checkpoints = []
    monitor = None
    for epoch, step, _last, f, mc in kept:
        name = f"epoch-{epoch:04d}" if per_epoch[epoch] == 1 else f"epoch-{epoch:04d}-step-{step:08d}"
        names[f.resolve()] = name
        logged = dict(logs.get(epoch, {}))
        if mc is not None:
            state = mc[1]
            watched = state.get("monitor")
            watched = watched if isinstance(watched, str) and watched else None
            monitor = watched or monitor
            score = _number(state.get("current_score"))
            if watched and score is not None and watched not in logged:
                logged[watched] = score
        checkpoints.append(SourceCheckpoint(name, epoch, step, logged, (f,), origin=f))
    selected_by = chosen = None
    if newest[4] is not None:
        key, state = newest[4]
        if isinstance(state.get("monitor"), str) and state["monitor"]:
            mode = _MODE.search(str(key))
            selected_by = {"metric": state["monitor"]}
            if mode:
                selected_by["mode"] = mode.group(1)
        best = state.get("best_model_path")
        if isinstance(best, str) and best and "\0" not in best:
            best_path = Path(best)
            chosen = names.get(best_path.resolve()) if best_path.exists() else None
            if chosen is None:
                chosen = next((n for p, n in names.items() if p.name == best_path.name), None)
            if chosen is None:
                notes.append(f"best_model_path {best} is not among the imported files")
    checkpoints += _logged_only_epochs(logs, {c.epoch for c in checkpoints}, monitor)
    checkpoints.sort(key=lambda c: (c.epoch, -1 if c.step is None else c.step))
    return Source("lightning", tuple(checkpoints), selected_by, chosen, tuple(notes))


def _lightning_log(src: Path) -> Path | None:
    """The log of a Lightning run: ``metrics.csv`` (CSVLogger), else the folder of the
    TensorBoard event files (the default TensorBoardLogger); None when there is neither."""
    found = sorted(src.rglob("metrics.csv"))
    if len(found) > 1:
        raise UsageError(f"{len(found)} metrics.csv files below {src}: name one with --log")
    if found:
        return found[0]
    folders = sorted({p.parent for p in src.rglob("events.out.tfevents.*") if p.is_file()})
    if len(folders) > 1:
        raise UsageError(f"TensorBoard event files in {len(folders)} folders below {src}: name one with --log")
    return folders[0] if folders else None


def _logged_only_epochs(logs: Mapping[int, Mapping[str, float]], saved: set[int], monitor: str | None) -> list[SourceCheckpoint]:
    """Validated epochs whose ``.ckpt`` ModelCheckpoint did not keep (``save_top_k=1``, the
    default, keeps one file): metrics-only checkpoints, as an HF evaluation whose folder
    rotation deleted, so the gate knows how many candidates training looked at. An epoch is
    validated when the log has the monitored metric (without a monitor: any ``val`` metric)."""
    out = []
    for epoch in sorted(set(logs) - saved):
        values = logs[epoch]
        validated = monitor in values if monitor else any("val" in k.lower() for k in values)
        if not validated:
            continue
        out.append(
            SourceCheckpoint(
                f"epoch-{epoch:04d}",
                epoch,
                None,
                dict(values),
                metrics_only=True,
                note="no .ckpt kept for this epoch (ModelCheckpoint save_top_k): logged metrics only",
            )
        )
    return out
