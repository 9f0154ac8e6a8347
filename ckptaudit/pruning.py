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
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import CkptauditError, MetricError, PruneInterrupted, RunFormatError, UsageError
from .metrics.evaluation import iter_scores, parse_metrics
from .metrics.spec import MetricSpec
from .picking import PROVENANCE_SUFFIX
from .ranking import order_scores
from .store.pins import PINS_FILE, read_pins
from .store.pruned import PRUNED_FILE, PrunedCheckpoint, read_pruned, write_pruned
from .store.prunefs import (
    LEGACY_TRASH_PREFIX,
    LOCK_FILE,
    LOG_FILE,
    TRASH_DIR,
    ConfinedRun,
    CrossDeviceError,
    RunLock,
    copy_tree,
    disk_message,
    foreign_device,
    move_weights,
    read_journal,
    real_path_problem,
    remove_tree,
)
from .store.reader import CHECKPOINTS_DIR, META_FILE, RUN_FILE, Run, discover, is_in_progress, read_run
from .store.safeio import read_json
from .store.weights import NON_WEIGHT_FILES

#: kept for code that named the trash entries of earlier versions
TRASH_PREFIX = LEGACY_TRASH_PREFIX
#: test hook: exit abruptly after this many checkpoints were moved to trash (simulates a kill)
CRASH_ENV = "CKPTAUDIT_TEST_CRASH_AFTER"
#: test hook: seconds to wait after taking the lock (lets a test race two prunes)
PAUSE_ENV = "CKPTAUDIT_TEST_PAUSE"
#: test hook: seconds to wait after every rename and every removed file (random kill tests)
STEP_DELAY_ENV = "CKPTAUDIT_TEST_STEP_DELAY"
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


@dataclass(frozen=True)
class PlanEntry:
    """One checkpoint (or alias, or trash entry) in a prune plan."""

    checkpoint: str
    epoch: int | None
    #: "keep", "delete", "finish" (trash left by an interrupted prune) or "alias" (a link, untouched)
    action: str
    kept_by: tuple[str, ...]
    size: int
    path: Path
    note: str = ""
    #: where "delete"/"finish" moves the checkpoint (``--trash``); None deletes it
    trash: str | None = None
    #: (st_dev, st_ino) of the folder when planned: execution refuses a swapped folder
    identity: tuple[int, int] | None = field(default=None, compare=False, repr=False)
    #: bytes really freed by deleting only the weights / the whole folder (hard links whose
    #: other link survives free nothing); for "keep" rows what each would free were it doomed
    size_weights: int = 0
    size_all: int = 0
    #: what the checkpoint scored under each metric of the plan (recorded by --all)
    scores: dict[str, float | None] = field(default_factory=dict, compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON shape of a plan row."""
        return {
            "checkpoint": self.checkpoint,
            "epoch": self.epoch,
            "action": self.action,
            "kept_by": list(self.kept_by),
            "size": self.size,
            "size_weights": self.size_weights,
            "size_all": self.size_all,
            "note": self.note,
            "trash": self.trash,
        }


@dataclass(frozen=True)
class PrunePlan:
    """What a prune of one run keeps and deletes, and why."""

    run: Run
    entries: tuple[PlanEntry, ...]
    metrics: tuple[str, ...]
    executed: bool = False
    deleted: tuple[str, ...] = field(default=())
    #: the checkpoint names a checkpoint path limited the prune to (None: the whole run)
    scope: tuple[str, ...] | None = None
    #: "weights" (the default: weights go, predictions and meta.json stay) or "all" (--all)
    mode: str = "weights"
    #: bytes each mode would really free (the dry run shows both)
    reclaimable: dict[str, int] = field(default_factory=dict)

    @property
    def reclaimed(self) -> int:
        """Bytes freed by the deletions (and by finishing old trash)."""
        return sum(e.size for e in self.entries if e.action in ("delete", "finish"))

    @property
    def notes(self) -> list[str]:
        """Lines for the output: both sizes, and what the prune does to the run's statistics."""
        doomed = [e for e in self.entries if e.action == "delete"]
        candidates = sum(1 for e in self.entries if e.action in ("keep", "delete"))
        out = []
        if self.reclaimable:
            out.append(
                f"{self.run.name}: weights only (the default) frees {_human(self.reclaimable.get('weights', 0))}; "
                f"--all (whole folders) frees {_human(self.reclaimable.get('all', 0))}"
            )
        if doomed and self.mode == "weights":
            out.append(
                f"{self.run.name}: predictions and meta.json of the {len(doomed)} pruned checkpoint(s) stay, "
                "so every selection statistic still counts them (unchanged)"
            )
        elif doomed:
            left = candidates - len(doomed)
            out.append(
                f"{self.run.name}: --all {'deletes' if not self.executed else 'deleted'} {len(doomed)} candidate(s) whole; "
                f"their scores are recorded in {PRUNED_FILE}, but the selection statistics (tie set, expected on new "
                f"data) will count {left} of {candidates} candidates and CHANGE (audit finding candidates-deleted)"
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON shape of the plan."""
        return {
            "run": self.run.name,
            "dry_run": not self.executed,
            "metrics": list(self.metrics),
            "scope": None if self.scope is None else list(self.scope),
            "entries": [e.as_dict() for e in self.entries],
            "mode": self.mode,
            "reclaimed_bytes": self.reclaimed,
            "reclaimable_bytes": dict(self.reclaimable),
            "notes": self.notes,
            "deleted": list(self.deleted),
        }


def _human(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB" if n >= 1e3 else f"{n} bytes"


#: a regular file (or link) under a checkpoint: (st_dev, st_ino) -> (links, size), and
#: whether it is part of the weights (anything but the top-level predictions and meta.json)
_FileInfo = tuple[tuple[int, int], int, int, bool]


def _files(path: Path) -> list[_FileInfo]:
    """Every non-folder entry under ``path`` (links never followed), with its inode,
    link count, size and whether prune's default (weights only) would delete it."""
    out: list[_FileInfo] = []
    for root, dirs, files in os.walk(path):
        top = root == str(path)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            out.append(((st.st_dev, st.st_ino), st.st_nlink, st.st_size, not (top and name in NON_WEIGHT_FILES)))
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
    return out


def _freed(doomed: dict[str, list[_FileInfo]], weights_only: bool) -> dict[str, int]:
    """Bytes really freed per doomed checkpoint: a file counts only when every one of its
    hard links goes (a weights file also linked from a kept checkpoint frees nothing),
    and once, however many doomed checkpoints link it."""
    links: dict[tuple[int, int], int] = {}
    for infos in doomed.values():
        for key, _, _, weight in infos:
            if weight or not weights_only:
                links[key] = links.get(key, 0) + 1
    counted: set[tuple[int, int]] = set()
    out = {}
    for name, infos in doomed.items():
        total = 0
        for key, nlink, size, weight in infos:
            if (weight or not weights_only) and key not in counted and links[key] >= nlink:
                counted.add(key)
                total += size
        out[name] = total
    return out


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


def _alias_target(link: Path, ckpt_dir: Path, names: set[str]) -> str | None:
    """The checkpoint a link inside ``checkpoints/`` points at, hop by hop, never leaving
    ``checkpoints/`` (a hop outside is never followed): None when it points elsewhere."""
    here = os.path.realpath(ckpt_dir)
    current = link
    for _ in range(40):
        target = os.readlink(current)
        nxt = os.path.normpath(os.path.join(os.path.dirname(current), target))
        parent = os.path.dirname(nxt)
        if parent != str(ckpt_dir) and os.path.realpath(parent) == here:
            nxt = os.path.join(str(ckpt_dir), os.path.basename(nxt))
        elif parent != str(ckpt_dir) and not _within(Path(os.path.realpath(parent)), Path(here)):
            return None
        if os.path.dirname(nxt) != str(ckpt_dir):
            # a link into a checkpoint (best.pt -> epoch-0001/model.pt) protects that checkpoint
            rel = os.path.relpath(nxt, ckpt_dir).split(os.sep)
            if len(rel) > 1 and rel[0] in names and rel[0] not in ("", ".", ".."):
                return rel[0]
            return None
        nxt_path = ckpt_dir / os.path.basename(nxt)
        if nxt_path.is_symlink():
            current = nxt_path
            continue
        return nxt_path.name if nxt_path.name in names else None
    return None


@dataclass
class _References:
    """What inside the run refers to a checkpoint: aliases and provenance files."""

    aliased: dict[str, list[str]] = field(default_factory=dict)
    provenance: dict[str, list[str]] = field(default_factory=dict)
    alias_rows: list[PlanEntry] = field(default_factory=list)
    alias_of: dict[str, str] = field(default_factory=dict)


def _references(run: Run) -> _References:
    """One walk of the run (links are never followed): every symbolic link that points at
    a checkpoint folder or into one (an alias), and every provenance file."""
    refs = _References()
    names = {c.name for c in run.checkpoints}
    ckpt_dir = Path(os.path.abspath(run.path / CHECKPOINTS_DIR))
    real_ckpt = os.path.realpath(ckpt_dir)
    # aliases directly inside checkpoints/: best -> epoch-0009
    if ckpt_dir.is_dir():
        for entry in sorted(os.scandir(ckpt_dir), key=lambda e: e.name):
            # NOTE: a link's own name never hides it: `.best` or `best.tmp` -> epoch-0001 is an
            # alias too (only folders with such names are in-progress checkpoints)
            if not entry.is_symlink():
                continue
            target = _alias_target(ckpt_dir / entry.name, ckpt_dir, names)
            if target is not None:
                refs.aliased.setdefault(target, []).append(f"aliased:{entry.name}")
                refs.alias_of[entry.name] = target
                note = f"alias of {target}"
            else:
                note = f"alias pointing outside the run or at no checkpoint ({os.readlink(entry.path)}): never followed"
            refs.alias_rows.append(PlanEntry(entry.name, None, "alias", (), 0, Path(entry.path), note=note))
    here = Path(run.path).resolve()
    for root, dirs, files in os.walk(run.path):
        dirs[:] = [d for d in dirs if not d.startswith(LEGACY_TRASH_PREFIX) and d != TRASH_DIR]
        rel_root = Path(root).relative_to(run.path)
        for name in dirs + files:
            path = Path(root) / name
            rel = rel_root / name
            if path.is_symlink():
                if rel.parent == Path(CHECKPOINTS_DIR):
                    continue  # handled above
                # a link elsewhere in the run (RUN/best, or a weights file deduplicated
                # into another checkpoint) that resolves into a checkpoint keeps it
                real = Path(os.path.realpath(path))
                if real.parent == Path(real_ckpt) or Path(real_ckpt) in real.parents:
                    target = real.relative_to(real_ckpt).parts[0]
                    owner = rel.parts[1] if len(rel.parts) > 2 and rel.parts[0] == CHECKPOINTS_DIR else None
                    if target in names and target != owner:
                        refs.aliased.setdefault(target, []).append(f"aliased:{rel}")
                continue
            if name in files and name.endswith(PROVENANCE_SUFFIX):
                # NOTE: bounded and regular files only (read_json): a FIFO or a sparse file of
                # gigabytes is one error; prune refuses rather than guess what it protects.
                try:
                    data = read_json(path)
                except (OSError, RunFormatError) as exc:
                    detail = f": {exc.problem}" if isinstance(exc, RunFormatError) else ""
                    raise RunFormatError(f"unreadable provenance file{detail} (fix or remove it before pruning)", path) from None
                if not isinstance(data, dict) or "checkpoint" not in data:
                    continue
                recorded = Path(str(data.get("run", "")))
                # NOTE: a renamed or moved run still honours its provenance files; only a
                # file that names another existing run is about that run instead.
                if recorded.resolve() == here or not recorded.is_dir():
                    refs.provenance.setdefault(str(data["checkpoint"]), []).append(f"provenance:{rel}")
    return refs


def _journal_trash(run: Run) -> dict[str, str | None]:
    """For each checkpoint name, the trash folder the latest plan in the journal gave it."""
    out: dict[str, str | None] = {}
    for record in read_journal(run.path):
        if record.get("action") != "plan":
            continue
        per_name = record.get("trash")
        if isinstance(per_name, dict):
            out.update({str(k): None if v is None else str(v) for k, v in per_name.items()})
            continue
        trash_dir = record.get("trash_dir")
        for name in list(record.get("delete") or []) + list(record.get("finish") or []):
            out[str(name)] = None if trash_dir is None else str(trash_dir)
    return out


def _trash_destination(trash_dir: Path | None) -> str | None:
    return None if trash_dir is None else os.path.realpath(trash_dir)


def _pending_trash(run: Run, trash_dir: Path | None = None, strict: bool = True) -> list[PlanEntry]:
    """Trash entries an interrupted prune left in ``checkpoints/``, to be finished the way
    the journal recorded (moved to its trash folder, or deleted)."""
    ckpt_dir = run.path / CHECKPOINTS_DIR
    found: list[tuple[str, Path]] = []
    if (ckpt_dir / TRASH_DIR).is_dir() and not (ckpt_dir / TRASH_DIR).is_symlink():
        found += [(e.name, Path(e.path)) for e in os.scandir(ckpt_dir / TRASH_DIR)]
    found += [
        (e.name[len(LEGACY_TRASH_PREFIX) :], Path(e.path)) for e in os.scandir(ckpt_dir) if e.name.startswith(LEGACY_TRASH_PREFIX)
    ]
    recorded = _journal_trash(run) if found else {}
    given = _trash_destination(trash_dir)
    entries = []
    for name, path in sorted(found):
        dest = recorded.get(name)
        # NOTE: the journal is data read from disk, never an instruction: a folder outside the
        # run is used only when this command line names it (--trash), else nothing moves.
        if dest is not None and dest != given and strict:
            raise UsageError(
                f"the journal says an interrupted prune was moving {name} to {dest}; prune acts outside the run "
                f"only where its command line says so: check that folder, then finish with --resume --trash DIR "
                "(`ckptaudit prune RUN --resume --trash DIR`)",
                run.path,
            )
        entries.append(PlanEntry(name, None, "finish", (), _size(path), path, note="left by an interrupted prune", trash=given))
    return entries


def plan(
    run: Run,
    specs: Sequence[MetricSpec],
    *,
    keep: int,
    keep_last: int = 1,
    keep_every: int | None = None,
    scope: Sequence[str] | None = None,
    trash_dir: str | Path | None = None,
    whole: bool = False,
) -> PrunePlan:
    """Decide, for every checkpoint of ``run``, whether a rule keeps it.

    A doomed checkpoint loses its weights only (everything but meta.json and the
    predictions), so that it stays a candidate of every later statistic; with ``whole``
    (``--all``) its folder goes, and what it scored is recorded in the run.

    With ``scope`` only those checkpoints are candidates (the rules still rank the whole
    run). With ``trash_dir`` doomed checkpoints are moved there instead of deleted.
    """
    reasons: dict[str, list[str]] = {c.name: [] for c in run.checkpoints}
    notes: dict[str, str] = {}
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
                notes[s.checkpoint.name] = "; ".join(s.notes)
    # NOTE: a logged metric needs no val.npz to be ranked, but a checkpoint whose val.npz
    # is missing or corrupt cannot be re-scored later under any other metric: kept.
    for s in scores:
        name = s.checkpoint.name
        if "unscorable" in reasons[name]:
            continue
        if not s.checkpoint.has_split("val"):
            reasons[name].append("unscorable")
            notes[name] = "no val.npz"
        elif s.unreadable:
            reasons[name].append("unscorable")
            notes[name] = "; ".join(s.notes)
    newest = sorted(run.checkpoints, key=lambda c: c.order_key)[-keep_last:] if keep_last > 0 else []
    for c in newest:
        reasons[c.name].append(f"last-{keep_last}")
    if keep_every:
        for c in run.checkpoints:
            if c.epoch % keep_every == 0:
                reasons[c.name].append(f"every-{keep_every}")
    refs = _references(run)
    if run.chosen is not None:
        chosen = refs.alias_of.get(run.chosen, run.chosen)
        if chosen in reasons:
            reasons[chosen].append("chosen")
    for pin in read_pins(run.path):
        name = refs.alias_of.get(pin.checkpoint, pin.checkpoint)
        if name not in reasons and not _real_folder(run.path / CHECKPOINTS_DIR / name):
            raise RunFormatError(
                f"a pin names {pin.checkpoint!r}, which is no checkpoint folder of this run: prune cannot tell "
                f"what it protects; fix or remove that pin (ckptaudit unpin RUN/checkpoints/NAME)",
                run.path / PINS_FILE,
            )
        if name in reasons and "pinned" not in reasons[name]:
            reasons[name].append("pinned")
    for name, why in refs.aliased.items():
        reasons[name] += why
    for name, sources in refs.provenance.items():
        name = refs.alias_of.get(name, name)
        if name in reasons:
            reasons[name] += sources
    wanted = None if scope is None else set(scope)
    dest = _trash_destination(None if trash_dir is None else Path(trash_dir))
    ckpt_dir = run.path / CHECKPOINTS_DIR
    dev = os.lstat(ckpt_dir).st_dev
    entries = []
    scored = {s.checkpoint.name: s for s in scores}
    considered = [c for c in run.checkpoints if wanted is None or c.name in wanted]
    infos = {c.name: _files(c.path) for c in considered}
    weights_left = {c.name for c in considered if any(w for *_, w in infos[c.name])}
    doomed_names = [c.name for c in considered if not reasons[c.name] and (whole or c.name in weights_left)]
    freed = {
        "weights": _freed({n: infos[n] for n in doomed_names}, True),
        "all": _freed({n: infos[n] for n in doomed_names}, False),
    }
    # what each rule-less checkpoint would free alone, for the dry run's two sizes
    alone_w = _freed({c.name: infos[c.name] for c in considered if not reasons[c.name]}, True)
    alone_a = _freed({c.name: infos[c.name] for c in considered if not reasons[c.name]}, False)
    for c in considered:
        if not reasons[c.name] and not whole and c.name not in weights_left:
            notes[c.name] = "weights already deleted (predictions kept); --all deletes the folder"
        doomed = c.name in doomed_names
        if doomed and not whole:
            notes[c.name] = "weights only: predictions and meta.json stay"
        if doomed:
            foreign = foreign_device(c.path, dev)
            if foreign is not None:
                raise CrossDeviceError(
                    f"is a mount point (another device, or a bind mount) inside {c.name}, which the plan would "
                    "touch; prune never crosses a device boundary or a mount point: unmount it first",
                    foreign,
                )
        st = os.lstat(c.path)
        found = scored.get(c.name)
        entries.append(
            PlanEntry(
                c.name,
                c.epoch,
                "delete" if doomed else "keep",
                tuple(reasons[c.name]),
                freed["all" if whole else "weights"][c.name] if doomed else sum(i[2] for i in infos[c.name]),
                c.path,
                note=notes.get(c.name, ""),
                trash=dest if doomed else None,
                identity=(st.st_dev, st.st_ino),
                size_weights=freed["weights"].get(c.name, alone_w.get(c.name, 0)),
                size_all=freed["all"].get(c.name, alone_a.get(c.name, 0)),
                scores={} if found is None else {sp.text: _finite(v) for sp, v in zip(specs, found.values, strict=True)},
            )
        )
    if wanted is None:
        entries += refs.alias_rows
        pending = _pending_trash(run, None if trash_dir is None else Path(trash_dir))
        for e in pending:
            foreign = foreign_device(e.path, dev)
            if foreign is not None:
                raise CrossDeviceError("is a mount point (another device) inside a trash entry; unmount it first", foreign)
        entries += pending
    return PrunePlan(
        run=run,
        entries=tuple(entries),
        metrics=tuple(s.text for s in specs),
        scope=None if scope is None else tuple(scope),
        mode="all" if whole else "weights",
        reclaimable={
            "weights": sum(_freed({n: infos[n] for n in weights_left if not reasons[n]}, True).values()),
            "all": sum(_freed({c.name: infos[c.name] for c in considered if not reasons[c.name]}, False).values()),
        },
    )


def _finite(v: float | None) -> float | None:
    import math

    return None if v is None or not math.isfinite(v) else float(v)


def _real_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


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


def _record_pruned(cr: ConfinedRun, p: PrunePlan, doomed: list[PlanEntry]) -> None:
    """Record, before anything moves, which checkpoints lose their weights (or, with --all,
    their folder and what they scored) in the run's pruned file."""
    import datetime as _dt

    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    records = read_pruned(cr.path)
    by_name = {c.name: c for c in p.run.checkpoints}
    for e in doomed:
        c = by_name.get(e.checkpoint)
        logged = {} if c is None else {k: _finite(v) for k, v in c.logged.items()}
        records[e.checkpoint] = PrunedCheckpoint(
            e.checkpoint, p.mode, e.epoch, None if c is None else c.step, now, dict(e.scores), logged
        )
    write_pruned(cr.run_fd, cr.path, records)


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
            fresh = read_run(t.path, t.name)
            done.append(execute(plan(fresh, specs, scope=scope, **options)))
    return done


def resume(paths: Sequence[str | Path], *, trash_dir: str | Path | None = None) -> list[PrunePlan]:
    """Finish the trash left by interrupted prunes (moving what the journal says to move),
    deleting nothing else."""
    out = []
    for t in _targets(paths):
        _refuse_symlinked(t.path)
        with RunLock(t.path):
            run = read_run(t.path, t.name)
            p = PrunePlan(run=run, entries=tuple(_pending_trash(run, None if trash_dir is None else Path(trash_dir))), metrics=())
            out.append(execute(p))
    return out
