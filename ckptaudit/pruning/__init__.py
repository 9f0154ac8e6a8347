"""``prune``: delete the checkpoints no keep-rule protects, and never lose one it does.

Safety model (README "Pruning safely"):
- one plan, built by :func:`plan` and carried out as is by :func:`execute`: the dry run
  shows exactly what ``yes`` does (with ``yes`` the plan is rebuilt under the lock, from
  the run as it is then, and that same object is executed and returned);
- keep rules are a union: top K by each metric, the newest N, every Nth epoch, run.json
  ``chosen``, pins (``pick`` exports), aliases (symbolic links inside the run pointing at
  a checkpoint), anything a provenance file inside the run points at, and anything that
  cannot be scored (for a logged metric too: a missing or corrupt val.npz);
- a checkpoint path (``RUN/checkpoints/NAME``) limits the prune to that checkpoint; the
  rules are still judged against the whole run;
- one prune per run at a time (an OS lock, see :mod:`ckptaudit.prunefs`);
- only real folders directly inside ``checkpoints/`` are deleted, through descriptors,
  never through a symbolic link and never across a mount point;
- crash-safe: the plan is appended to ``prune-log.jsonl`` (fsync) first; each doomed
  checkpoint is then renamed into ``checkpoints/.ckptaudit-trash/`` (atomic) and only then
  removed or moved to ``--trash DIR``. An interrupted prune leaves whole checkpoints or
  trash entries, and the next prune (or ``--resume``) finishes the trash the way the
  journal recorded (deleted, or moved to the recorded trash folder).

Modules: :mod:`.entries` (the plan's shape), :mod:`.planning` (what is kept and why),
:mod:`.execution` (the journaled, crash-safe acts), :mod:`.records` (what deleted
candidates scored); this one holds the verbs ``prune`` and ``resume``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MetricError, RunFormatError, UsageError
from ..metrics.evaluation import parse_metrics
from ..store.pruned import clear_stale_temporaries
from ..store.prunefs import LEGACY_TRASH_PREFIX, LOCK_FILE, LOG_FILE, TRASH_DIR, RunLock, real_path_problem
from ..store.reader import CHECKPOINTS_DIR, META_FILE, RUN_FILE, discover, is_in_progress, read_run
from .entries import PlanEntry, PrunePlan
from .execution import CRASH_ENV as CRASH_ENV
from .execution import STEP_DELAY_ENV as STEP_DELAY_ENV
from .execution import execute
from .planning import _pending_trash, plan

#: kept for code that named the trash entries of earlier versions
TRASH_PREFIX = LEGACY_TRASH_PREFIX
#: test hook: seconds to wait after taking the lock (lets a test race two prunes)
PAUSE_ENV = "CKPTAUDIT_TEST_PAUSE"
#: test hook: a time.time() value to wait for before taking the lock (starts N prunes together)
LOCK_AT_ENV = "CKPTAUDIT_TEST_LOCK_AT"

__all__ = [
    "LOCK_FILE",
    "LOG_FILE",
    "TRASH_DIR",
    "PlanEntry",
    "PrunePlan",
    "RunLock",
    "execute",
    "is_in_progress",
    "plan",
    "prune",
    "resume",
]


@dataclass
class _Target:
    path: Path
    name: str
    scope: set[str] | None


def _targets(paths: Sequence[str | Path]) -> list[_Target]:
    """The runs to prune, each whole or limited to the checkpoint folders named."""
    out: dict[str, _Target] = {}
    for given in paths:
        # NOTE: absolute, so that `prune .` inside a checkpoint folder still means that checkpoint
        path = Path(os.path.abspath(given))
        ckpt_dir = path.parent
        if (
            ckpt_dir.name == CHECKPOINTS_DIR
            and (ckpt_dir.parent / RUN_FILE).is_file()
            and (path.is_symlink() or (path / META_FILE).is_file())
        ):
            if path.is_symlink():
                raise UsageError("is an alias (a symbolic link), not a checkpoint; name the checkpoint folder itself", path)
            if is_in_progress(path.name):
                raise RunFormatError("checkpoint is still being written (in-progress name)", path)
            key = os.path.abspath(ckpt_dir.parent)
            shown = Path(given).parent.parent if Path(given).name == path.name else ckpt_dir.parent
            target = out.setdefault(key, _Target(ckpt_dir.parent, str(shown), set()))
            if target.scope is not None:
                target.scope.add(path.name)
            continue
        for run in discover([given]):
            key = os.path.abspath(run.path)
            if key in out:
                out[key].scope = None
            else:
                out[key] = _Target(run.path, run.name, None)
    return list(out.values())


def _refuse_symlinked(path: Path) -> None:
    """Prune never acts through a symlink: not a symlinked run, parent, sweep or checkpoints/."""
    for p in (path, path / CHECKPOINTS_DIR):
        problem = real_path_problem(p)
        if problem:
            raise UsageError(problem, p)


def _wait_for_tests(env: str) -> None:
    if os.environ.get(env):
        import time

        value = float(os.environ[env])
        time.sleep(max(0.0, value - time.time()) if env == LOCK_AT_ENV else value)


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
    whole: bool = False,
) -> list[PrunePlan]:
    """Plan (and with ``yes`` carry out) a prune of every run under ``paths``.

    By default a doomed checkpoint loses only its weights (its predictions and meta.json
    stay, so the run's selection statistics do not change); ``whole`` (``--all``) deletes
    the folder and records what it scored.

    A path may be a run, a folder of runs, or checkpoint folders (``RUN/checkpoints/NAME``):
    then only those checkpoints may be deleted.
    """
    if not metrics:
        raise MetricError("prune needs at least one --metric: it never guesses what to keep")
    if keep < 1 and keep_last < 1 and not keep_every:
        raise UsageError("every keep rule is off: refusing to delete every checkpoint")
    from ..store.remotewrite import runs_under
    from .remote import prune_url, split_paths

    local, given = split_paths(paths)
    urls = list(dict.fromkeys(run for url in given for run in runs_under(url)))
    if urls:  # a run on object storage: the journaled object-store prune (docs/storage.md)
        if trash_dir is not None:
            raise UsageError("--trash moves folders on this machine; a run on object storage is pruned in place (journaled)")
        rules: dict[str, Any] = dict(keep=keep, keep_last=keep_last, keep_every=keep_every, mode=mode, yes=yes, whole=whole)
        return (prune(local, metrics, trash_dir=trash_dir, **rules) if local else []) + [
            prune_url(u, metrics, **rules) for u in urls
        ]
    targets = _targets(paths)
    for t in targets:
        _refuse_symlinked(t.path)
    runs = [read_run(t.path, t.name) for t in targets]
    specs = parse_metrics(metrics, runs, mode)
    options: dict[str, Any] = {
        "keep": keep,
        "keep_last": keep_last,
        "keep_every": keep_every,
        "trash_dir": trash_dir,
        "whole": whole,
    }
    scopes = [None if t.scope is None else sorted(t.scope) for t in targets]
    if not yes:
        return [plan(run, specs, scope=scope, **options) for run, scope in zip(runs, scopes, strict=True)]
    done = []
    for t, scope in zip(targets, scopes, strict=True):
        _wait_for_tests(LOCK_AT_ENV)
        # NOTE: plan under the lock, from the run as it is now, and execute that very plan.
        with RunLock(t.path):
            _wait_for_tests(PAUSE_ENV)
            clear_stale_temporaries(t.path)  # a killed prune's half-written record
            fresh = read_run(t.path, t.name)
            done.append(execute(plan(fresh, specs, scope=scope, **options)))
    return done


def resume(paths: Sequence[str | Path], *, trash_dir: str | Path | None = None) -> list[PrunePlan]:
    """Finish the trash left by interrupted prunes (moving what the journal says to move),
    deleting nothing else. A URL's run finishes its journal object (docs/storage.md)."""
    from .remote import resume_url, split_paths

    local, urls = split_paths(paths)
    if urls:
        if trash_dir is not None:
            raise UsageError("--trash moves folders on this machine; a run on object storage is pruned in place (journaled)")
        return (resume(local) if local else []) + [resume_url(u) for u in urls]
    out = []
    for t in _targets(paths):
        _refuse_symlinked(t.path)
        with RunLock(t.path):
            clear_stale_temporaries(t.path)
            run = read_run(t.path, t.name)
            p = PrunePlan(run=run, entries=tuple(_pending_trash(run, None if trash_dir is None else Path(trash_dir))), metrics=())
            out.append(execute(p))
    return out
