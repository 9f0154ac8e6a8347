"""Reading a Ray Tune experiment folder: one :class:`Trial` per trial folder.

What Ray Tune 2.x leaves on disk (``RunConfig(storage_path=..., name=...)``)::

    EXPERIMENT/                      experiment_state-*.json, tuner.pkl, basic-variant-state-*.json
      <trainable>_<id>_<n>_<params>_<date>/
        params.json                  the trial's config (hyper-parameters)
        result.json                  one JSON object per ``tune.report``, one per line
        progress.csv                 the same reports as a table (not read)
        checkpoint_000000/ ...       one folder per reported ``tune.Checkpoint``, numbered in order

Each report carries ``training_iteration`` (1, 2, ... per report) and, since Ray 2.7,
``checkpoint_dir_name`` naming the folder its checkpoint went to. Every report becomes one
checkpoint of the trial's run, at epoch = ``training_iteration``: the report's folder when it
saved one (its files hard-linked, as ``import files`` does), otherwise a metrics-only
checkpoint (a report without a checkpoint, or one whose folder ``CheckpointConfig(num_to_keep)``
rotation deleted). Where no report names a folder (a class trainable, or Ray before 2.7),
``checkpoint_N`` is matched to the report of ``training_iteration`` N. A restored trial
reports some iterations again: the later report without a checkpoint is kept.

The reported numbers (nested dictionaries flattened with ``/``, as Ray's progress.csv names
them) are the checkpoint's logged metrics; Ray's own bookkeeping (times, ids, host names) is
left out. Pickles (``params.pkl``, ``tuner.pkl``) are never read.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..store.reader import META_FILE
from ..store.safeio import parse_json_text, read_json, read_text
from .source import Source, SourceCheckpoint, _counter

RESULT_FILE = "result.json"
PARAMS_FILE = "params.json"
_CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d+)$")
#: what Ray adds to every report: not metrics of the model
RAY_KEYS = frozenset(
    {
        "timestamp",
        "checkpoint_dir_name",
        "should_checkpoint",
        "done",
        "training_iteration",
        "trial_id",
        "date",
        "time_this_iter_s",
        "time_total_s",
        "pid",
        "hostname",
        "node_ip",
        "config",
        "time_since_restore",
        "iterations_since_restore",
        "timesteps_since_restore",
        "timesteps_total",
        "episodes_total",
        "experiment_id",
        "experiment_tag",
        "warmup_time",
    }
)
#: files of a checkpoint folder that would collide with the run format's own
_RESERVED = frozenset({META_FILE, "val.npz", "train.npz"})


@dataclass(frozen=True)
class Trial:
    """One trial as read: its folder's name, its checkpoints and its config."""

    name: str
    source: Source
    params: dict[str, Any]
    info: dict[str, Any]


def is_trial(folder: Path) -> bool:
    """A trial folder: it holds result.json or params.json."""
    return (folder / RESULT_FILE).is_file() or (folder / PARAMS_FILE).is_file()


def read_raytune(root: Path) -> list[Trial]:
    """Every trial of the experiment folder ``root`` (or ``root`` itself when it is one trial's
    folder), in folder-name order."""
    if not root.is_dir():
        raise UsageError("not a folder", root)
    if is_trial(root):
        folders = [root]
    else:
        folders = sorted((p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and is_trial(p)), key=lambda p: p.name)
    if not folders:
        raise UsageError(
            f"not a Ray Tune experiment folder: no trial folder (with {RESULT_FILE} or {PARAMS_FILE}) inside; "
            "give the folder RunConfig(storage_path=..., name=...) wrote",
            root,
        )
    return [read_trial(folder) for folder in folders]


def _reports(folder: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The trial's reports from result.json, and notes (a torn last line is skipped)."""
    path = folder / RESULT_FILE
    if not path.exists():
        return [], [f"{folder.name}: no {RESULT_FILE} (the trial reported nothing)"]
    text = read_text(path, UsageError)
    lines = text.split("\n")
    torn = bool(text) and not text.endswith("\n")
    reports: list[dict[str, Any]] = []
    notes: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = parse_json_text(line.encode("utf-8"), path, UsageError)
        except UsageError as exc:
            if torn and number == len(lines):  # the write of the last report was cut short
                notes.append(f"{folder.name}: the last line of {RESULT_FILE} is cut short (a write interrupted); skipped")
                continue
            raise UsageError(f"line {number}: {exc.problem}", path) from None
        if not isinstance(record, dict):
            raise UsageError(f"line {number}: a report must be a JSON object", path)
        if "training_iteration" not in record:
            raise UsageError(f"line {number}: a report without training_iteration (not what Ray Tune writes)", path)
        record["training_iteration"] = _counter(
            record["training_iteration"], f"line {number}: training_iteration", path, UsageError
        )
        reports.append(record)
    return reports, notes


def _metrics(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The report's numbers (nested dictionaries flattened with ``/``); non-finite values are
    left out (the run format's ``logged`` holds numbers only)."""
    out: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if not prefix and key in RAY_KEYS:
            continue
        if isinstance(value, dict):
            out.update(_metrics(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


def checkpoint_files(folder: Path) -> tuple[tuple[Path, ...], list[str]]:
    """The regular files at the top of a checkpoint folder (linked into the run), and notes
    about what is left out."""
    files, left = [], []
    for p in sorted(folder.iterdir(), key=lambda p: p.name):
        if p.is_file() and not p.is_symlink() and p.name not in _RESERVED:
            files.append(p)
        else:
            left.append(p.name)
    notes = (
        [f"{folder.parent.name}/{folder.name}: not linked (a folder, link or reserved name): {', '.join(left)}"] if left else []
    )
    return tuple(files), notes


def read_trial(folder: Path) -> Trial:
    """One trial folder as a :class:`Trial`."""
    reports, notes = _reports(folder)
    params: Any = {}
    if (folder / PARAMS_FILE).is_file():
        params = read_json(folder / PARAMS_FILE, UsageError)
    elif reports and isinstance(reports[0].get("config"), dict):
        params = reports[0]["config"]
    if not isinstance(params, dict):
        raise UsageError("must hold a JSON object (the trial's config)", folder / PARAMS_FILE)
    folders = {
        int(m.group(1)): p
        for p in folder.iterdir()
        if p.is_dir() and not p.is_symlink() and (m := _CHECKPOINT_DIR.match(p.name)) is not None
    }
    by_name = {p.name: p for p in folders.values()}
    named = {r.get("checkpoint_dir_name") for r in reports} - {None}
    checkpoints: list[SourceCheckpoint] = []
    used: set[str] = set()
    # NOTE: a restored trial (from its last checkpoint) reports some iterations again; its
    # later report of an iteration is the one its saved state continues from.
    last = {r["training_iteration"]: i for i, r in enumerate(reports)}
    repeated = 0
    for i, r in enumerate(reports):
        it = r["training_iteration"]
        dir_name = r.get("checkpoint_dir_name")
        target = by_name.get(dir_name) if isinstance(dir_name, str) else None
        if target is None and not named and it in folders:
            target = folders[it]  # Ray before 2.7 / class trainables: checkpoint_N is iteration N
        logged = _metrics(r)
        if target is None or target.name in used:
            if last[it] != i:
                repeated += 1
                continue
            note = None
            if isinstance(dir_name, str) and dir_name:
                note = f"{dir_name}/ was deleted (num_to_keep rotation): logged metrics only"
            checkpoints.append(SourceCheckpoint(f"iteration_{it:06d}", it, None, logged, metrics_only=True, note=note))
            continue
        used.add(target.name)
        files, left = checkpoint_files(target)
        notes += left
        checkpoints.append(SourceCheckpoint(target.name, it, None, logged, files, origin=target))
    if repeated:
        notes.append(
            f"{folder.name}: {repeated} report(s) without a checkpoint repeated later (a restored trial): the later kept"
        )
    for number, target in sorted(folders.items()):
        if target.name in used:
            continue
        if named:  # Ray >= 2.7 numbers folders in save order, not by iteration: no epoch to give it
            notes.append(f"{folder.name}/{target.name}: no report in {RESULT_FILE} names it (a report cut short?); not imported")
            continue
        files, left = checkpoint_files(target)
        notes += left
        note = "no report names this folder: epoch read from its number, no logged metrics"
        checkpoints.append(SourceCheckpoint(target.name, number, None, {}, files, note=note, origin=target))
    checkpoints.sort(key=lambda c: (c.epoch, c.name))
    trial_id = next((r.get("trial_id") for r in reports if isinstance(r.get("trial_id"), str)), None)
    info = {"tool": "raytune", "folder": str(folder.resolve()), **({"id": trial_id} if trial_id else {})}
    return Trial(folder.name, Source("raytune", tuple(checkpoints), notes=tuple(notes)), params, info)
