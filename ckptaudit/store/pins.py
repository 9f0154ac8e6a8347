"""Pins: records inside a run that keep a checkpoint from ``prune`` until unpinned.

``pick --link/--copy DEST`` exports a checkpoint, often outside the run, where prune
cannot see it. So the pick also writes a pin into ``RUN/ckptaudit-pins.json`` naming the
checkpoint by its folder name only: moving or renaming the run folder keeps every pin
valid. ``prune`` keeps each pinned checkpoint (rule ``pinned``); ``unpin`` (CLI and
:func:`unpin`) removes pins explicitly. Pins are added and removed under the run's lock,
so a prune never plans against a half-written pin list. A malformed pins file makes
prune refuse rather than guess.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RunFormatError, UsageError
from .safeio import read_json

PINS_FILE = "ckptaudit-pins.json"
PINS_FORMAT = "ckptaudit-pins/1"


@dataclass(frozen=True)
class Pin:
    """One pin: the checkpoint (a folder name in ``checkpoints/``) and what pinned it."""

    checkpoint: str
    dest: str | None
    kind: str  #: "link", "copy" or "manual"
    time: str

    def as_dict(self) -> dict[str, Any]:
        """The record as stored in the pins file."""
        return {"checkpoint": self.checkpoint, "dest": self.dest, "kind": self.kind, "time": self.time}


def normalize_pin(checkpoint: str, run_path: str | Path | None = None) -> str | None:
    """The folder name a pin means: ``./epoch-0001``, ``epoch-0001/`` and
    ``checkpoints/epoch-0001`` (or an absolute path into the run's ``checkpoints/``) all
    mean ``epoch-0001``. None when it names no folder directly inside ``checkpoints/``."""
    text = checkpoint.strip()
    if run_path is not None and os.path.isabs(text):
        base = os.path.abspath(os.path.join(run_path, "checkpoints"))
        text = os.path.relpath(os.path.normpath(text), base) if os.path.normpath(text).startswith(base + os.sep) else text
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if len(parts) == 2 and parts[0] == "checkpoints":
        parts = parts[1:]
    if len(parts) != 1 or parts[0] == ".." or os.path.isabs(text):
        return None
    return parts[0]


def read_pins(run_path: str | Path) -> list[Pin]:
    """Every pin of a run (none when the run has no pins file)."""
    path = Path(run_path) / PINS_FILE
    if not path.exists() and not path.is_symlink():
        return []
    if path.is_symlink() or not path.is_file():
        raise RunFormatError("must be a regular file, not a link or a special file", path)
    # NOTE: bounded and regular files only (read_json): a sparse pins file of gigabytes, or
    # one swapped for a FIFO after the check above, is one error, not a hang or a MemoryError.
    try:
        data = read_json(path)
    except (OSError, RunFormatError) as exc:
        detail = exc.problem if isinstance(exc, RunFormatError) else str(exc)
        raise RunFormatError(f"unreadable pins file ({detail}); fix or remove it", path) from None
    if not isinstance(data, dict) or not isinstance(data.get("pins"), list):
        raise RunFormatError('must hold {"format": "ckptaudit-pins/1", "pins": [...]}', path)
    pins = []
    for item in data["pins"]:
        if not isinstance(item, dict) or not isinstance(item.get("checkpoint"), str):
            raise RunFormatError("every pin needs a 'checkpoint' name", path)
        name = normalize_pin(item["checkpoint"])
        if name is None:
            raise RunFormatError(
                f"pin {item['checkpoint']!r} names no checkpoint folder (a folder name in checkpoints/ is expected); "
                "fix or remove it: prune will not guess what it protects",
                path,
            )
        dest = item.get("dest")
        pins.append(
            Pin(
                name,
                None if dest is None else str(dest),
                str(item.get("kind", "manual")),
                str(item.get("time", "")),
            )
        )
    return pins


def _write(run_path: Path, pins: list[Pin]) -> None:
    path = run_path / PINS_FILE
    tmp = run_path / f".{PINS_FILE}.{uuid.uuid4().hex[:8]}.tmp"
    data = {"format": PINS_FORMAT, "pins": [p.as_dict() for p in pins]}
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)  # replaces a link at the path instead of writing through it
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        from .prunefs import disk_message

        raise UsageError(f"cannot write the pins file: {disk_message(exc)}", path) from None


def add_pin(run_path: str | Path, checkpoint: str, *, dest: str | Path | None = None, kind: str = "manual") -> Pin:
    """Pin ``checkpoint`` of the run at ``run_path`` (under the run's lock)."""
    from .prunefs import RunLock

    run_path = Path(run_path)
    name = normalize_pin(str(checkpoint), run_path)
    if name is None:
        raise UsageError("names no checkpoint folder directly inside the run's checkpoints/", checkpoint)
    checkpoint = name
    pin = Pin(
        checkpoint,
        None if dest is None else os.path.abspath(dest),
        kind,
        _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    with RunLock(run_path, command="pin"):
        if not (run_path / "checkpoints" / checkpoint).is_dir() or (run_path / "checkpoints" / checkpoint).is_symlink():
            raise UsageError("no such checkpoint folder to pin", run_path / "checkpoints" / checkpoint)
        _write(run_path, [*read_pins(run_path), pin])
    return pin


def remove_pins(run_path: str | Path, checkpoint: str, *, dest: str | Path | None = None) -> list[Pin]:
    """Remove the pins of ``checkpoint`` (only the one for ``dest`` when given); returns them."""
    from .prunefs import RunLock

    run_path = Path(run_path)
    with RunLock(run_path, command="unpin"):
        pins = read_pins(run_path)
        wanted = None if dest is None else os.path.abspath(dest)
        checkpoint = normalize_pin(checkpoint, run_path) or checkpoint
        gone = [p for p in pins if p.checkpoint == checkpoint and (wanted is None or p.dest == wanted)]
        if gone:
            _write(run_path, [p for p in pins if p not in gone])
    return gone


def unpin(checkpoint_path: str | Path, *, dest: str | Path | None = None) -> list[Pin]:
    """Unpin the checkpoint folder ``RUN/checkpoints/NAME`` so that prune may delete it again.

    With ``dest`` only the pin written for that export goes. Raises
    :class:`~ckptaudit.errors.UsageError` when nothing was pinned.
    """
    path = Path(os.path.abspath(checkpoint_path))
    run_path = path.parent.parent
    if path.parent.name != "checkpoints" or not (run_path / "run.json").is_file():
        raise UsageError("not a checkpoint folder of a run (give RUN/checkpoints/NAME)", checkpoint_path)
    gone = remove_pins(run_path, path.name, dest=dest)
    if not gone:
        what = "" if dest is None else f" for {dest}"
        raise UsageError(f"no pin{what}; nothing to unpin", checkpoint_path)
    return gone
