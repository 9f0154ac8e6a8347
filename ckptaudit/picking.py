"""``pick``: name the best checkpoint, place it, and record why (provenance).

The provenance file ``DEST.ckptaudit.json`` says which run and checkpoint were chosen,
under which metric spec, with what value and 95% interval, what it is expected to score on
new data (corrected for having been selected among the run's checkpoints; with the optimism
of the raw value and its interval), how many checkpoints cannot be told apart from the
best, which audit findings (warning or worse) stood against the run, and the sha256 of every weights file, so a later gate
(`ckptaudit check --chosen DEST.ckptaudit.json`) can verify the choice.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from . import __version__
from .errors import UsageError
from .metrics.evaluation import CheckpointScore
from .ranking import order_scores
from .store.identity import PROVENANCE_SUFFIX as PROVENANCE_SUFFIX
from .store.reader import Checkpoint, Run, Skipped
from .store.remote import is_copy, location

# NOTE: hashing moved to ckptaudit.weights (the run store's weights identity); the old names
# stay importable from here (explicit re-exports).
from .store.weights import NON_WEIGHT_FILES as NON_WEIGHT_FILES
from .store.weights import sha256_file as sha256_file
from .store.weights import weight_files as weight_files
from .store.weights import weight_hashes


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
    #: selection statistics of the winner's run (ckptaudit.selection.RunSelection), when available
    selection: Any = None
    #: the winner's run's verdict (ckptaudit.verdict.Verdict) the pick was read from
    verdict: Any = field(default=None, repr=False, compare=False)
    #: an operating-point metric's threshold (issue 20): flag rows whose probability is >= it
    threshold: float | None = None
    #: ``pick --across`` a sweep of several runs: the pool the winner was picked from
    #: (:class:`ckptaudit.stats.sweepwide.SweepSelection`); ``selection`` is then the
    #: sweep-wide one where it exists
    across: Any = None

    def as_dict(self) -> dict[str, Any]:
        """The provenance record (also the JSON output of `pick`)."""
        return {
            "ckptaudit": __version__,
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "run": location(self.run.path),  # NOTE: a remote run's URL
            "checkpoint": self.checkpoint.name,
            "epoch": self.checkpoint.epoch,
            "step": self.checkpoint.step,
            "metric": self.metric,
            "mode": self.mode,
            "value": self.value,
            "ci95": list(self.interval) if self.interval else None,
            **self.selection_fields(),
            "findings": list(self.findings),
            "files": self.hashes or weight_hashes(self.checkpoint.path),
            "dest": None if self.dest is None else str(self.dest),
            **self.operating_fields(),
            **({"across": self.across.as_dict()} if self.across is not None else {}),
            **({"params": self.run.raw["params"]} if isinstance(self.run.raw.get("params"), dict) else {}),
        }

    def operating_fields(self) -> dict[str, Any]:
        """An operating point's pair for serving code (issue 20): the threshold and the rule
        (empty for every other metric)."""
        if self.threshold is None:
            return {}
        point: dict[str, Any] = {"threshold": self.threshold, "flag": "probability >= threshold"}
        op = getattr(self.selection, "operating", None)
        if op is not None:
            point.update(
                constraint_holds=op.holds,
                safe_threshold=self.selection.safe_threshold,
                safe_holds=op.safe_holds,
            )
        return {"threshold": self.threshold, "operating_point": point}

    @property
    def constraint_holds(self) -> float | None:
        """The share of resamples in which the pair's constraint still holds (None: not an operating point)."""
        op = getattr(self.selection, "operating", None)
        return None if op is None else op.holds

    def selection_fields(self) -> dict[str, Any]:
        """The provenance's selection keys: ``expected_on_new_data`` (value, ci95, optimism;
        None when unavailable) and ``tied_best`` (count and names of the checkpoints that
        cannot be told apart from the best, winner first)."""
        sel = self.selection
        if sel is None or sel.estimate is None:
            return {"expected_on_new_data": None, "tied_best": None}
        e = sel.estimate
        return {
            "expected_on_new_data": {
                "value": e.expected,
                "ci95": list(e.interval),
                "optimism": e.optimism,
                "method": sel.correction,
                "resamples": sel.resamples,
                "seed": sel.seed,
            },
            "tied_best": {"count": len(sel.tied_best), "checkpoints": list(sel.tied_best), "method": sel.method},
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
    jobs: int | None = None,
) -> list[Pick]:
    """The best checkpoint of each run (or the single best across all with ``across``).

    Runs that cannot be used are left out; :func:`choose_report` also says which and why.
    """
    report = choose_report(paths, metric, mode=mode, across=across, resamples=resamples, seed=seed, audit=audit, jobs=jobs)
    return list(report.picks)


def choose_report(
    paths: Sequence[str | Path],
    metric: str,
    *,
    mode: str | None = None,
    across: bool = False,
    resamples: int = 1000,
    seed: int = 0,
    audit: bool = True,
    jobs: int | None = None,
) -> PickReport:
    """:func:`choose`, with every unreadable input and every run left out (and why).
    ``jobs``: worker processes reading the files ahead (:mod:`ckptaudit.parallel`).

    A view of each run's verdict (:mod:`ckptaudit.verdict`): the winner, its interval, the
    tie set, the winner estimate and the findings are read from it, never computed here."""
    from .sweep import NothingLeftError
    from .verdict.build import Options, evaluate_paths

    # NOTE: one pass per run reads each val.npz once and gathers the scores, the selection
    # statistics' per-row data and (with ``audit``) the audit's statistics; the audit reads
    # train.npz itself, once. Every run is judged, since the winner is known only after.
    options = Options(statistics=True, all_metrics=False, audit=audit, resamples=resamples, seed=seed, mode=mode)
    judged = evaluate_paths(paths, [metric], options, jobs=jobs)
    specs, runs, scores = list(judged.specs), list(judged.runs), judged.scores()
    verdicts = {id(v.run): v for v in judged.verdicts}
    skipped = list(judged.skipped)
    problems = [n for s in scores if s.unreadable for n in s.notes[:1]]
    groups = [list(scores)] if across else [list(v.scores) for v in judged.verdicts]
    pool = None
    if across and len(runs) > 1:
        from .stats.sweepwide import sweep_selection

        # NOTE: the winner is the best of every run's checkpoints: its correction is the
        # selection over that whole pool (one more read of each val.npz), not its run's.
        pool = sweep_selection(runs, specs[0], resamples=resamples, seed=seed)
    picks = []
    for group in groups:
        scorable = [s for s in group if s.values[0] is not None]
        if not scorable:
            name = group[0].run.name if group and not across else (runs[0].name if runs else "")
            kind = "error" if any(s.unreadable for s in group) else "skipped"
            skipped.append(Skipped(name, name, f"no checkpoint could be scored by {specs[0].text}", kind))
            continue
        best = _best(group, runs, 0, specs)
        verdict = verdicts[id(best.run)]
        m = verdict.primary
        chosen_selection = m.selection if m.available else None
        if pool is not None and pool.selection is not None and pool.selection.available:
            chosen_selection = pool.selection
        index = verdict.index(best.checkpoint.name)
        findings: tuple[dict[str, Any], ...] = ()
        if audit:
            if verdict.audit_error is not None:
                raise verdict.audit_error
            findings = tuple(f.as_dict() for f in verdict.findings if f.severity in ("warning", "error"))
        picks.append(
            Pick(
                run=best.run,
                checkpoint=best.checkpoint,
                metric=specs[0].text,
                mode=specs[0].mode,
                value=cast(float, best.values[0]),
                interval=None if index is None else m.interval_of(index),
                findings=findings,
                selection=chosen_selection,
                verdict=verdict,
                threshold=_threshold(best, specs[0]),
                across=pool,
            )
        )  # type: ignore[arg-type]
    if not picks:
        raise NothingLeftError(skipped, problems)
    from .sweep import problems_of

    return PickReport(tuple(picks), tuple(problems) + problems_of(skipped), tuple(skipped))


def _threshold(best: CheckpointScore, spec: Any) -> float | None:
    """The winner's operating threshold, as its scoring pass noted it (None: not an operating point)."""
    if getattr(spec, "operating", None) is None:
        return None
    from .metrics.operating import tuned_threshold

    return tuned_threshold(best.notes, spec.text)


def _group_by_run(scores: Sequence[CheckpointScore], runs: Sequence[Run]) -> list[list[CheckpointScore]]:
    """The scores of each of ``runs`` (in that order), in one pass over ``scores``."""
    # NOTE: by identity, as the scores hold the very Run objects of the sweep; a pass per
    # run over every score was quadratic (1.7 s at 5000 runs).
    by_run: dict[int, list[CheckpointScore]] = {id(run): [] for run in runs}
    for s in scores:
        group = by_run.get(id(s.run))
        if group is not None:
            group.append(s)
    return [by_run[id(run)] for run in runs]


def provenance_path(dest: Path) -> Path:
    """Where the provenance of ``dest`` is written: beside it, as DEST.ckptaudit.json."""
    return dest.with_name(dest.name + PROVENANCE_SUFFIX)


def place(pick: Pick, *, link: Path | None = None, copy: Path | None = None, pin: bool = True) -> Pick:
    """Place the pick at ``link`` (a relative symlink) or ``copy`` (a copy of the folder),
    and write the provenance file beside it. Refuses to overwrite anything.

    With ``pin`` (the default) the checkpoint is first pinned in its run
    (:mod:`ckptaudit.store.pins`), so that ``prune`` keeps it wherever the export lives and
    however the run folder is renamed; a failed placement removes the pin again."""
    if (link is None) == (copy is None):
        raise UsageError("give one of --link DEST or --copy DEST")
    from .store.pruned import weights_removed

    if pick.checkpoint.metrics_only:
        raise UsageError(
            f"{pick.checkpoint.name} is a metrics-only checkpoint (logged metrics, no weights): there is nothing to place",
            pick.checkpoint.path,
        )
    if weights_removed(pick.run.path, pick.checkpoint.name):
        raise UsageError(
            f"the weights of {pick.checkpoint.name} were deleted by `ckptaudit prune` (its predictions were kept "
            "so that the statistics still count it): there is nothing to place; pick among checkpoints with weights",
            pick.checkpoint.path,
        )
    if is_copy(pick.checkpoint.path):
        # NOTE: the run is read through a local copy that ends with the command: a link to it
        # would dangle, and a pin written into it would protect nothing on object storage
        if link is not None:
            raise UsageError("--link needs a run on disk; a checkpoint on object storage can be placed with --copy")
        if pin:
            raise UsageError("pinning a checkpoint on object storage is not supported: pass --no-pin with --copy")
    dest = Path(link or copy)  # type: ignore[arg-type]
    prov = provenance_path(dest)
    for target in (dest, prov):
        if target.exists() or target.is_symlink():
            raise UsageError("already exists; remove it or choose another destination", target)
    dest.parent.mkdir(parents=True, exist_ok=True)
    source = pick.checkpoint.path
    hashes = weight_hashes(source)
    if pin:
        from .store.pins import add_pin, remove_pins

        try:
            add_pin(pick.run.path, pick.checkpoint.name, dest=dest, kind="link" if link is not None else "copy")
        except UsageError as exc:
            raise UsageError(f"{exc}; pass --no-pin to export without protecting it from prune") from None
        try:
            return _place(pick, dest, prov, source, hashes, link is not None)
        except BaseException:
            remove_pins(pick.run.path, pick.checkpoint.name, dest=dest)
            raise
    return _place(pick, dest, prov, source, hashes, link is not None)


def _place(pick: Pick, dest: Path, prov: Path, source: Path, hashes: dict[str, str], as_link: bool) -> Pick:
    from .store.recorder import write_json_atomic

    if as_link:
        rel = os.path.relpath(source.resolve(), dest.parent.resolve())
        os.symlink(rel, dest, target_is_directory=True)
    else:
        from .store.safeio import copy_regular_tree

        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            copy_regular_tree(source, tmp)  # regular files only: a device inside never ends
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        copied = weight_hashes(tmp)
        if copied != hashes:
            shutil.rmtree(tmp)
            raise UsageError("the copy does not match its source (files changed while copying)", source)
        os.rename(tmp, dest)
    placed = Pick(**{**pick.__dict__, "dest": dest, "provenance": prov, "hashes": hashes})
    write_json_atomic(prov, placed.as_dict())
    return placed
