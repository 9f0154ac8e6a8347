"""Replaying rules on recorded runs: the engine only iterates rules over runs.

For each run it reads, once, the run's verdict under the target metric (one pass over the
val.npz files, :class:`ckptaudit.verdict.build.RunPass`; the same per-row data then gives
the regret's resamples, :mod:`ckptaudit.stats.regret`), takes each rule's monitor from the
checkpoints' logged values (meta.json ``logged``), simulates the rule
(:func:`.rules.simulate`) and reports one :class:`RuleResult` per rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import CkptauditError, UsageError
from ..store.reader import Run, Skipped
from .grammar import RuleSpec, parse_rule
from .rules import Outcome, simulate, smooth

#: logged names read as the cumulative wall time (seconds since the run started)
TIME_KEYS = ("wall_time", "elapsed", "time")
_MIN_WORDS = ("loss", "error", "err", "mse", "mae", "rmse", "perplexity", "ece", "brier")
_MAX_WORDS = ("acc", "auc", "f1", "precision", "recall", "ap", "r2", "iou", "dice", "map", "bleu", "rouge")


@dataclass(frozen=True)
class RuleResult:
    """One rule replayed on one run (indices resolved to names; see docs/replay.md)."""

    run: str
    rule: str
    monitor: str
    mode: str
    stop_epoch: int
    stopped: bool
    kept: tuple[str, ...]
    deleted: tuple[str, ...]  #: trained, then deleted by the rule
    not_trained: tuple[str, ...]  #: recorded after the stop
    shipped: str | None
    shipped_value: float | None  #: the target metric of the shipped checkpoint (from the verdict)
    best: str | None  #: the post-hoc best under the target metric (the verdict's winner)
    best_value: float | None
    regret: float | None  #: validation regret (>= 0) under the target metric
    regret_ci95: tuple[float, float] | None  #: the best re-selected in every resample
    #: the shipped checkpoint cannot be told apart from the best (the verdict's confidence set)
    within_noise: bool | None
    epochs_saved: int
    seconds_saved: float | None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON record (docs/replay.md)."""
        out = dict(self.__dict__)
        out["regret_ci95"] = None if self.regret_ci95 is None else list(self.regret_ci95)
        for key in ("kept", "deleted", "not_trained"):
            out[key] = list(out[key])
        return out


@dataclass(frozen=True)
class ReplayReport:
    """Every rule on every run, and the runs that could not be replayed (with why)."""

    metric: str
    rules: tuple[str, ...]
    results: tuple[RuleResult, ...]
    problems: tuple[str, ...] = ()
    skipped: tuple[Skipped, ...] = field(default_factory=tuple)


def monitor_of(spec: RuleSpec, run: Run) -> tuple[str, str]:
    """The rule's monitor and mode: as given, else run.json ``selected_by``, else
    ``val_loss``; the mode from the name when neither the rule nor run.json says it."""
    sel = run.selected_by
    monitor = spec.get("monitor") or (sel.metric if sel is not None else "val_loss")
    mode = spec.get("mode")
    if mode is None and sel is not None and sel.metric == monitor and sel.mode in ("min", "max"):
        mode = sel.mode
    if mode is None:
        low = monitor.lower()
        if any(w in low for w in _MIN_WORDS):
            mode = "min"
        elif any(w in low for w in _MAX_WORDS):
            mode = "max"
        else:
            raise UsageError(
                f"rule {spec.text!r}: cannot tell whether {monitor!r} is minimised or maximised; add mode=min or mode=max"
            )
    return monitor, mode


def _sequence(run: Run, name: str, spec: RuleSpec) -> list[float | None]:
    values = [c.logged.get(name) for c in run.checkpoints]
    if all(v is None for v in values):
        logged = sorted({k for c in run.checkpoints for k in c.logged})
        raise UsageError(
            f"{run.name}: rule {spec.text!r}: no checkpoint logged {name!r} (logged: {', '.join(logged) or 'nothing'})"
        )
    return values


def _seconds(run: Run) -> list[float | None] | None:
    for key in TIME_KEYS:
        times = [c.logged.get(key) for c in run.checkpoints]
        if all(t is not None for t in times):
            return times
    return None


def replay_run(
    run: Run, specs: Sequence[RuleSpec], metric: str, *, mode: str | None = None, resamples: int = 1000, seed: int = 0
) -> list[RuleResult]:
    """Replay every rule in ``specs`` on ``run`` under target ``metric`` (see the module docstring)."""
    from ..metrics.evaluation import iter_scores, parse_metrics
    from ..stats.regret import regrets
    from ..verdict.build import Options, RunPass

    names = [c.name for c in run.checkpoints]
    epochs = [c.epoch for c in run.checkpoints]
    outcomes: list[tuple[RuleSpec, str, str, Outcome]] = []
    for spec in specs:  # the rules first: a rule that cannot apply is an error before any file is read
        monitor, rule_mode = monitor_of(spec, run)
        values = _sequence(run, monitor, spec)
        if "ema" in spec.options:
            values = smooth(values, spec.options["ema"])
        train = _sequence(run, spec.get("train", "train_loss"), spec) if "pq" in spec.options else None
        outcomes.append((spec, monitor, rule_mode, simulate(spec, values, rule_mode == "max", epochs, train)))
    texts = parse_metrics([metric], [run], mode)
    options = Options(audit=False, all_metrics=False, resamples=resamples, seed=seed, mode=mode)
    gather = RunPass(run, texts, options)
    scores = list(iter_scores(run, texts, guard=True, observe=gather.observer()))
    verdict = gather.finish(scores, run.skipped)
    target = verdict.primary
    builder = gather.builders[0]
    picks = [o.shipped for _, _, _, o in outcomes]
    if builder is not None:
        found, note = regrets(builder.finish(), picks, resamples=resamples, seed=seed)
    else:
        found, note = [None] * len(picks), f"{target.text}: no per-row form for the regret's interval"
    winner = verdict.winner()
    wi = verdict.index(winner)
    seconds = _seconds(run)
    out = []
    for (spec, monitor, rule_mode, o), reg in zip(outcomes, found, strict=True):
        last = len(names) - 1
        kept = set(o.kept)
        shipped_value = None if o.shipped is None else target.values[o.shipped]
        rnote = note
        if o.shipped is None:
            rnote = "the rule keeps no checkpoint to ship"
        elif shipped_value is None:
            rnote = f"{names[o.shipped]} cannot be scored under {target.text}"
        out.append(
            RuleResult(
                run=run.name,
                rule=spec.text,
                monitor=monitor + (f" (ema {spec.options['ema']})" if "ema" in spec.options else ""),
                mode=rule_mode,
                stop_epoch=epochs[o.stop],
                stopped=o.stopped,
                kept=tuple(names[i] for i in sorted(kept)),
                deleted=tuple(names[i] for i in range(o.stop + 1) if i not in kept),
                not_trained=tuple(names[o.stop + 1 :]),
                shipped=None if o.shipped is None else names[o.shipped],
                shipped_value=shipped_value,
                best=winner,
                best_value=None if wi is None else target.values[wi],
                regret=None if reg is None else reg.raw,
                regret_ci95=None if reg is None else reg.interval,
                within_noise=None if o.shipped is None else target.tied_of(names[o.shipped]),
                epochs_saved=epochs[last] - epochs[o.stop],
                seconds_saved=None if seconds is None else float(seconds[last] - seconds[o.stop]),  # type: ignore[operator]
                note=rnote,
            )
        )
    return out


def replay(
    paths: Sequence[Any], rules: Sequence[str], metric: str, *, mode: str | None = None, resamples: int = 1000, seed: int = 0
) -> ReplayReport:
    """Replay ``rules`` (texts, :mod:`.grammar`) on every run under ``paths``; a run that
    cannot be replayed is reported in ``problems`` and the others go on."""
    from ..store.reader import discover_sweep
    from ..sweep import problems_of

    if not rules:
        raise UsageError("give at least one --rule (e.g. --rule patience=3)")
    specs = [parse_rule(r) for r in rules]
    runs, skipped = discover_sweep(paths)
    results: list[RuleResult] = []
    problems = list(problems_of(skipped))
    for run in runs:
        try:
            results.extend(replay_run(run, specs, metric, mode=mode, resamples=resamples, seed=seed))
        except CkptauditError as exc:
            if len(runs) == 1:
                raise
            problems.append(f"{run.name}: {exc}" if run.name not in str(exc) else str(exc))
    return ReplayReport(metric, tuple(r.text for r in specs), tuple(results), tuple(problems), tuple(skipped))
