"""Carrying out a prune plan: journaled first, then each doomed checkpoint renamed into the
run's trash (atomic) and only then removed or moved to ``--trash DIR`` (crash-safe across
devices), through descriptors over :mod:`ckptaudit.store.prunefs`, never through a link or
across a mount point. An interrupt says exactly what was done and what is left."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..errors import CkptauditError, PruneInterrupted, UsageError
from ..store.prunefs import (
    TRASH_DIR,
    ConfinedRun,
    CrossDeviceError,
    copy_tree,
    disk_message,
    foreign_device,
    move_weights,
    remove_tree,
)
from ..store.reader import CHECKPOINTS_DIR, Run
from ..store.weights import NON_WEIGHT_FILES
from .entries import PlanEntry, PrunePlan
from .planning import _pending_trash, _within
from .records import _record_pruned

#: test hook: exit abruptly after this many checkpoints were moved to trash (simulates a kill)
CRASH_ENV = "CKPTAUDIT_TEST_CRASH_AFTER"
#: test hook: seconds to wait after every rename and every removed file (random kill tests)
STEP_DELAY_ENV = "CKPTAUDIT_TEST_STEP_DELAY"


def _hooks() -> tuple[int, float]:
    return int(os.environ.get(CRASH_ENV, "0") or 0), float(os.environ.get(STEP_DELAY_ENV, "0") or 0)


def _same_content(src: Path, dest: Path) -> bool:
    """Every file left under ``src`` is in ``dest`` with the same bytes (a move whose copy
    completed but whose source removal was interrupted)."""

    def digest(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    if not src.is_dir() or src.is_symlink():
        return False

    for root, _dirs, files in os.walk(src):
        for name in files:
            a = Path(root) / name
            b = dest / a.relative_to(src)
            if a.is_symlink() or b.is_symlink():
                if not (a.is_symlink() and b.is_symlink() and os.readlink(a) == os.readlink(b)):
                    return False
            elif not b.is_file() or digest(a) != digest(b):
                return False
    return True


def _finish_one(cr: ConfinedRun, e: PlanEntry, parent_fd: int, name: str, run_name: str, step: Callable[[], None]) -> None:
    """Delete one trash entry, or move it to its trash folder (crash-safe across devices)."""
    # where the entry is now: in checkpoints/.ckptaudit-trash/, or a legacy entry in checkpoints/
    shown = cr.path / CHECKPOINTS_DIR / name if parent_fd == cr.ckpt_fd else cr.path / CHECKPOINTS_DIR / TRASH_DIR / name
    st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    foreign = foreign_device(shown, cr.dev)
    if foreign is not None:  # a mount made after the plan: stop before touching anything of it
        raise CrossDeviceError("is a mount point (another device); prune never crosses a device boundary", foreign)
    if e.trash is None or os.path.islink(shown):
        remove_tree(parent_fd, name, cr.dev, shown, step)
        return
    root = Path(e.trash) / run_name
    root.mkdir(parents=True, exist_ok=True)
    dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        final = e.checkpoint
        if os.path.lexists(root / final):
            if _same_content(shown, root / final):
                remove_tree(parent_fd, name, cr.dev, shown, step)  # the copy was complete
                return
            k = 1
            while os.path.lexists(root / f"{final}.{k}"):
                k += 1
            final = f"{final}.{k}"
        try:
            os.rename(name, final, src_dir_fd=parent_fd, dst_dir_fd=dfd)
            step()
            return
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
        # another device: copy beside the final name, then rename it into place, then
        # remove the source; a kill at any moment leaves the source whole in the trash
        partial = f".ckptaudit-partial-{hashlib.sha1(e.checkpoint.encode()).hexdigest()[:16]}"
        trash_dev = os.fstat(dfd).st_dev
        if os.path.lexists(root / partial):
            remove_tree(dfd, partial, trash_dev, root / partial)
        if not os.path.samestat(os.stat(name, dir_fd=parent_fd, follow_symlinks=False), st):
            raise UsageError("changed while being moved; stopped", shown)
        copy_tree(parent_fd, name, dfd, partial, cr.dev, shown, step)
        os.rename(partial, final, src_dir_fd=dfd, dst_dir_fd=dfd)
        os.fsync(dfd)
        step()
        remove_tree(parent_fd, name, cr.dev, shown, step)
    finally:
        os.close(dfd)


def _left(run: Run, p: PrunePlan, done: list[str]) -> str:
    """What an interrupted prune left: whole checkpoints not yet touched, trash entries."""
    trash = [e.checkpoint for e in _pending_trash(run, strict=False)] if (run.path / CHECKPOINTS_DIR).is_dir() else []
    untouched = [
        e.checkpoint
        for e in p.entries
        if e.action == "delete"
        and e.checkpoint not in done
        and e.checkpoint not in trash
        and (run.path / CHECKPOINTS_DIR / e.checkpoint).is_dir()
    ]
    parts = [f"done: {', '.join(done) or 'none'}"]
    if trash:
        parts.append(
            f"left in {CHECKPOINTS_DIR}/{TRASH_DIR}: {', '.join(trash)} (finish with `ckptaudit prune {run.path} --resume`)"
        )
    if untouched:
        parts.append(f"not yet touched (whole): {', '.join(untouched)}")
    parts.append("every kept checkpoint is whole")
    if untouched or trash:
        parts.append(f"to resume, run the same prune again (`ckptaudit prune {run.path} --resume` finishes only the trash)")
    return "; ".join(parts)


def execute(p: PrunePlan) -> PrunePlan:
    """Carry out a plan exactly, journaled and crash-safe. The caller holds the run's lock."""
    run = p.run
    doomed = [e for e in p.entries if e.action == "delete"]
    pending = [e for e in p.entries if e.action == "finish"]
    if not doomed and not pending:
        trash = run.path / CHECKPOINTS_DIR / TRASH_DIR
        if trash.is_dir() and not trash.is_symlink():
            try:
                trash.rmdir()  # an empty trash folder left by a kill after its last entry went
            except OSError:
                pass
        return replace(p, executed=True)
    crash_after, delay = _hooks()

    def step() -> None:
        if delay:
            import time

            time.sleep(delay)

    done: list[str] = []
    run_name = Path(os.path.abspath(run.path)).name
    with ConfinedRun(run.path) as cr:
        try:
            for e in doomed + pending:
                if e.trash is not None and _within(Path(e.trash), Path(os.path.realpath(cr.path / CHECKPOINTS_DIR))):
                    raise UsageError("the trash folder must not be inside the run's checkpoints/ folder", e.trash)
            cr.journal(
                {
                    "action": "plan",
                    "delete": [e.checkpoint for e in doomed],
                    "finish": [e.checkpoint for e in pending],
                    "keep": {e.checkpoint: list(e.kept_by) for e in p.entries if e.action == "keep"},
                    "trash": {e.checkpoint: e.trash for e in pending + doomed},
                    "mode": p.mode,
                }
            )
            if doomed:
                _record_pruned(cr, p, doomed)
            for e in pending:
                if e.path.parent.name == TRASH_DIR:
                    tfd = cr.trash_fd(create=False)
                    if tfd is None:
                        raise UsageError("the trash folder vanished", e.path.parent)
                    try:
                        _finish_one(cr, e, tfd, e.checkpoint, run_name, step)
                    finally:
                        os.close(tfd)
                else:
                    _finish_one(cr, e, cr.ckpt_fd, e.path.name, run_name, step)
                done.append(e.checkpoint)
                cr.journal({"action": "moved" if e.trash else "deleted", "checkpoint": e.checkpoint, "finished": True})
            for n, e in enumerate(doomed, start=1):
                if cr.identity(e.checkpoint) != e.identity:
                    raise UsageError(f"{e.checkpoint} changed since it was planned (replaced or made a link); stopped", run.path)
                tfd = cr.trash_fd(create=True)
                assert tfd is not None
                try:
                    if os.path.lexists(cr.path / CHECKPOINTS_DIR / TRASH_DIR / e.checkpoint):
                        raise UsageError(f"{e.checkpoint} is already in {TRASH_DIR}; run prune --resume first", run.path)
                    if p.mode == "all":
                        os.rename(e.checkpoint, e.checkpoint, src_dir_fd=cr.ckpt_fd, dst_dir_fd=tfd)
                    else:
                        move_weights(cr.ckpt_fd, e.checkpoint, tfd, NON_WEIGHT_FILES, e.identity, cr.path / CHECKPOINTS_DIR)
                    step()
                    if crash_after and n >= crash_after:
                        os._exit(99)  # test hook: die between the rename and the removal, like a kill
                    _finish_one(cr, e, tfd, e.checkpoint, run_name, step)
                finally:
                    os.close(tfd)
                done.append(e.checkpoint)
                cr.journal({"action": "moved" if e.trash else "deleted", "checkpoint": e.checkpoint})
            try:
                os.rmdir(TRASH_DIR, dir_fd=cr.ckpt_fd)
            except OSError:
                pass  # not there, or not empty (never deletes what it did not put there)
        except KeyboardInterrupt:
            raise PruneInterrupted(f"interrupted; {_left(run, p, done)}", run.path) from None
        except CrossDeviceError as exc:
            raise CrossDeviceError(f"{exc.problem}; {_left(run, p, done)}", exc.path) from None
        except CkptauditError as exc:
            raise type(exc)(f"{exc.problem}; {_left(run, p, done)}", exc.path) from None
        except RecursionError:
            raise UsageError(f"a checkpoint is nested too deeply to delete safely; {_left(run, p, done)}", run.path) from None
        except OSError as exc:
            if os.environ.get("CKPTAUDIT_DEBUG"):
                raise
            where = f" ({exc.filename})" if exc.filename else ""
            raise UsageError(
                f"stopped: {disk_message(exc)}{where}; nothing kept was lost; fix the cause first; {_left(run, p, done)}",
                run.path,
            ) from None
    return replace(p, executed=True, deleted=tuple(done))
