"""Per-epoch logged metrics from the loggers people use, for ``import --log``.

- **TensorBoard** event files (Lightning's default ``TensorBoardLogger``, a plain
  ``SummaryWriter``): read with TensorBoard's own loader when the ``tensorboard`` package is
  installed (``pip install 'ckptaudit[tensorboard]'``), else with the small reader below (the
  TFRecord framing and the three protobuf messages a scalar lives in). Lightning logs an
  ``epoch`` scalar beside every metric, at the same global step: steps are mapped to epochs
  through it; without an ``epoch`` tag the step is the epoch (``add_scalar(tag, v, epoch)``).
- **Weights & Biases**: an offline run's ``run-<id>.wandb`` file (or its folder), read by the
  small reader below (no ``wandb`` package needed), a run's exported history as CSV (read by
  the importer's CSV reader), or a ``wandb-history.jsonl`` of one JSON object per ``log``
  call. The rows' ``epoch`` key gives the epoch; W&B's own ``_step``/``_runtime``/
  ``_timestamp`` are left out.

Per epoch the last value of each metric is kept, as for ``metrics.csv``.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from pathlib import Path

from ..errors import RunFormatError, UsageError

EVENTS_GLOB = "events.out.tfevents.*"
#: TensorBoardLogger's placeholder hyper-parameter metric; never a measurement
_IGNORED_TAGS = {"hp_metric"}


def refuse_special(path: Path) -> None:
    """A FIFO, device or socket named as a log (or found where one is looked for) is refused
    before anything opens it: a FIFO would block, a device never end."""
    import os
    import stat

    from ..store.safeio import describe_mode

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing: the caller says what it looked for
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise UsageError(f"is {describe_mode(mode)}, not a log file: only regular files are read", path)


def is_csv(path: Path) -> bool:
    """Whether ``path`` is a CSV log (by suffix; W&B exports and CSVLogger files are .csv)."""
    return path.is_file() and path.suffix.lower() == ".csv"


def read_logger(path: Path, epoch_offset: int = 0) -> dict[int, dict[str, float]]:
    """Per epoch, the last value of each metric in a TensorBoard log (an event file or a folder
    of them) or a W&B history (``.jsonl``). ``epoch_offset`` is added to the log's epochs."""
    refuse_special(path)
    if path.is_file() and path.suffix.lower() in (".jsonl", ".json"):
        return read_wandb_history(path, epoch_offset)
    if path.is_file() and path.name.endswith(".wandb"):
        return read_wandb_run(path, epoch_offset)
    if path.is_dir():
        history = sorted(path.rglob("wandb-history.jsonl"))
        if history:
            return read_wandb_history(history[-1], epoch_offset)
        runs = sorted(path.rglob("run-*.wandb"))
        if len(runs) > 1:
            raise UsageError(f"{len(runs)} W&B runs below this folder: name one run-*.wandb file with --log", path)
        if runs:
            return read_wandb_run(runs[0], epoch_offset)
    events = [path] if path.is_file() and path.name.startswith("events.out.tfevents") else _event_files(path)
    if not events:
        raise UsageError(
            "not a log ckptaudit reads: give a CSV (metrics.csv, CSVLogger, a W&B export), a TensorBoard "
            "event file or folder, or a W&B wandb-history.jsonl",
            path,
        )
    return read_tensorboard(events, path if path.is_dir() else path.parent, epoch_offset)


def _event_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return []
    return sorted(p for p in path.rglob(EVENTS_GLOB) if p.is_file())


# --------------------------------------------------------------------------- tensorboard


def read_tensorboard(files: list[Path], root: Path, epoch_offset: int = 0) -> dict[int, dict[str, float]]:
    """Scalars of TensorBoard event files, per epoch. Tags of files in a subfolder of ``root``
    are prefixed with it (Keras writes ``train/`` and ``validation/`` files with equal tags)."""
    points: list[tuple[str, int, float]] = []
    for f in sorted(files, key=lambda p: (str(p.parent), p.name)):  # the name holds the start time
        rel = f.parent.relative_to(root).as_posix() if f.parent != root and f.parent.is_relative_to(root) else ""
        prefix = "" if rel in ("", ".") else rel + "/"
        for tag, step, value in _scalars(f):
            if tag not in _IGNORED_TAGS:
                points.append((prefix + tag if tag != "epoch" else tag, step, value))
    epoch_at = {step: int(value) for tag, step, value in points if tag == "epoch" and math.isfinite(value)}
    known = sorted(epoch_at)
    out: dict[int, dict[str, float]] = {}
    for tag, step, value in points:
        if tag == "epoch":
            continue
        if not known:
            epoch = step
        elif step in epoch_at:
            epoch = epoch_at[step]
        else:  # NOTE: the epoch of the last step at or before this one
            before = [s for s in known if s <= step]
            if not before:
                continue
            epoch = epoch_at[before[-1]]
        out.setdefault(epoch + epoch_offset, {})[tag] = value
    return out


def _scalars(path: Path) -> Iterator[tuple[str, int, float]]:
    """(tag, step, value) of every scalar in one event file, in file order."""
    try:
        from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
        from tensorboard.util import tensor_util
    except ImportError:
        yield from _scalars_minimal(path)
        return
    for event in LegacyEventFileLoader(str(path)).Load():
        if not event.HasField("summary"):
            continue
        for value in event.summary.value:
            kind = value.WhichOneof("value")
            if kind == "simple_value":
                yield value.tag, int(event.step), float(value.simple_value)
            elif kind == "tensor":
                arr = tensor_util.make_ndarray(value.tensor)
                if arr.size == 1 and arr.dtype.kind in "fiu":
                    yield value.tag, int(event.step), float(arr.reshape(()))


# The minimal reader: TFRecord framing (u64 length, u32 crc, data, u32 crc), then
# Event{step=2, summary=5} -> Summary{value=1} -> Value{tag=1, simple_value=2, tensor=8}
# -> TensorProto{dtype=1, tensor_content=4, float_val=5, double_val=6, int_val=7, int64_val=10}.

_DT_FLOAT, _DT_DOUBLE, _DT_INT32, _DT_INT64 = 1, 2, 3, 9


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of a protobuf message: ints for varint and fixed
    fields (fixed ones as raw little-endian bits), bytes for length-delimited ones."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            yield number, wire, value
        elif wire == 1:
            yield number, wire, buf[i : i + 8]
            i += 8
        elif wire == 2:
            n, i = _varint(buf, i)
            yield number, wire, buf[i : i + n]
            i += n
        elif wire == 5:
            yield number, wire, buf[i : i + 4]
            i += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if i > len(buf):
            raise ValueError("truncated message")


def _tensor_scalar(buf: bytes) -> float | None:
    dtype = 0
    content = b""
    values: list[float] = []
    for number, wire, value in _fields(buf):
        if number == 1 and wire == 0:
            dtype = int(value)  # type: ignore[arg-type]
        elif number == 4 and wire == 2:
            content = bytes(value)  # type: ignore[arg-type]
        elif number == 5:
            values += struct.unpack(f"<{len(value) // 4}f", value) if wire == 2 else struct.unpack("<f", value)  # type: ignore[arg-type]
        elif number == 6:
            values += struct.unpack(f"<{len(value) // 8}d", value) if wire == 2 else struct.unpack("<d", value)  # type: ignore[arg-type]
        elif number in (7, 10) and wire == 0:
            values.append(float(int(value)))  # type: ignore[arg-type]
    fmt = {_DT_FLOAT: "<f", _DT_DOUBLE: "<d", _DT_INT32: "<i", _DT_INT64: "<q"}.get(dtype)
    if content and fmt and len(content) == struct.calcsize(fmt):
        return float(struct.unpack(fmt, content)[0])
    return values[0] if len(values) == 1 and fmt else None


def _records(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while True:
            head = fh.read(12)
            if len(head) < 12:
                return  # NOTE: a record still being written at the end of a live log is left out
            (n,) = struct.unpack("<Q", head[:8])
            data = fh.read(n)
            if len(data) < n or len(fh.read(4)) < 4:
                return
            yield data


def _scalars_minimal(path: Path) -> Iterator[tuple[str, int, float]]:
    try:
        for record in _records(path):
            step = 0
            summaries = []
            for number, wire, value in _fields(record):
                if number == 2 and wire == 0:
                    step = int(value)  # type: ignore[arg-type]
                elif number == 5 and wire == 2:
                    summaries.append(value)
            for summary in summaries:
                for number, wire, value in _fields(summary):  # type: ignore[arg-type]
                    if number != 1 or wire != 2:
                        continue
                    tag, scalar = None, None
                    for n2, w2, v2 in _fields(value):  # type: ignore[arg-type]
                        if n2 == 1 and w2 == 2:
                            tag = bytes(v2).decode("utf-8", "replace")  # type: ignore[arg-type]
                        elif n2 == 2 and w2 == 5:
                            scalar = struct.unpack("<f", v2)[0]  # type: ignore[arg-type]
                        elif n2 == 8 and w2 == 2:
                            scalar = _tensor_scalar(v2)  # type: ignore[arg-type]
                    if tag is not None and scalar is not None:
                        yield tag, step, float(scalar)
    except (OSError, ValueError, struct.error) as exc:
        raise RunFormatError(f"unreadable TensorBoard event file: {exc}", path) from None


# --------------------------------------------------------------------------- weights & biases

_WANDB_EPOCH_KEYS = ("epoch", "epoch/epoch", "trainer/epoch")


def read_wandb_history(path: Path, epoch_offset: int = 0) -> dict[int, dict[str, float]]:
    """Per epoch, the last value of each number in a W&B history (one JSON object per line)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFormatError(f"cannot read: {exc}", path) from None
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            raise RunFormatError(f"line {lineno} is not JSON", path) from None
    return _by_epoch(rows, path, epoch_offset)


# An offline run's run-<id>.wandb: a 7-byte header (":W&B", magic 0xBEE1, version 0), then
# LevelDB-log records in 32 KiB blocks (u32 crc, u16 length, u8 type: full, first, middle,
# last), each a wandb Record; Record.history (2) holds one row: HistoryItem (1) with key (1)
# or nested_key (2, joined by "/") and value_json (16).
_WANDB_HEADER = b":W&B\xe1\xbe\x00"
_BLOCK = 32768


def _wandb_records(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    if not data.startswith(_WANDB_HEADER):
        raise RunFormatError("not a W&B transaction log (no :W&B header)", path)
    pos, parts = len(_WANDB_HEADER), b""
    while pos + 7 <= len(data):
        if _BLOCK - pos % _BLOCK < 7:  # a block's tail too short for a record header is padding
            pos += _BLOCK - pos % _BLOCK
            continue
        n = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        body = data[pos + 7 : pos + 7 + n]
        pos += 7 + n
        if kind == 0 and n == 0:
            continue
        if len(body) < n:
            return  # NOTE: the record still being written by a live run is left out
        if kind == 1:
            yield body
        elif kind == 2:
            parts = body
        elif kind == 3:
            parts += body
        elif kind == 4:
            yield parts + body
            parts = b""


def read_wandb_run(path: Path, epoch_offset: int = 0) -> dict[int, dict[str, float]]:
    """Per epoch, the last value of each number logged in an offline W&B run's ``.wandb`` file."""
    rows = []
    try:
        for record in _wandb_records(path):
            for number, wire, history in _fields(record):
                if number != 2 or wire != 2:
                    continue
                row = {}
                for n2, w2, item in _fields(history):  # type: ignore[arg-type]
                    if n2 != 1 or w2 != 2:
                        continue
                    key, nested, value = "", [], None
                    for n3, w3, v3 in _fields(item):  # type: ignore[arg-type]
                        if n3 == 1 and w3 == 2:
                            key = bytes(v3).decode("utf-8", "replace")  # type: ignore[arg-type]
                        elif n3 == 2 and w3 == 2:
                            nested.append(bytes(v3).decode("utf-8", "replace"))  # type: ignore[arg-type]
                        elif n3 == 16 and w3 == 2:
                            value = bytes(v3).decode("utf-8", "replace")  # type: ignore[arg-type]
                    name = key or "/".join(nested)
                    if name and value is not None:
                        try:
                            row[name] = json.loads(value)
                        except ValueError:
                            continue
                rows.append(row)
    except (OSError, ValueError) as exc:
        raise RunFormatError(f"unreadable W&B run file: {exc}", path) from None
    return _by_epoch(rows, path, epoch_offset)


def _by_epoch(rows: list, path: Path, epoch_offset: int) -> dict[int, dict[str, float]]:
    """Per epoch (the row's ``epoch`` key), the last value of each number of W&B history rows."""
    out: dict[int, dict[str, float]] = {}
    for row in rows:
        if not isinstance(row, dict):
            continue
        key = next((k for k in _WANDB_EPOCH_KEYS if isinstance(row.get(k), (int, float))), None)
        if key is None:
            continue
        values = out.setdefault(int(row[key]) + epoch_offset, {})
        for name, value in row.items():
            if name in _WANDB_EPOCH_KEYS or name.startswith("_"):
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values[name] = float(value)
    if not out:
        raise UsageError(
            f"no row of the W&B history has an epoch ({', '.join(_WANDB_EPOCH_KEYS)}): log 'epoch' with your metrics", path
        )
    return out
