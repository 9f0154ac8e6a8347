"""What an importer reads from a framework's folder, before the run is written.

The shared machinery of the framework readers (:mod:`.from_lightning`, :mod:`.from_hf`,
:mod:`.from_files`): the :class:`Source` they return, epoch and step counters checked to the
run format's range, file-name templates (``--epoch-pattern``), and per-epoch metric logs
(a CSV file here, TensorBoard and W&B in :mod:`.logs`).
"""

from __future__ import annotations

import csv
import math
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RunFormatError, UsageError
from ..limits import MAX_CSV_BYTES, MAX_CSV_LINE
from ..store.reader import MAX_COUNTER
from ..store.safeio import open_regular


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


def read_log(path: Path, epoch_offset: int = 0) -> dict[int, dict[str, float]]:
    """Per epoch, the last value of every logged metric: a CSV file (``epoch`` column), or a
    TensorBoard / W&B log (:mod:`.logs`)."""
    from .logs import is_csv, read_logger

    if not is_csv(path):
        return read_logger(path, epoch_offset)
    logs = _read_csv_log(path, epoch_offset)
    # NOTE: a W&B export carries W&B's own _step, _runtime and _timestamp columns: not metrics.
    return {epoch: {k: v for k, v in values.items() if not k.startswith("_")} for epoch, values in logs.items()}
