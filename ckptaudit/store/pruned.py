"""What ``prune`` removed from a run: ``RUN/ckptaudit-pruned.json`` (docs/format.md).

``prune`` keeps history: by default it deletes only a doomed checkpoint's weights (what is
big and re-creatable) and keeps its ``meta.json`` and predictions, so the checkpoint is
still a full candidate of every selection statistic. Those weights-less checkpoints are
recorded here with ``"removed": "weights"``, so that ``pick --link/--copy`` and ``check
--chosen NAME`` can say plainly that there is nothing to place or ship. ``prune --all``
deletes whole folders and records each deleted candidate here with ``"removed": "all"``
and what it scored under the metrics the prune ranked by, so that the audit can say that
the run's selection statistics now count fewer candidates than were compared.

The file is data: a malformed one is refused by the readers that need it, never executed
or followed anywhere.
"""

from __future__ import annotations

import json
import os
import re
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RunFormatError

PRUNED_FILE = "ckptaudit-pruned.json"
PRUNED_FORMAT = "ckptaudit-pruned/1"
#: the largest pruned record read (a run of a million checkpoints stays far below)
_MAX_BYTES = 64 << 20


@dataclass(frozen=True)
class PrunedCheckpoint:
    """One checkpoint ``prune`` removed weights from (``weights``) or deleted (``all``)."""

    checkpoint: str
    removed: str  #: "weights" or "all"
    epoch: int | None = None
    step: int | None = None
    time: str = ""
    #: what the checkpoint scored under each metric the prune ranked by (``all`` only)
    scores: dict[str, float | None] = field(default_factory=dict)
    logged: dict[str, float | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The record as stored in the file."""
        out: dict[str, Any] = {"removed": self.removed, "epoch": self.epoch, "step": self.step, "time": self.time}
        if self.removed == "all":
            out["scores"] = dict(self.scores)
            out["logged"] = dict(self.logged)
        return out


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def parse_pruned(data: Any, path: Path | str) -> dict[str, PrunedCheckpoint]:
    """Checkpoint name -> record, from the parsed file; :class:`RunFormatError` when malformed."""
    if not isinstance(data, dict) or not isinstance(data.get("checkpoints"), dict):
        raise RunFormatError(f'must hold {{"format": "{PRUNED_FORMAT}", "checkpoints": {{...}}}}', path)
    out = {}
    for name, item in data["checkpoints"].items():
        if not isinstance(item, dict) or item.get("removed") not in ("weights", "all"):
            raise RunFormatError(f"record {name!r} needs 'removed': 'weights' or 'all'", path)
        epoch, step = item.get("epoch"), item.get("step")
        scores: dict[Any, Any] = item["scores"] if isinstance(item.get("scores"), dict) else {}
        logged: dict[Any, Any] = item["logged"] if isinstance(item.get("logged"), dict) else {}
        out[str(name)] = PrunedCheckpoint(
            str(name),
            item["removed"],
            epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None,
            step if isinstance(step, int) and not isinstance(step, bool) else None,
            str(item.get("time", "")),
            {str(k): _number(v) for k, v in scores.items()},
            {str(k): _number(v) for k, v in logged.items()},
        )
    return out


def read_pruned(run_path: str | Path) -> dict[str, PrunedCheckpoint]:
    """Every record of the run's pruned file (none when it has none)."""
    path = Path(run_path) / PRUNED_FILE
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise RunFormatError(f"cannot read: {exc.strerror}", path) from None
    if not stat.S_ISREG(st.st_mode):
        raise RunFormatError("must be a regular file, not a link or a special file", path)
    if st.st_size > _MAX_BYTES:
        raise RunFormatError(f"is {st.st_size} bytes; at most {_MAX_BYTES} are read", path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            data = json.loads(fh.read(_MAX_BYTES + 1).decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise RunFormatError(f"unreadable ({exc}); fix or remove it", path) from None
    return parse_pruned(data, path)


def weights_removed(run_path: str | Path, checkpoint: str) -> bool:
    """Whether ``prune`` deleted the weights of ``checkpoint`` (its predictions were kept):
    recorded so, and nothing but predictions and meta.json left in its folder (a prune
    killed before it moved anything leaves the weights, and the record, in place)."""
    try:
        record = read_pruned(run_path).get(checkpoint)
    except RunFormatError:
        return False
    if record is None or record.removed != "weights":
        return False
    from .weights import NON_WEIGHT_FILES

    try:
        left = [n for n in os.listdir(Path(run_path) / "checkpoints" / checkpoint) if n not in NON_WEIGHT_FILES]
    except OSError:
        return True
    return not left


_TEMP_RE = re.compile(r"\." + re.escape(PRUNED_FILE) + r"\.[0-9a-f]{12}\.tmp")


def clear_stale_temporaries(run_path: str | Path) -> list[str]:
    """Remove the temporaries :func:`write_pruned` leaves when a prune is killed mid-write
    (``.ckptaudit-pruned.json.<12 hex>.tmp``, regular files in the run folder itself, never
    through a link). Call it under the run's prune lock: no other prune can be writing one.
    Returns the names removed."""
    removed = []
    fd = os.open(Path(run_path), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for name in os.listdir(fd):
            if not _TEMP_RE.fullmatch(name):
                continue
            try:
                if stat.S_ISREG(os.lstat(name, dir_fd=fd).st_mode):
                    os.unlink(name, dir_fd=fd)
                    removed.append(name)
            except FileNotFoundError:
                pass
    finally:
        os.close(fd)
    return removed


def write_pruned(run_fd: int, run_path: Path, records: dict[str, PrunedCheckpoint]) -> None:
    """Replace the file with ``records`` atomically, through the run folder's descriptor:
    an exclusive temporary in the run folder, fsynced, renamed over the file (a link at the
    path is replaced, never written through)."""
    data = {"format": PRUNED_FORMAT, "checkpoints": {n: r.as_dict() for n, r in sorted(records.items())}}
    tmp = f".{PRUNED_FILE}.{uuid.uuid4().hex[:12]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=run_fd)
    try:
        try:
            view = memoryview((json.dumps(data, indent=1, allow_nan=False) + "\n").encode("utf-8"))
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, PRUNED_FILE, src_dir_fd=run_fd, dst_dir_fd=run_fd)
        os.fsync(run_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=run_fd)
        except OSError:
            pass
        raise
