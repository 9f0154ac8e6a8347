"""``prune`` of a run on object storage (``ckptaudit prune s3://bucket/runs/exp1 --metric ...``).

What is kept is decided exactly as locally: the run is mirrored into a local folder
(:func:`~ckptaudit.store.remotewrite.download_run`: metadata and predictions, weights as
sparse placeholders of their sizes) and :func:`~ckptaudit.pruning.planning.plan` judges it.
The dry run (the default) prints that plan. With ``yes`` (object stores have no rename):

1. the journal object ``RUN/.ckptaudit-prune-journal.json`` is put (one atomic put): the
   mode, and for each doomed checkpoint the exact object keys to delete, relative to the
   run, in deletion order, with the records for the pruned file;
2. the run's pruned file (``ckptaudit-pruned.json``) is updated with those records;
3. per checkpoint: by default its weight objects only (``meta.json`` and the predictions
   stay, so it stays a candidate of every statistic); with ``--all`` its ``meta.json`` FIRST
   (readers stop seeing it at once), then its other objects;
4. the journal object is removed.

A kill at any point leaves either the untouched run, or the journal; the next ``prune``
(or ``prune --resume``) finishes the journal before anything else. Every key is checked to
lie inside ``RUN/checkpoints/NAME/`` of a journaled name before it is deleted (the journal
is data read from the store, never an instruction to act elsewhere), and in the default mode
a ``meta.json`` or predictions key is never deleted. Uncommitted folders (no ``meta.json``)
older than ``CKPTAUDIT_REMOTE_GRACE_S`` seconds (default 3600: a live writer's upload is
younger) are journaled and removed the same way.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import CkptauditError, MetricError, UsageError
from ..store.pruned import PRUNED_FILE, PRUNED_FORMAT, PrunedCheckpoint, parse_pruned
from ..store.reader import CHECKPOINTS_DIR, read_run
from ..store.remote import COMMIT_OBJECT, filesystem, is_remote
from ..store.remotelist import remote_errors
from ..store.remotewrite import (
    JOURNAL_OBJECT,
    check_key,
    checkpoint_objects,
    download_run,
    grace_seconds,
    in_progress,
    list_run,
    scratch_folder,
)
from ..store.weights import NON_WEIGHT_FILES
from .entries import PlanEntry, PrunePlan
from .execution import STEP_DELAY_ENV
from .planning import plan
from .records import _finite

JOURNAL_FORMAT = "ckptaudit-remote-prune/1"


def split_paths(paths: Sequence[str | Path]) -> tuple[list[str | Path], list[str]]:
    """The local paths and the URLs among ``paths`` (each pruned by its own machinery)."""
    local: list[str | Path] = []
    urls: list[str] = []
    for given in paths:
        text = os.fspath(given)
        if isinstance(given, Path) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:/[^/]", text):
            text = text.replace(":/", "://", 1)  # a URL that went through Path() (s3:/b/run)
        if is_remote(text):
            urls.append(text.rstrip("/"))
        else:
            local.append(given)
    return local, urls


def _step() -> None:
    delay = float(os.environ.get(STEP_DELAY_ENV, "0") or 0)
    if delay:
        time.sleep(delay)  # test hook: widens the window a kill lands in


def _doomed_keys(files: dict[str, Any], name: str, mode: str) -> list[str]:
    """A checkpoint's keys to delete: its weights, or (``all``) meta.json first then the rest."""
    keys = sorted(files)
    if mode == "weights":
        chosen = [k for k in keys if k not in NON_WEIGHT_FILES]
    else:
        chosen = ([COMMIT_OBJECT] if COMMIT_OBJECT in files else []) + [k for k in keys if k != COMMIT_OBJECT]
    return [f"{CHECKPOINTS_DIR}/{name}/{k}" for k in chosen]


def _read_journal(fs: Any, root: str, url: str) -> dict[str, Any] | None:
    """The journal object, checked: None when there is none; unreadable is an error."""
    try:
        raw = fs.cat_file(check_key(root, JOURNAL_OBJECT))
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("format") != JOURNAL_FORMAT or data.get("mode") not in ("weights", "all"):
        raise UsageError(f"{JOURNAL_OBJECT} is not a prune journal this ckptaudit wrote; inspect it, then remove it", url)
    for section in ("checkpoints", "uncommitted"):
        entries = data.setdefault(section, {})
        if not isinstance(entries, dict):
            raise UsageError(f"{JOURNAL_OBJECT}: {section!r} must map names to keys", url)
        for name, keys in entries.items():
            if not isinstance(keys, list) or "/" in name or name in ("", ".", ".."):
                raise UsageError(f"{JOURNAL_OBJECT}: bad entry {name!r}", url)
            for key in keys:
                # NOTE: only keys inside RUN/checkpoints/NAME/ are ever deleted; the default mode
                # never deletes what keeps a committed checkpoint a candidate (meta.json, predictions)
                inside = isinstance(key, str) and key.startswith(f"{CHECKPOINTS_DIR}/{name}/")
                if not inside:
                    raise UsageError(f"{JOURNAL_OBJECT}: refusing key {key!r} for {name}", url)
                check_key(root, key)
                if section == "checkpoints" and data["mode"] == "weights" and key.count("/") == 2:
                    if key.rsplit("/", 1)[1] in NON_WEIGHT_FILES:
                        raise UsageError(f"{JOURNAL_OBJECT}: refusing key {key!r} in a weights-only prune", url)
    if not isinstance(data.get("pruned", {}), dict):
        raise UsageError(f"{JOURNAL_OBJECT}: 'pruned' must map names to records", url)
    return data


def _write_pruned(fs: Any, root: str, records: dict[str, Any]) -> None:
    """Merge records into the run's pruned file (one whole-object put; idempotent)."""
    try:
        current = parse_pruned(json.loads(fs.cat_file(check_key(root, PRUNED_FILE)).decode("utf-8")), PRUNED_FILE)
    except FileNotFoundError:
        current = {}
    merged = {n: r.as_dict() for n, r in current.items()}
    merged.update(records)
    data = {"format": PRUNED_FORMAT, "checkpoints": dict(sorted(merged.items()))}
    parse_pruned(data, PRUNED_FILE)  # the journal's records are data: what is written must read back
    fs.pipe_file(check_key(root, PRUNED_FILE), (json.dumps(data, indent=1, allow_nan=False) + "\n").encode("utf-8"))


def _carry_out(fs: Any, root: str, url: str, journal: dict[str, Any]) -> list[str]:
    """Steps 2 to 4 of the module's list, from a checked journal; returns the names done."""
    if journal.get("pruned"):
        _write_pruned(fs, root, journal["pruned"])
        _step()
    there = set(list_run(fs, root))
    done = []
    for name, keys in journal["checkpoints"].items():
        present = [k for k in keys if k in there]
        if present and present[0].endswith("/" + COMMIT_OBJECT) and journal["mode"] == "all":
            fs.rm_file(check_key(root, present[0]))  # un-commit first: readers stop seeing it
            _step()
            present = present[1:]
        if present:
            fs.rm([check_key(root, k) for k in present])
            _step()
        done.append(name)
    for name, keys in journal["uncommitted"].items():
        if f"{CHECKPOINTS_DIR}/{name}/{COMMIT_OBJECT}" in there:
            continue  # committed meanwhile: a writer finished it, nothing to clean
        present = [k for k in keys if k in there]
        if present:
            fs.rm([check_key(root, k) for k in present])
            _step()
    fs.rm_file(check_key(root, JOURNAL_OBJECT))
    return done


def _finish_entries(journal: dict[str, Any] | None, leftovers: dict[str, list[str]], listing: dict[str, Any]) -> list[PlanEntry]:
    rows = []
    for name, keys in {**(journal or {}).get("checkpoints", {}), **(journal or {}).get("uncommitted", {})}.items():
        size = sum(int(listing.get(k, {}).get("size") or 0) for k in keys)
        rows.append(PlanEntry(name, None, "finish", (), size, Path(name), note="left by an interrupted prune (journal)"))
    for name, keys in leftovers.items():
        size = sum(int(listing.get(k, {}).get("size") or 0) for k in keys)
        rows.append(PlanEntry(name, None, "finish", (), size, Path(name), note="uncommitted objects of a crashed write"))
    return rows


def prune_url(
    url: str,
    metrics: Sequence[str],
    *,
    keep: int,
    keep_last: int = 1,
    keep_every: int | None = None,
    mode: str | None = None,
    yes: bool = False,
    whole: bool = False,
) -> PrunePlan:
    """Plan (and with ``yes`` carry out, journaled) a prune of the run at ``url``, with the
    keep rules of :func:`~ckptaudit.pruning.prune` judged by the same planning code."""
    from ..metrics.evaluation import parse_metrics

    if not metrics:
        raise MetricError("prune needs at least one --metric: it never guesses what to keep")
    fs, root = filesystem(url)
    finished: list[str] = []
    with remote_errors(url):
        journal = _read_journal(fs, root, url)
        if yes and journal is not None:
            finished = _carry_out(fs, root, url, journal)  # an interrupted prune first
            journal = None
        dest = scratch_folder("ckptaudit-prune-")
        listing = download_run(url, dest)
    try:
        run = read_run(dest, name=url)
        specs = parse_metrics(metrics, [run], mode)
        p = plan(run, specs, keep=keep, keep_last=keep_last, keep_every=keep_every, whole=whole)
    except CkptauditError as exc:  # named by the URL, never by the mirror
        path = exc.path if not (exc.path or "").startswith(str(dest)) else url + exc.path[len(str(dest)) :]  # type: ignore[index]
        raise type(exc)(exc.problem, path) from None
    pending = {**(journal or {}).get("checkpoints", {}), **(journal or {}).get("uncommitted", {})}
    leftovers = {n: ks for n, ks in in_progress(listing, grace_seconds()).items() if n not in pending}
    p = replace(p, entries=p.entries + tuple(_finish_entries(journal, leftovers, listing)))
    if not yes:
        return p
    doomed = [e for e in p.entries if e.action == "delete"]
    if not doomed and not leftovers:
        return replace(p, executed=True, deleted=tuple(finished))
    objects = checkpoint_objects(listing)
    by_name = {c.name: c for c in run.checkpoints}
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    pruned = {}
    for e in doomed:
        c = by_name[e.checkpoint]
        logged = {k: _finite(v) for k, v in c.logged.items()}
        pruned[e.checkpoint] = PrunedCheckpoint(e.checkpoint, p.mode, e.epoch, c.step, now, dict(e.scores), logged).as_dict()
    new_journal = {
        "format": JOURNAL_FORMAT,
        "run": url,
        "mode": p.mode,
        "time": now,
        "checkpoints": {e.checkpoint: _doomed_keys(objects[e.checkpoint], e.checkpoint, p.mode) for e in doomed},
        # folders without meta.json (nothing a reader sees): all their objects go, unless committed by then
        "uncommitted": leftovers,
        "pruned": pruned,
    }
    with remote_errors(url):
        fs.pipe_file(check_key(root, JOURNAL_OBJECT), json.dumps(new_journal, indent=1).encode("utf-8"))
        _step()
        _read_journal(fs, root, url)  # the checks a resumed prune applies, before the first delete
        done = _carry_out(fs, root, url, new_journal)
    return replace(p, executed=True, deleted=tuple(finished + [n for n in done if n in by_name]))


def resume_url(url: str) -> PrunePlan:
    """Finish what an interrupted prune journaled, deleting nothing else."""
    fs, root = filesystem(url)
    with remote_errors(url):
        journal = _read_journal(fs, root, url)
        listing = list_run(fs, root)
        entries = _finish_entries(journal, {}, listing)
        done = _carry_out(fs, root, url, journal) if journal is not None else []
        dest = scratch_folder("ckptaudit-prune-")
        download_run(url, dest)
    return PrunePlan(run=read_run(dest, name=url), entries=tuple(entries), metrics=(), executed=True, deleted=tuple(done))
