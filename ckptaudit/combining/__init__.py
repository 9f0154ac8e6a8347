"""Combining checkpoints, honestly: prediction ensembles, weight averages and greedy soups.

:func:`combine_run` searches a run's combinations under one metric (``last-k`` and
``top-k`` means and a Caruana greedy ensemble of the saved validation predictions), measures
the selection-corrected gain of the whole search over the best single checkpoint
(:mod:`.adoption`), and writes the chosen combination into the run as a new checkpoint only
when it is better beyond noise (or when asked to). Weight averages (:mod:`.averaging`,
:mod:`.soups`) go through the inference engine and are then assessed the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics.evaluation import parse_metrics
from ..store.reader import Run
from .adoption import DEFAULT_RESAMPLES, DEFAULT_SEED, FAMILIES, Assessment, Searcher, SearchResult, assess
from .ensembles import ENSEMBLE, Members, ensemble_mean, load_members, stored_output
from .rows import check_supported


@dataclass(frozen=True)
class Candidate:
    """One family's combination, chosen on the validation rows, with its corrected gain."""

    family: str  #: last-k, top-k, greedy
    label: str  #: last-5, top-3, greedy
    members: tuple[tuple[str, int], ...]  #: (checkpoint, how often it counts), epoch order
    value: float  #: its value on the validation rows (optimistic: it was chosen there)
    naive_gain: float  #: value minus the best single's on the same rows (positive = better)
    corrected_gain: float  #: expected gain on new data (the family's search re-run in-bag, scored out-of-bag)
    interval: tuple[float, float]  #: 95% interval of the corrected gain


@dataclass(frozen=True)
class Combination:
    """The answer for one run: which combination (if any) to adopt, and why."""

    run: str
    path: Path
    metric: str
    maximize: bool
    best_single: str
    best_single_value: float
    candidates: tuple[Candidate, ...]
    chosen: str | None  #: the family the whole search picks on the validation rows
    naive_gain: float
    corrected_gain: float
    interval: tuple[float, float]
    adopt: bool
    decision: str
    resamples: int
    written: Path | None = None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (the ``--format json`` output)."""
        return {
            "run": self.run,
            "path": str(self.path),
            "metric": self.metric,
            "best_single": {"checkpoint": self.best_single, "value": self.best_single_value},
            "candidates": [
                {
                    "family": c.family,
                    "label": c.label,
                    "members": [{"checkpoint": n, "count": k} for n, k in c.members],
                    "value": c.value,
                    "naive_gain": c.naive_gain,
                    "corrected_gain": c.corrected_gain,
                    "interval": list(c.interval),
                }
                for c in self.candidates
            ],
            "chosen": self.chosen,
            "naive_gain": self.naive_gain,
            "corrected_gain": self.corrected_gain,
            "interval": list(self.interval),
            "adopt": self.adopt,
            "decision": self.decision,
            "resamples": self.resamples,
            "written": None if self.written is None else str(self.written),
            "notes": list(self.notes),
        }


def _members_of(members: Members, idx: list[int]) -> tuple[tuple[str, int], ...]:
    counts = np.bincount(np.asarray(idx, dtype=np.int64), minlength=len(members.checkpoints))
    return tuple((members.checkpoints[i].name, int(counts[i])) for i in np.flatnonzero(counts))


def decide(members: Members, searcher: Searcher, full: SearchResult, assessment: Assessment, metric: str) -> Combination:
    """The :class:`Combination` of a search on the validation rows and its assessment."""
    sign = 1.0 if searcher.maximize else -1.0
    candidates = []
    for family in searcher.families:
        f = full.found.get(family)
        if f is None:
            continue
        gain, interval = assessment.summary(family)
        candidates.append(
            Candidate(
                family, f.label, _members_of(members, f.members), f.value, sign * (f.value - full.single_value), gain, interval
            )
        )
    gain, interval = assessment.summary("search")
    chosen = full.found[full.chosen] if full.chosen is not None else None
    naive = 0.0 if chosen is None else sign * (chosen.value - full.single_value)
    adopt = chosen is not None and naive > 0 and interval[0] > 0
    best = members.checkpoints[full.single].name
    if adopt:
        assert chosen is not None
        decision = (
            f"adopt {chosen.label}: expected gain {gain:+.4g} {metric} over the best single checkpoint {best} "
            f"(95% interval {interval[0]:+.4g} to {interval[1]:+.4g}; {naive:+.4g} on the validation rows it was chosen on)"
        )
    else:
        decision = (
            f"no combination helps: the search's expected gain over {best} is {gain:+.4g} {metric} "
            f"(95% interval {interval[0]:+.4g} to {interval[1]:+.4g}), not above noise"
        )
    return Combination(
        members.run.name,
        members.run.path,
        metric,
        searcher.maximize,
        best,
        full.single_value,
        tuple(candidates),
        None if chosen is None else chosen.label,
        naive,
        gain,
        interval,
        adopt,
        decision,
        assessment.resamples,
        notes=members.notes,
    )


def combine_run(
    run: Run,
    metric: str,
    *,
    mode: str | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    families: tuple[str, ...] = FAMILIES,
    write: bool = False,
    dry_run: bool = False,
    model: Any = None,
    data: Any = None,
    train_data: Any = None,
    device: str = "cpu",
    batch_size: int = 1024,
    trust_pickle: bool = False,
    refresh_bn: bool = True,
) -> Combination:
    """Search the prediction ensembles of ``run`` under ``metric`` and decide honestly.

    With ``model`` and ``data`` (as ``predict`` takes them) the search is over weight
    averages instead (uniform last-k / top-k averages and a greedy soup, :mod:`.soups`),
    BatchNorm statistics refreshed on ``train_data`` when given. The chosen combination is
    written as checkpoint ``combined-<label>`` when it is adopted (or with ``write`` even
    when not), unless ``dry_run``."""
    spec = _spec(run, metric, mode)
    members = load_members(run)
    return _combine(
        members, spec, lambda: run.path, resamples=resamples, seed=seed, families=families, write=write, dry_run=dry_run,
        model=model, data=data, train_data=train_data, device=device, batch_size=batch_size, trust_pickle=trust_pickle,
        refresh_bn=refresh_bn,
    )  # fmt: skip


def _spec(run: Run, metric: str, mode: str | None) -> Any:
    spec = parse_metrics([metric], [run], mode=mode)[0]
    spec = spec.for_run(run.classes, run.task, run.positive_class, run.num_classes)
    check_supported(spec, run.task, run.output)
    return spec


def _combine(
    members: Members,
    spec: Any,
    target: Any,
    *,
    resamples: int,
    seed: int,
    families: tuple[str, ...],
    write: bool,
    dry_run: bool,
    model: Any,
    data: Any,
    train_data: Any,
    device: str,
    batch_size: int,
    trust_pickle: bool,
    refresh_bn: bool,
) -> Combination:
    """Search, assess, decide and (when adopted or asked) write into the run ``target()``."""
    from ..errors import UsageError

    searcher: Any
    if model is not None:
        from .soups import AVERAGE_FAMILIES, AverageSearcher

        if data is None:
            raise UsageError("weight averages need --data (the validation rows) with --model")
        fams = families if set(families) <= set(AVERAGE_FAMILIES) else AVERAGE_FAMILIES
        searcher = AverageSearcher(
            members, spec, model, data, train_data=train_data, families=fams, device=device,
            batch_size=batch_size, trust_pickle=trust_pickle, refresh_bn=refresh_bn,
        )  # fmt: skip
        members = searcher.members
    else:
        searcher = Searcher(members, spec, families)
    full = searcher.search(np.ones(members.y.shape[0], dtype=np.float64))
    result = decide(members, searcher, full, assess(searcher, resamples, seed), spec.text)
    if (result.adopt or write) and not dry_run and full.chosen is not None:
        result = _write(members, full, result, target(), searcher if model is not None else None)
    return result


def combine_across(
    runs: Any,
    metric: str,
    *,
    mode: str | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    families: tuple[str, ...] = FAMILIES,
    write: bool = False,
    dry_run: bool = False,
    model: Any = None,
    data: Any = None,
    train_data: Any = None,
    device: str = "cpu",
    batch_size: int = 1024,
    trust_pickle: bool = False,
    refresh_bn: bool = True,
) -> Combination:
    """:func:`combine_run` over one pool of every run's checkpoints (a sweep of fine-tunes
    validated on the same rows, :mod:`.across`); an adopted combination is written as run
    ``SWEEP/combined-across``."""
    from dataclasses import replace

    from .across import across_run as target_run
    from .across import pooled_members, sweep_root

    members = pooled_members(runs)
    spec = _spec(members.run, metric, mode)
    result = _combine(
        members, spec, lambda: target_run(runs), resamples=resamples, seed=seed, families=families, write=write,
        dry_run=dry_run, model=model, data=data, train_data=train_data, device=device, batch_size=batch_size,
        trust_pickle=trust_pickle, refresh_bn=refresh_bn,
    )  # fmt: skip
    root = sweep_root(runs)
    return replace(result, run=f"{root} (across {len({c.name.rsplit('/', 1)[0] for c in members.checkpoints})} runs)", path=root)


def _write(members: Members, full: SearchResult, result: Combination, target: Path, averages: Any = None) -> Combination:
    from dataclasses import replace

    from ..errors import UsageError
    from ..store.remote import is_copy
    from .writing import write_combined

    if is_copy(target):  # NOTE: a remote run is read through a local copy that ends with the command
        raise UsageError("combine cannot write into a run on object storage yet: pass --dry-run (or copy the run to disk)")
    assert full.chosen is not None
    found = full.found[full.chosen]
    if averages is not None:
        return replace(result, written=_write_average(members, found, result, averages, target))
    p = ensemble_mean(members.probs, found.members)
    val = {
        "target": members.target,
        "output": stored_output(members.run, p),
        "ids": members.ids,
        "input_hash": members.input_hash,
    }
    records = [{"checkpoint": n, "count": k} for n, k in _members_of(members, found.members)]
    decision = _decision_record(result)
    used = [members.checkpoints[i] for i in sorted(set(found.members))]
    path = write_combined(target, f"combined-{found.label}", ENSEMBLE, used, records, decision, val=val)
    return replace(result, written=path)


def _decision_record(result: Combination) -> dict[str, Any]:
    return {
        "metric": result.metric,
        "adopted": result.adopt,
        "corrected_gain": result.corrected_gain,
        "interval": list(result.interval),
        "naive_gain": result.naive_gain,
        "best_single": result.best_single,
        "best_single_value": result.best_single_value,
        "chosen": result.chosen,
        "decision": result.decision,
        "resamples": result.resamples,
        # NOTE: every candidate, so that the report shows what the decision was made among
        "candidates": [
            {
                "label": c.label,
                "value": c.value,
                "naive_gain": c.naive_gain,
                "corrected_gain": c.corrected_gain,
                "interval": list(c.interval),
            }
            for c in result.candidates
        ],
        "notes": list(result.notes),
    }


def _write_average(members: Members, found: Any, result: Combination, searcher: Any, target: Path) -> Path:
    """Write the chosen weight average: its weights (model.pt, plain tensors) and its
    validation predictions, made by the inference engine's predictor from those weights."""
    import tempfile

    from .ensembles import AVERAGE
    from .soups import save_state
    from .writing import write_combined

    state = searcher.state_of(found.members)
    out = searcher.predictor  # NOTE: the very weights written are the ones predicted
    from ..inference.predictor import _align_keys

    out.model.load_state_dict(_align_keys(state, set(out.model.state_dict())), strict=True)
    output = out.run(searcher.data)
    records = [{"checkpoint": n, "count": k} for n, k in _members_of(members, found.members)]
    used = [members.checkpoints[i] for i in sorted(set(found.members))]
    val = {"target": members.target, "output": output, "ids": members.ids, "input_hash": members.input_hash}
    with tempfile.TemporaryDirectory(dir=target / "checkpoints", prefix=".combine-") as tmp:
        weights = Path(tmp) / "model.pt"
        save_state(state, weights)
        record = {**_decision_record(result), "batchnorm_refreshed": bool(searcher.refresh)}
        return write_combined(
            target, f"combined-{found.label}", AVERAGE, used, records, record, val=val, files={"model.pt": weights}
        )


@dataclass(frozen=True)
class CombineReport:
    """Every run's :class:`Combination`, and the inputs that could not be combined."""

    results: tuple[Combination, ...]
    problems: tuple[str, ...]  #: one line per broken run (exit 2); the others go on
    skipped: tuple[Any, ...]


def combine(
    paths: Any,
    metric: str,
    *,
    mode: str | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    families: tuple[str, ...] = FAMILIES,
    write: bool = False,
    dry_run: bool = False,
    across: bool = False,
    **averaging: Any,
) -> CombineReport:
    """:func:`combine_run` for every run under ``paths`` (a run, or a sweep: each run on its
    own); a run that cannot be combined is reported and the others go on. ``averaging``
    (``model``, ``data``, ``train_data``, ``device``, ...) searches weight averages instead
    (:func:`combine_run`)."""
    from ..errors import CkptauditError, MetricError
    from ..store.reader import discover_sweep

    runs, skipped = discover_sweep([paths] if isinstance(paths, (str, Path)) else paths)
    results: list[Combination] = []
    problems: list[str] = []
    if across:
        result = combine_across(
            runs, metric, mode=mode, resamples=resamples, seed=seed, families=families, write=write, dry_run=dry_run,
            **averaging,
        )  # fmt: skip
        return CombineReport((result,), (), tuple(skipped))
    for run in runs:
        if run.path.name == "combined-across":
            continue  # NOTE: written by --across; its checkpoints are combinations, not candidates
        try:
            results.append(
                combine_run(
                    run, metric, mode=mode, resamples=resamples, seed=seed, families=families, write=write, dry_run=dry_run
                )
            )
        except MetricError as exc:
            if len(runs) == 1:
                raise
            problems.append(f"{run.path}: {exc}")
        except CkptauditError as exc:
            if len(runs) == 1:
                raise
            problems.append(f"{run.path}: {exc}")
    return CombineReport(tuple(results), tuple(problems), tuple(skipped))
