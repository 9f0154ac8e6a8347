"""``pick``: name the best checkpoint, place it, and record why (provenance).

The provenance file ``DEST.ckptaudit.json`` says which run and checkpoint were chosen,
under which metric spec, with what value and 95% interval, which audit findings (warning
or worse) stood against the run, and the sha256 of every weights file, so a later gate
(`ckptaudit check --chosen DEST.ckptaudit.json`) can verify the choice.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from . import __version__
from .errors import UsageError
from .ranking import order_scores
from .runs import Checkpoint, Run, Skipped
from .scoring import CheckpointScore

PROVENANCE_SUFFIX = ".ckptaudit.json"
#: files of a checkpoint folder that hold predictions and metadata, not the model
NON_WEIGHT_FILES = {"meta.json", "val.npz", "train.npz"}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weight_files(checkpoint: Path) -> list[Path]:
    """Every file of a checkpoint folder except its predictions and meta.json, sorted."""
    out = []
    for root, dirs, files in os.walk(checkpoint):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if path.parent == checkpoint and name in NON_WEIGHT_FILES:
                continue
            out.append(path)
    return out


def weight_hashes(checkpoint: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every weights file of a checkpoint."""
    return {str(p.relative_to(checkpoint)): sha256_file(p) for p in weight_files(checkpoint)}


@dataclass(frozen=True)
class Pick:
    """The chosen checkpoint of a run (or of a sweep with ``across``) and the evidence."""

    run: Run
    checkpoint: Checkpoint
    metric: str
    mode: str
    value: float
    interval: tuple[float, float] | None = None
    findings: tuple[dict[str, Any], ...] = ()
    dest: Path | None = None
    provenance: Path | None = None
    hashes: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The provenance record (also the JSON output of `pick`)."""
        return {
            "ckptaudit": __version__,
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "run": str(self.run.path.resolve()),
            "checkpoint": self.checkpoint.name,
            "epoch": self.checkpoint.epoch,
            "step": self.checkpoint.step,
            "metric": self.metric,
            "mode": self.mode,
            "value": self.value,
            "ci95": list(self.interval) if self.interval else None,
            "findings": list(self.findings),
            "files": self.hashes or weight_hashes(self.checkpoint.path),
            "dest": None if self.dest is None else str(self.dest),
        }


def _best(scores: Sequence[CheckpointScore], runs: Sequence[Run], spec_index: int, specs) -> CheckpointScore:
    ordered = order_scores(scores, specs[spec_index], spec_index)
    if not ordered or ordered[0].values[spec_index] is None:
        raise UsageError(f"no checkpoint could be scored by {specs[spec_index].text}", runs[0].name if runs else None)
    return ordered[0]


@dataclass(frozen=True)
class PickReport:
    """The result of :func:`choose_report`: the picks, the inputs that could not be read
    (``problems``: exit 2) and what was left out (``skipped``, with the reasons)."""

    picks: tuple[Pick, ...]
    problems: tuple[str, ...] = ()
    skipped: tuple[Skipped, ...] = ()


def choose(
    paths: Sequence[str | Path],
    metric: str,
    *,
    mode: str | None = None,
    across: bool = False,
    resamples: int = 1000,
    seed: int = 0,
    audit: bool = True,
) -> list[Pick]:
    """The best checkpoint of each run (or the single best across all with ``across``).

    Runs that cannot be used are left out; :func:`choose_report` also says which and why.
    """
    return list(choose_report(paths, metric, mode=mode, across=across, resamples=resamples, seed=seed, audit=audit).picks)


def choose_report(
    paths: Sequence[str | Path],
    metric: str,
    *,
    mode: str | None = None,
    across: bool = False,
    resamples: int = 1000,
    seed: int = 0,
    audit: bool = True,
) -> PickReport:
    """:func:`choose`, with every unreadable input and every run left out (and why)."""
    from .auditing import AuditOptions, audit_run
    from .ranking import RankedRow, Ranking, with_intervals
    from .sweep import NothingLeftError, problems_of, score_sweep

    sweep = score_sweep(paths, [metric], mode=mode)
    specs, runs, scores = list(sweep.specs), list(sweep.runs), sweep.scores
    skipped = list(sweep.skipped)
    problems = [n for s in scores if s.unreadable for n in s.notes[:1]]
    groups = [list(scores)] if across else [[s for s in scores if s.run is run] for run in runs]
    picks = []
    for group in groups:
        scorable = [s for s in group if s.values[0] is not None]
        if not scorable:
            name = group[0].run.name if group and not across else (runs[0].name if runs else "")
            kind = "error" if any(s.unreadable for s in group) else "skipped"
            skipped.append(Skipped(name, name, f"no checkpoint could be scored by {specs[0].text}", kind))
            continue
        best = _best(group, runs, 0, specs)
        row = RankedRow(
            rank=1,
            run=best.run.name,
            checkpoint=best.checkpoint.name,
            epoch=best.checkpoint.epoch,
            step=best.checkpoint.step,
            values={specs[0].text: best.values[0]},
        )
        ranked = with_intervals(Ranking(specs=tuple(specs), rows=(row,), runs=(best.run,)), resamples=resamples, seed=seed)
        findings: tuple[dict[str, Any], ...] = ()
        if audit:
            ra = audit_run(best.run, AuditOptions(metric=metric, mode=mode, resamples=resamples, seed=seed))
            findings = tuple(f.as_dict() for f in ra.findings if f.severity in ("warning", "error"))
        picks.append(
            Pick(
                run=best.run,
                checkpoint=best.checkpoint,
                metric=specs[0].text,
                mode=specs[0].mode,
                value=cast(float, best.values[0]),
                interval=ranked.rows[0].interval,
                findings=findings,
            )
        )  # type: ignore[arg-type]
    if not picks:
        raise NothingLeftError(skipped, problems)
    return PickReport(tuple(picks), tuple(problems) + problems_of(skipped), tuple(skipped))


def provenance_path(dest: Path) -> Path:
    """Where the provenance of ``dest`` is written: beside it, as DEST.ckptaudit.json."""
    return dest.with_name(dest.name + PROVENANCE_SUFFIX)


def place(pick: Pick, *, link: Path | None = None, copy: Path | None = None) -> Pick:
    """Place the pick at ``link`` (a relative symlink) or ``copy`` (a copy of the folder),
    and write the provenance file beside it. Refuses to overwrite anything."""
    from .recorder import write_json_atomic

    if (link is None) == (copy is None):
        raise UsageError("give one of --link DEST or --copy DEST")
    dest = Path(link or copy)  # type: ignore[arg-type]
    prov = provenance_path(dest)
    for target in (dest, prov):
        if target.exists() or target.is_symlink():
            raise UsageError("already exists; remove it or choose another destination", target)
    dest.parent.mkdir(parents=True, exist_ok=True)
    source = pick.checkpoint.path
    hashes = weight_hashes(source)
    if link is not None:
        rel = os.path.relpath(source.resolve(), dest.parent.resolve())
        os.symlink(rel, dest, target_is_directory=True)
    else:
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
        shutil.copytree(source, tmp, symlinks=True)
        copied = weight_hashes(tmp)
        if copied != hashes:
            shutil.rmtree(tmp)
            raise UsageError("the copy does not match its source (files changed while copying)", source)
        os.rename(tmp, dest)
    placed = Pick(**{**pick.__dict__, "dest": dest, "provenance": prov, "hashes": hashes})
    write_json_atomic(prov, placed.as_dict())
    return placed
