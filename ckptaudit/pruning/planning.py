"""Deciding what a prune keeps, and why: the keep rules (top K per metric, newest N, every
Nth epoch, ``chosen``, pins), what inside the run refers to a checkpoint (aliases,
provenance files), trash left by an interrupted prune, and the bytes each deletion would
really free (hard links counted once). Reads the run; changes nothing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MetricError, RunFormatError, UsageError
from ..metrics.evaluation import iter_scores
from ..metrics.spec import MetricSpec
from ..picking import PROVENANCE_SUFFIX
from ..ranking import order_scores
from ..store.pins import PINS_FILE, read_pins
from ..store.prunefs import (
    LEGACY_TRASH_PREFIX,
    TRASH_DIR,
    CrossDeviceError,
    foreign_device,
    read_journal,
)
from ..store.reader import CHECKPOINTS_DIR, Run
from ..store.safeio import read_json
from ..store.weights import NON_WEIGHT_FILES
from .entries import PlanEntry, PrunePlan
from .records import _finite

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
    # combine (issue 22): members that a combined checkpoint (ensemble, unexported average) still needs
    from ..combining.protection import member_reasons

    for name, why in member_reasons(run, [n for n, r in reasons.items() if "pinned" in r]).items():
        if name in reasons:
            reasons[name] += why
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


def _real_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents
