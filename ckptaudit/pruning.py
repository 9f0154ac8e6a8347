"""``prune``: delete the checkpoints no keep-rule protects, and never lose one it does.

Safety model (README "Pruning safely"):
- dry run unless ``yes``: the plan lists every checkpoint, keep or delete, and the rule
  that keeps it;
- keep rules are a union: top K by each metric, the newest N, every Nth epoch, run.json
  ``chosen``, anything a provenance file inside the run points at, and anything that
  cannot be scored;
- one prune per run at a time (a lock file created atomically);
- only folders directly inside ``checkpoints/`` are touched; a symlink is unlinked, never
  followed;
- crash-safe: the plan is appended to ``prune-log.jsonl`` (fsync) first; each doomed
  checkpoint is then renamed to a trash name in the same folder (atomic) and only then
  removed. An interrupted prune leaves whole checkpoints or trash entries, and the next
  prune (or ``--resume``) finishes the trash. Errors stop the prune and say what is left.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import LockedError, MetricError, RunFormatError, UsageError
from .metrics.evaluation import iter_scores, parse_metrics
from .metrics.spec import MetricSpec
from .picking import PROVENANCE_SUFFIX
from .ranking import order_scores
from .store.reader import CHECKPOINTS_DIR, Run, discover, is_in_progress, read_run

LOCK_FILE = ".ckptaudit-prune.lock"
LOG_FILE = "prune-log.jsonl"
TRASH_PREFIX = ".ckptaudit-trash-"
#: test hook: exit abruptly after this many checkpoints were moved to trash (simulates a kill)
CRASH_ENV = "CKPTAUDIT_TEST_CRASH_AFTER"
#: test hook: seconds to wait after taking the lock (lets a test race two prunes)
PAUSE_ENV = "CKPTAUDIT_TEST_PAUSE"


@dataclass(frozen=True)
class PlanEntry:
    """One checkpoint in a prune plan."""

    checkpoint: str
    epoch: int | None
    action: str  #: "keep", "delete", or "finish" (trash left by an interrupted prune)
    kept_by: tuple[str, ...]
    size: int
    path: Path

    def as_dict(self) -> dict[str, Any]:
        """JSON shape of a plan row."""
        return {
            "checkpoint": self.checkpoint,
            "epoch": self.epoch,
            "action": self.action,
            "kept_by": list(self.kept_by),
            "size": self.size,
        }


@dataclass(frozen=True)
class PrunePlan:
    """What a prune of one run keeps and deletes, and why."""

    run: Run
    entries: tuple[PlanEntry, ...]
    metrics: tuple[str, ...]
    executed: bool = False
    deleted: tuple[str, ...] = field(default=())

    @property
    def reclaimed(self) -> int:
        """Bytes freed by the deletions (and by finishing old trash)."""
        return sum(e.size for e in self.entries if e.action != "keep")

    def as_dict(self) -> dict[str, Any]:
        """JSON shape of the plan."""
        return {
            "run": self.run.name,
            "dry_run": not self.executed,
            "metrics": list(self.metrics),
            "entries": [e.as_dict() for e in self.entries],
            "reclaimed_bytes": self.reclaimed,
            "deleted": list(self.deleted),
        }


def _size(path: Path) -> int:
    if path.is_symlink():
        return 0
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _provenance_targets(run: Run) -> dict[str, str]:
    """Checkpoints of this run named by a provenance file inside the run folder."""
    targets: dict[str, str] = {}
    here = run.path.resolve()
    for root, dirs, files in os.walk(run.path):
        dirs[:] = [d for d in dirs if not d.startswith(TRASH_PREFIX)]
        for name in files:
            if not name.endswith(PROVENANCE_SUFFIX):
                continue
            path = Path(root) / name
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raise RunFormatError("unreadable provenance file (fix or remove it before pruning)", path) from None
            if isinstance(data, dict) and Path(str(data.get("run", ""))).resolve() == here and "checkpoint" in data:
                targets[str(data["checkpoint"])] = str(path.relative_to(run.path))
    return targets


def _pending_trash(run: Run) -> list[PlanEntry]:
    """Trash entries an interrupted prune left in ``checkpoints/``, to be finished."""
    return [
        PlanEntry(e.name[len(TRASH_PREFIX) :], None, "finish", (), _size(Path(e.path)), Path(e.path))
        for e in sorted(os.scandir(run.path / CHECKPOINTS_DIR), key=lambda e: e.name)
        if e.name.startswith(TRASH_PREFIX)
    ]


def plan(
    run: Run,
    specs: Sequence[MetricSpec],
    *,
    keep: int,
    keep_last: int = 1,
    keep_every: int | None = None,
) -> PrunePlan:
    """Decide, for every checkpoint of ``run``, whether a rule keeps it."""
    reasons: dict[str, list[str]] = {c.name: [] for c in run.checkpoints}
    scores = list(iter_scores(run, specs))
    for i, spec in enumerate(specs):
        if spec.source == "logged":
            missing = [s.checkpoint.name for s in scores if spec.name not in s.checkpoint.logged]
            if missing:
                raise MetricError(
                    f"metric {spec.text!r} is missing on {', '.join(missing[:5])}; refusing to prune by it", run.name
                )
        ordered = [s for s in order_scores(scores, spec, i) if s.values[i] is not None]
        for s in ordered[:keep]:
            reasons[s.checkpoint.name].append(f"top-{keep} {spec.text}")
        for s in scores:
            if s.values[i] is None and "unscorable" not in reasons[s.checkpoint.name]:
                reasons[s.checkpoint.name].append("unscorable")
    newest = sorted(run.checkpoints, key=lambda c: c.order_key)[-keep_last:] if keep_last > 0 else []
    for c in newest:
        reasons[c.name].append(f"last-{keep_last}")
    if keep_every:
        for c in run.checkpoints:
            if c.epoch % keep_every == 0:
                reasons[c.name].append(f"every-{keep_every}")
    if run.chosen in reasons:
        reasons[run.chosen].append("chosen")
    for name, source in _provenance_targets(run).items():
        if name in reasons:
            reasons[name].append(f"provenance:{source}")
    entries = [
        PlanEntry(c.name, c.epoch, "keep" if reasons[c.name] else "delete", tuple(reasons[c.name]), _size(c.path), c.path)
        for c in run.checkpoints
    ]
    entries += _pending_trash(run)
    return PrunePlan(run=run, entries=tuple(entries), metrics=tuple(s.text for s in specs))


class RunLock:
    """An exclusive lock on a run: a file created with O_EXCL, removed on exit."""

    def __init__(self, run: Run) -> None:
        self.path = run.path / LOCK_FILE

    def _stale(self) -> bool:
        """The lock names a process of this machine that no longer exists (a killed prune).

        A lock written on another host is never taken over: its process cannot be checked.
        """
        try:
            host, _, pid_text = self.path.read_text().strip().partition(" ")
            pid = int(pid_text)
        except (OSError, ValueError):
            return False
        if host != socket.gethostname() or pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def __enter__(self) -> RunLock:
        for attempt in (0, 1):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                break
            except FileExistsError:
                if attempt == 0 and self._stale():
                    # NOTE: rename-then-remove, so two prunes that both see the stale lock
                    # cannot both remove it: only one rename succeeds.
                    try:
                        os.rename(self.path, self.path.with_name(f"{LOCK_FILE}.stale.{os.getpid()}"))
                        self.path.with_name(f"{LOCK_FILE}.stale.{os.getpid()}").unlink()
                    except FileNotFoundError:
                        pass
                    continue
                holder = ""
                try:
                    holder = f" (host and pid: {self.path.read_text().strip()})"
                except OSError:
                    pass
                raise LockedError(
                    f"another prune holds this run's lock{holder}; if none is running, remove {LOCK_FILE}", self.path.parent
                ) from None
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{socket.gethostname()} {os.getpid()}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def _log(run: Run, record: dict[str, Any]) -> None:
    record = {"time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **record}
    with open(run.path / LOG_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _inside(path: Path, folder: Path) -> bool:
    """``path`` is directly inside ``folder`` (compared without following ``path`` itself)."""
    return path.parent.resolve() == folder.resolve() and path.name not in ("", ".", "..")


def _remove(path: Path, trash_dir: Path | None, run: Run, name: str) -> None:
    """Remove one trash entry: unlink a symlink, move to ``trash_dir``, or delete the folder."""
    if path.is_symlink():
        path.unlink()  # the link only: its target is never touched
    elif trash_dir is not None:
        dest = trash_dir / run.path.name / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            raise UsageError("already exists in the trash folder", dest)
        shutil.move(str(path), str(dest))
    else:
        shutil.rmtree(path)  # NOTE: no ignore_errors: a failure must stop the prune


def execute(p: PrunePlan, *, trash_dir: Path | None = None) -> PrunePlan:
    """Carry out a plan, journaled and crash-safe. The caller holds the run's lock."""
    run = p.run
    ckpt_dir = run.path / CHECKPOINTS_DIR
    crash_after = int(os.environ.get(CRASH_ENV, "0") or 0)
    done: list[str] = []
    doomed = [e for e in p.entries if e.action == "delete"]
    pending = [e for e in p.entries if e.action == "finish"]
    for e in doomed + pending:
        if not _inside(e.path, ckpt_dir):
            raise UsageError("refusing to delete outside the run's checkpoints/ folder", e.path)
    _log(
        run,
        {
            "action": "plan",
            "delete": [e.checkpoint for e in doomed],
            "finish": [e.checkpoint for e in pending],
            "keep": {e.checkpoint: list(e.kept_by) for e in p.entries if e.action == "keep"},
            "trash_dir": None if trash_dir is None else str(trash_dir),
        },
    )
    # trash left by an interrupted prune first, then each doomed checkpoint: rename, remove
    steps = [(e, e.path) for e in pending] + [(e, ckpt_dir / f"{TRASH_PREFIX}{e.checkpoint}") for e in doomed]
    for e, trash in steps:
        if e.action == "delete":
            try:
                os.rename(e.path, trash)
            except OSError as exc:
                raise UsageError(
                    f"could not move {e.checkpoint} to trash ({exc}); deleted so far: {', '.join(done) or 'none'}", run.path
                ) from None
            if crash_after and len(done) + 1 >= crash_after:
                os._exit(99)  # test hook: die between the rename and the removal, like a kill
        was_link = trash.is_symlink()
        try:
            _remove(trash, trash_dir, run, e.checkpoint)
        except (OSError, UsageError) as exc:
            left = [x.checkpoint for x, _ in steps if x.checkpoint not in done]
            raise UsageError(f"could not remove {trash.name} ({exc}); not yet removed: {', '.join(left)}", run.path) from None
        done.append(e.checkpoint)
        _log(run, {"action": "moved" if trash_dir and not was_link else "deleted", "checkpoint": e.checkpoint})
    return PrunePlan(run=run, entries=p.entries, metrics=p.metrics, executed=True, deleted=tuple(done))


def prune(
    paths: Sequence[str | Path],
    metrics: Sequence[str],
    *,
    keep: int,
    keep_last: int = 1,
    keep_every: int | None = None,
    mode: str | None = None,
    yes: bool = False,
    trash_dir: str | Path | None = None,
) -> list[PrunePlan]:
    """Plan (and with ``yes`` carry out) a prune of every run under ``paths``."""
    if not metrics:
        raise MetricError("prune needs at least one --metric: it never guesses what to keep")
    if keep < 1 and keep_last < 1 and not keep_every:
        raise UsageError("every keep rule is off: refusing to delete every checkpoint")
    runs = discover(paths)
    for run in runs:
        _refuse_symlinked(run)
    specs = parse_metrics(metrics, runs, mode)
    if not yes:
        return [plan(run, specs, keep=keep, keep_last=keep_last, keep_every=keep_every) for run in runs]
    trash = None if trash_dir is None else Path(trash_dir)
    done = []
    for run in runs:
        # NOTE: plan under the lock, so a plan never acts on a run another prune changed.
        with RunLock(run):
            _pause_for_tests()
            fresh = read_run(run.path, run.name)
            done.append(execute(plan(fresh, specs, keep=keep, keep_last=keep_last, keep_every=keep_every), trash_dir=trash))
    return done


def _refuse_symlinked(run: Run) -> None:
    """Prune never acts through a symlink: not a symlinked run, not a symlinked checkpoints/."""
    for path in (run.path, run.path / CHECKPOINTS_DIR):
        if path.is_symlink():
            raise UsageError("is a symbolic link; prune the real folder it points to instead", path)


def _pause_for_tests() -> None:
    if os.environ.get(PAUSE_ENV):
        import time

        time.sleep(float(os.environ[PAUSE_ENV]))


def resume(paths: Sequence[str | Path], *, trash_dir: str | Path | None = None) -> list[PrunePlan]:
    """Finish the trash left by interrupted prunes, deleting nothing else."""
    out = []
    for run in discover(paths):
        _refuse_symlinked(run)
        with RunLock(run):
            p = PrunePlan(run=run, entries=tuple(_pending_trash(run)), metrics=())
            out.append(execute(p, trash_dir=None if trash_dir is None else Path(trash_dir)))
    return out


__all__ = ["PlanEntry", "PrunePlan", "execute", "is_in_progress", "plan", "prune", "resume"]
