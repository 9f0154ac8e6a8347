"""``ckptaudit import FRAMEWORK SRC RUN``: build a run from what a framework left on disk.

Weights are never copied, moved or deleted: each weights file is **hard-linked** into its
checkpoint folder (same bytes, no extra space; deleting the original later leaves the
run's link intact). When a hard link is impossible (the run is on another file system,
or the file system has none), meta.json records a **reference** instead:
``"source": {"weights": "reference", "path": "/abs/original"}``; ``predict`` then reads the
original, and ``pick --copy``/``prune`` see no weights in that folder.

The run is assembled in a hidden folder beside ``RUN`` and renamed into place, so an
interrupted import leaves no half run. Files are read as data only (see
:mod:`.loading`); nothing here runs code from a checkpoint unless ``trust_pickle``.
"""

from __future__ import annotations

import csv
import errno
import glob
import json
import math
import os
import re
import shutil
import string
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import RunFormatError, UsageError
from ..limits import MAX_CSV_BYTES, MAX_CSV_LINE
from ..store.reader import CHECKPOINTS_DIR, FORMAT, MAX_COUNTER, META_FILE, OUTPUTS, RUN_FILE, TASKS
from ..store.safeio import open_regular, read_json
from .loading import NOT_MODEL_FILES, WEIGHT_SUFFIXES, check_loadable, load_state, torch_load

FRAMEWORKS = ("lightning", "hf", "keras", "files")


@dataclass(frozen=True)
class SourceCheckpoint:
    """One checkpoint found in a framework's folder, before it is written into the run."""

    name: str
    epoch: int
    step: int | None
    logged: dict[str, float]
    files: tuple[Path, ...] = ()  #: weights (and small config) files to link
    metrics_only: bool = False
    note: str | None = None
    origin: Path | None = None  #: the file or folder the framework wrote


@dataclass(frozen=True)
class Source:
    """Everything an importer read: checkpoints in (epoch, step) order, and what training chose."""

    framework: str
    checkpoints: tuple[SourceCheckpoint, ...]
    selected_by: dict[str, str] | None = None
    chosen: str | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImportedCheckpoint:
    """One checkpoint as written into the run."""

    name: str
    epoch: int
    step: int | None
    weights: str  #: "hardlink", "reference" or "none" (metrics-only)
    logged: dict[str, float] = field(default_factory=dict)
    note: str | None = None


@dataclass(frozen=True)
class ImportResult:
    """What ``import`` wrote: the run folder, its checkpoints, and what training chose."""

    run: Path
    framework: str
    checkpoints: tuple[ImportedCheckpoint, ...]
    selected_by: dict[str, str] | None
    chosen: str | None
    notes: tuple[str, ...]


# --------------------------------------------------------------------------- patterns

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|inf|-inf"


def pattern_regex(pattern: str) -> tuple[re.Pattern[str], dict[str, str]]:
    """A filename template (``epoch{epoch:02d}-{val_accuracy:.4f}.keras``, Keras and
    Lightning style) or a regular expression with ``(?P<epoch>...)`` as a compiled regex,
    and the map from its group names to metric names."""
    if "(?P<epoch>" in pattern:
        try:
            rx = re.compile(pattern)
        except re.error as exc:
            raise UsageError(f"--epoch-pattern is not a valid regular expression: {exc}") from None
        return rx, {g: g for g in rx.groupindex if g != "epoch"}
    parts: list[str] = []
    names: dict[str, str] = {}
    has_epoch = False
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise UsageError(f"--epoch-pattern {pattern!r}: {exc}") from None
    for literal, fname, _spec, _conv in parsed:
        parts.append(re.escape(literal))
        if fname is None:
            continue
        if fname == "epoch":
            if has_epoch:
                raise UsageError(f"--epoch-pattern {pattern!r} names {{epoch}} twice")
            has_epoch = True
            parts.append(r"(?P<epoch>\d+)")
        else:
            group = f"m{len(names)}"
            names[group] = fname
            # NOTE: Lightning writes 'name=value' itself when the template says '{name}'.
            parts.append(f"(?:{re.escape(fname)}=)?(?P<{group}>{_NUMBER})")
    if not has_epoch:
        raise UsageError(f"--epoch-pattern {pattern!r} has no {{epoch}} field (e.g. 'model_epoch_{{epoch}}.pt')")
    return re.compile("".join(parts)), names


def _shown(value: Any) -> str:
    """``value`` as a message shows it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _counter(value: Any, what: str, path: str | Path, error: type[UsageError | RunFormatError] = RunFormatError) -> int:
    """``value`` (an int, an integral float, or a numpy or torch scalar of one) as an epoch or
    step: a whole number from 0 to 2**63-1, the range the run format allows, so that a run
    ``import`` writes is one every other command reads; else ``error`` naming ``path``."""
    number = value
    if hasattr(number, "item") and not isinstance(number, (str, bytes)):
        try:
            number = number.item()
        except (TypeError, ValueError, RuntimeError):
            pass
    if isinstance(number, float) and math.isfinite(number) and number.is_integer():
        number = int(number)
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= MAX_COUNTER:
        raise error(f"{what} must be a whole number from 0 to 2**63-1, got {_shown(value)}", path)
    return number


def _epoch_in_name(text: str, f: Path, pattern: str | None) -> int:
    how = "" if pattern is None else f" (--epoch-pattern {pattern!r})"
    if not text.isascii() or not text.isdigit():
        raise UsageError(f"the epoch read from the file name{how} is {text!r}, not a whole number", f)
    return _counter(int(text) if len(text) <= 40 else MAX_COUNTER + 1, f"the epoch read from the file name{how}", f, UsageError)


def _match_epochs(files: Sequence[Path], pattern: str | None, what: str) -> list[tuple[Path, int, dict[str, float]]]:
    out: list[tuple[Path, int, dict[str, float]]] = []
    if pattern is None:
        for f in files:
            numbers = re.findall(r"[0-9]+", f.name)
            if not numbers:
                raise UsageError(
                    "no number in the file name to read an epoch from; give --epoch-pattern (e.g. 'model_epoch_{epoch}.pt')", f
                )
            out.append((f, _epoch_in_name(numbers[-1], f, None), {}))
        return out
    rx, names = pattern_regex(pattern)
    unmatched: list[str] = []
    for f in files:
        m = rx.fullmatch(f.name)
        if m is None:
            unmatched.append(f.name)
            continue
        logged: dict[str, float] = {}
        for g, v in m.groupdict().items():
            if g == "epoch" or not v:
                continue  # an optional group that matched nothing logs nothing
            try:
                logged[names[g]] = float(v)
            except ValueError:
                raise UsageError(
                    f"--epoch-pattern {pattern!r}: the group {g!r} matched {_shown(v)} in the file name, not a number", f
                ) from None
        if m["epoch"] is None:
            raise UsageError(f"--epoch-pattern {pattern!r}: the group 'epoch' matched nothing in the file name", f)
        out.append((f, _epoch_in_name(m["epoch"], f, pattern), logged))
    if unmatched:
        more = f" (and {len(unmatched) - 1} more)" if len(unmatched) > 1 else ""
        raise UsageError(
            f"--epoch-pattern {pattern!r} does not match the {what} file name {unmatched[0]!r}{more}; "
            f"write the template the files were saved with, e.g. 'epoch{{epoch:02d}}-{{val_accuracy:.4f}}.keras'"
        )
    return out


def _unique_epochs(found: list[tuple[Path, int, dict[str, float]]]) -> None:
    seen: dict[int, Path] = {}
    for f, epoch, _ in found:
        if epoch in seen:
            raise UsageError(f"two files read as epoch {epoch}: {seen[epoch].name} and {f.name}; narrow the glob or the pattern")
        seen[epoch] = f


def _csv_lines(fh: Any, path: Path) -> Any:
    """The lines of the text file ``fh``, refusing a line longer than MAX_CSV_LINE characters
    (a file of NUL bytes has no line end) and a file longer than MAX_CSV_BYTES."""
    total = 0
    while True:
        line = fh.readline(MAX_CSV_LINE + 1)
        if not line:
            return
        if len(line) > MAX_CSV_LINE:
            raise RunFormatError(f"a line longer than {MAX_CSV_LINE:,} characters: not a metrics log", path)
        total += len(line)
        if total > MAX_CSV_BYTES:
            raise RunFormatError(f"longer than {MAX_CSV_BYTES:,} characters: not a metrics log this tool reads", path)
        yield line


def _read_csv_log(path: Path, epoch_offset: int = 0) -> dict[int, dict[str, float]]:
    """Per epoch, the last value of every column of a Lightning metrics.csv or a Keras
    CSVLogger file (``epoch_offset`` is added to the file's epoch numbers). Only a regular
    file is read (a FIFO would block, a device never end), line by line within bounds."""
    import io

    out: dict[int, dict[str, float]] = {}
    try:
        with open_regular(path) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as fh:
            for number, row in enumerate(csv.DictReader(_csv_lines(fh, path)), 2):
                text = row.get("epoch")
                try:
                    value = float(text or "")
                except ValueError:
                    continue  # a row without an epoch (a step-level row, a repeated header)
                if not math.isfinite(value):
                    raise RunFormatError(f"row {number}: epoch {_shown(text)} is not a whole number", path)
                epoch = _counter(int(value), f"row {number}: epoch", path) + epoch_offset
                values = out.setdefault(epoch, {})
                for key, cell in row.items():
                    if key in (None, "epoch", "step") or cell in (None, "") or not isinstance(cell, str):
                        continue
                    try:
                        values[key] = float(cell)
                    except ValueError:
                        continue
    except FileNotFoundError:
        raise RunFormatError("no such file", path) from None
    except OSError as exc:
        raise RunFormatError(f"cannot read: {exc.strerror or exc}", path) from None
    except UnicodeDecodeError as exc:
        raise RunFormatError(f"not UTF-8 text (byte {exc.start})", path) from None
    except csv.Error as exc:
        raise RunFormatError(f"malformed CSV: {exc}", path) from None
    return out


def _number(value: Any) -> float | None:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


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


# --------------------------------------------------------------------------- keras and files


def read_keras(src: Path, *, epoch_pattern: str, metrics_csv: Path | None = None) -> Source:
    """``*.keras`` files; the epoch comes from the file name template the user gives.

    Keras file templates count epochs from 1 and CSVLogger from 0: row ``epoch=k`` of the
    CSV log belongs to the file whose name says ``k + 1``.
    """
    files = sorted(p for p in src.glob("*.keras") if p.is_file())
    if not files:
        raise UsageError("no *.keras file here", src)
    found = _match_epochs(files, epoch_pattern, ".keras")
    _unique_epochs(found)
    logs = read_log(metrics_csv, epoch_offset=1) if metrics_csv is not None else {}
    checkpoints = []
    for f, epoch, from_name in sorted(found, key=lambda t: t[1]):
        load_state(f)  # reads model.weights.h5 as data: fails early on a file that is not Keras 3
        logged = {**from_name, **logs.get(epoch, {})}
        checkpoints.append(SourceCheckpoint(f"epoch-{epoch:04d}", epoch, None, logged, (f,), origin=f))
    return Source("keras", tuple(checkpoints))


def read_files(
    pattern_glob: str, *, epoch_pattern: str | None = None, chosen: str | None = None, trust_pickle: bool = False
) -> Source:
    """Any glob of weight files (a plain loop's ``model_epoch_7.pt``); the epoch is read from
    each name by ``epoch_pattern`` (default: the last number in the name).

    A file the glob catches that is not an epoch of its own (``best_model.pth``: no epoch in
    its name, or a second file read as an epoch already taken) but holds the tensors of an
    epoch file is that epoch's copy: training kept it, so it names ``chosen``
    (:mod:`.chosen`)."""
    from .chosen import copies_of_epochs

    files = sorted(Path(p) for p in glob.glob(pattern_glob, recursive=True) if Path(p).is_file())
    if not files:
        raise UsageError(f"no file matches {pattern_glob!r}")
    epoch_files, spare = _epoch_candidates(files, epoch_pattern)
    found = _match_epochs(epoch_files, epoch_pattern, "weights") if epoch_files else []
    found, spare = _first_per_epoch(found, spare)
    if not found:
        _match_epochs(files, epoch_pattern, "weights")  # raises the error that names the first unmatched file
    _unique_epochs(found)
    checkpoints = []
    for f, epoch, logged in sorted(found, key=lambda t: t[1]):
        check_loadable(f, trust_pickle=trust_pickle)
        checkpoints.append(SourceCheckpoint(f"epoch-{epoch:04d}", epoch, None, logged, (f,), origin=f))
    source = Source("files", tuple(checkpoints))
    return copies_of_epochs(source, spare, epoch_pattern, chosen_given=chosen is not None)


def _epoch_candidates(files: Sequence[Path], pattern: str | None) -> tuple[list[Path], list[Path]]:
    """Files whose names carry an epoch under ``pattern`` (or a number, by default), and the
    others (a ``best_model.pth``), which may only be copies of an epoch."""
    if pattern is None:
        return [f for f in files if re.search(r"\d", f.name)], [f for f in files if not re.search(r"\d", f.name)]
    rx, _ = pattern_regex(pattern)
    return [f for f in files if rx.fullmatch(f.name)], [f for f in files if not rx.fullmatch(f.name)]


def _first_per_epoch(
    found: list[tuple[Path, int, dict[str, float]]], spare: list[Path]
) -> tuple[list[tuple[Path, int, dict[str, float]]], list[Path]]:
    """Where two names read as one epoch, the one whose name is the shortest is the epoch and
    the other may be its copy (``checkpoint_epoch_3.pth`` and ``best_model_epoch_3.pth``);
    :func:`.chosen.copies_of_epochs` refuses it when its tensors differ."""
    by_epoch: dict[int, list[tuple[Path, int, dict[str, float]]]] = {}
    for item in found:
        by_epoch.setdefault(item[1], []).append(item)
    kept = []
    spare = list(spare)
    for items in by_epoch.values():
        items.sort(key=lambda t: (len(t[0].name), t[0].name))
        kept.append(items[0])
        spare.extend(t[0] for t in items[1:])
    return kept, spare


# --------------------------------------------------------------------------- writing the run


def _link(src: Path, dst: Path) -> str:
    """Hard-link ``src`` to ``dst``; "reference" when the file systems differ or forbid it."""
    try:
        os.link(src, dst)
        return "hardlink"
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
            return "reference"
        raise


def parse_selected_by(text: str | None) -> dict[str, str] | None:
    """``NAME`` or ``NAME:max``/``NAME:min`` as run.json's ``selected_by``."""
    if not text:
        return None
    name, _, mode = text.partition(":")
    if mode and mode not in ("min", "max"):
        raise UsageError(f"--selected-by {text!r}: the mode after ':' must be max or min")
    return {"metric": name, **({"mode": mode} if mode else {})}


def write_run(
    source: Source,
    run: str | os.PathLike[str],
    *,
    task: str | None = None,
    output: str | None = None,
    classes: Sequence[str] | None = None,
    selected_by: Mapping[str, str] | None = None,
) -> ImportResult:
    """Write ``source`` as a new run at ``run`` (which must not exist yet).

    Without ``task`` the run.json holds none: weights alone cannot tell a binary model from
    a multiclass one, so ``predict`` infers it from the data (:func:`.predict.infer_task`),
    and every other command says so until then. ``output`` defaults to ``logit`` (``value``
    for regression) when the task is given."""
    if task is not None and task not in TASKS:
        raise UsageError(f"--task must be one of {', '.join(TASKS)}, not {task!r}")
    if output is None and task is not None:
        output = "value" if task == "regression" else "logit"
    if output is not None and output not in OUTPUTS:
        raise UsageError(f"--output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    if task is not None and output is not None and (task == "regression") != (output == "value"):
        raise UsageError(f"--output {output!r} does not fit --task {task!r} (regression runs use 'value')")
    if task == "binary" and classes is not None and len(classes) != 2:
        raise UsageError("a binary run has exactly 2 --classes")
    final = Path(run)
    if final.exists():
        raise UsageError("already exists: import writes a new run (choose another RUN or remove it)", final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
    (tmp / CHECKPOINTS_DIR).mkdir(parents=True)
    written = []
    try:
        for ck in source.checkpoints:
            folder = tmp / CHECKPOINTS_DIR / ck.name
            folder.mkdir()
            modes = {_link(f.resolve(), folder / f.name) for f in ck.files}
            how = "none" if not ck.files else ("reference" if "reference" in modes else "hardlink")
            meta: dict[str, Any] = {"epoch": ck.epoch}
            if ck.step is not None:
                meta["step"] = ck.step
            if ck.logged:
                meta["logged"] = ck.logged
            if ck.metrics_only:
                meta["metrics_only"] = True
            if ck.note:
                meta["note"] = ck.note
            meta["source"] = {
                "framework": source.framework,
                "path": None if ck.origin is None else str(ck.origin.resolve()),
                "weights": how,
            }
            if how == "reference":
                # NOTE: drop any partial links so the folder consistently refers to the originals.
                for f in ck.files:
                    (folder / f.name).unlink(missing_ok=True)
                meta["source"]["files"] = [str(f.resolve()) for f in ck.files]
            (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
            written.append(ImportedCheckpoint(ck.name, ck.epoch, ck.step, how, ck.logged, ck.note))
        run_json: dict[str, Any] = {"format": FORMAT}
        if task is not None:
            run_json["task"] = task
        if output is not None:
            run_json["output"] = output
        if classes is not None:
            run_json["classes"] = list(classes)
        if task == "binary":
            run_json["positive_class"] = 1
        chosen_by = dict(selected_by) if selected_by else source.selected_by
        if chosen_by:
            run_json["selected_by"] = chosen_by
        if source.chosen:
            run_json["chosen"] = source.chosen
        run_json["imported_from"] = source.framework
        (tmp / RUN_FILE).write_text(json.dumps(run_json, indent=2) + "\n", encoding="utf-8")
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # only our own hidden folder: links, never originals
        raise
    return ImportResult(final, source.framework, tuple(written), chosen_by, source.chosen, source.notes)


def import_checkpoints(
    framework: str,
    src: str | os.PathLike[str],
    run: str | os.PathLike[str],
    *,
    task: str | None = None,
    output: str | None = None,
    classes: Sequence[str] | None = None,
    epoch_pattern: str | None = None,
    metrics_csv: str | os.PathLike[str] | None = None,
    selected_by: str | None = None,
    chosen: str | os.PathLike[str] | None = None,
    trust_pickle: bool = False,
) -> ImportResult:
    """Read ``src`` as ``framework`` left it and write a new run at ``run``.

    ``metrics_csv`` (``--log``) is a log of per-epoch metrics: a CSV (Lightning metrics.csv,
    Keras CSVLogger, a W&B CSV export), a TensorBoard event file or folder, or a W&B run's
    history (:mod:`.logs`). ``chosen`` is the file training kept (``best_model.pth``),
    matched to its checkpoint by tensor content (:mod:`.chosen`)."""
    from .chosen import identify_chosen

    sel = parse_selected_by(selected_by)
    csv_path = None if metrics_csv is None else Path(metrics_csv)
    if csv_path is not None and not csv_path.exists():
        raise UsageError("no such log file or folder", csv_path)
    if framework == "files":
        source = read_files(
            str(src), epoch_pattern=epoch_pattern, chosen=None if chosen is None else str(chosen), trust_pickle=trust_pickle
        )
        if csv_path is not None:
            source = _with_log(source, csv_path, 0)
    else:
        root = Path(src)
        if not root.is_dir():
            raise UsageError("not a folder", root)
        if framework == "lightning":
            source = read_lightning(root, metrics_csv=csv_path, trust_pickle=trust_pickle)
        elif framework == "hf":
            source = read_hf(root, selected_by=sel)
        elif framework == "keras":
            if not epoch_pattern:
                raise UsageError(
                    "keras files record no epoch: give --epoch-pattern, e.g. 'epoch{epoch:02d}-{val_accuracy:.4f}.keras'"
                )
            source = read_keras(root, epoch_pattern=epoch_pattern, metrics_csv=csv_path)
        else:
            raise UsageError(f"FRAMEWORK must be one of {', '.join(FRAMEWORKS)}, not {framework!r}")
    if chosen is not None:
        source = identify_chosen(source, chosen)
    if source.chosen is not None and sel is None and source.selected_by is None:
        source = replace(
            source,
            notes=(
                *source.notes,
                "what training selected by is unknown: give --selected-by METRIC[:min|max], "
                "or check skips its selected-by-matches rule",
            ),
        )
    return write_run(source, run, task=task, output=output, classes=classes, selected_by=sel)


def _with_log(source: Source, path: Path, offset: int) -> Source:
    """``source`` with each checkpoint's logged metrics completed from a log file."""
    logs = read_log(path, epoch_offset=offset)
    checkpoints = tuple(replace(ck, logged={**logs.get(ck.epoch, {}), **ck.logged}) for ck in source.checkpoints)
    return replace(source, checkpoints=checkpoints)


def read_log(path: Path, epoch_offset: int = 0) -> dict[int, dict[str, float]]:
    """Per epoch, the last value of every logged metric: a CSV file (``epoch`` column), or a
    TensorBoard / W&B log (:mod:`.logs`)."""
    from .logs import is_csv, read_logger

    if not is_csv(path):
        return read_logger(path, epoch_offset)
    logs = _read_csv_log(path, epoch_offset)
    # NOTE: a W&B export carries W&B's own _step, _runtime and _timestamp columns: not metrics.
    return {epoch: {k: v for k, v in values.items() if not k.startswith("_")} for epoch, values in logs.items()}
