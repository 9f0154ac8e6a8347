"""``audit``: find the patterns that make a checkpoint choice dishonest, with the numbers.

One pass streams each run's checkpoints (one prediction file in memory at a time) and
collects what every check needs, including the compact per-row predictions from which
the selection statistics (:mod:`ckptaudit.stats.selection`) find the checkpoints that cannot be
told apart from the winner and what the winner is expected to score on new data. Each check is a small function from those statistics to
findings, so adding a check does not touch the others. Thresholds live in
:class:`AuditOptions` with documented defaults (README, `ckptaudit explain CODE`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import numpy as np

from .errors import CkptauditError, MetricError, RunFormatError, UsageError
from .findings import CODES, Finding, severity_rank
from .metrics import kernels as metrics
from .metrics.evaluation import RunScorer, prepare_predictions, selected_modes
from .metrics.spec import MetricSpec, base_name, parse_metric
from .stats import bootstrap, selection
from .store.reader import Checkpoint, Predictions, Run, Skipped, ValSetGuard, read_predictions

#: the metric the audit uses when none is given, by task (label-output runs have no scores)
DEFAULT_METRIC = {"binary": "balanced_accuracy", "multiclass": "balanced_accuracy", "multilabel": "f1", "regression": "mse"}
_UNBOUNDED = {"log_loss", "mse", "rmse", "mae"}


@dataclass(frozen=True)
class AuditOptions:
    """Thresholds and switches of the audit, each a CLI option of the same name."""

    metric: str | None = None  #: audit metric; default per task (DEFAULT_METRIC)
    mode: str | None = None
    resamples: int = bootstrap.DEFAULT_RESAMPLES
    seed: int = bootstrap.DEFAULT_SEED
    imbalance: float = 0.8  #: majority-class share from which the accuracy paradox is checked
    paradox_lift: float = 0.5  #: minimum share of the majority baseline's errors a model must remove
    paradox_recall: float = 0.5  #: minimum recall of the rarest class
    margin: float = 0.02  #: "by a margin": absolute for metrics in [0, 1], relative otherwise
    perfect: float = 0.999  #: accuracy / R2 at or above this is near-perfect
    min_rows: int = 100
    min_class_rows: int = 20
    tie_fraction: float = 0.3  #: share of checkpoints tied with the winner that makes noise a warning
    noise: bool = True  #: run the bootstrap (winner-within-noise)
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    focus: str | None = None  #: the checkpoint being shipped (default: run.json 'chosen', else the winner)

    def __post_init__(self) -> None:
        # NOTE: NaN compares false with everything, so `--imbalance nan` would silently turn
        # a check off; every threshold is validated here, for the CLI and the Python API.
        for name in ("imbalance", "paradox_lift", "paradox_recall", "perfect", "tie_fraction"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0):
                raise UsageError(f"--{name.replace('_', '-')} must be a number in [0, 1], got {value!r}")
        if not (isinstance(self.margin, (int, float)) and math.isfinite(self.margin) and self.margin >= 0):
            raise UsageError(f"--margin must be a finite number >= 0, got {self.margin!r}")
        for name, least in (("min_rows", 0), ("min_class_rows", 0), ("seed", 0), ("resamples", 100)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise UsageError(f"--{name.replace('_', '-')} must be an integer >= {least}, got {value!r}")


@dataclass
class _Stats:
    checkpoint: Checkpoint
    value: float | None = None
    train_value: float | None = None
    accuracy: float | None = None
    recalls: np.ndarray | None = None
    auc: float | None = None
    r2: float | None = None


@dataclass
class RunAudit:
    """What the audit learned about one run (also used by `pick` and `check`)."""

    run: Run
    spec: MetricSpec
    stats: list[_Stats]
    findings: list[Finding] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    winner: Checkpoint | None = None
    val_changed: bool = False
    prevalence: np.ndarray | None = None
    n_val: int = 0
    evaluation: selection.RunEvaluation | None = None
    selection: selection.RunSelection | None = None
    #: (val, train) predictions, without outputs, of the first checkpoint with both splits,
    #: kept by the pass for train-val-overlap (None when either could not be read)
    overlap: tuple[Predictions, Predictions] | None = None

    def tied_with_winner(self) -> list[str]:
        """Checkpoints other than the winner that cannot be told apart from the best."""
        if self.selection is None or self.winner is None:
            return []
        return [name for name in self.selection.tied_best if name != self.winner.name]


@dataclass(frozen=True)
class AuditReport:
    """Every finding, most severe first within each run, the inputs that could not be read
    (``problems``: exit 2) and what was left out (``skipped``, with the reasons)."""

    findings: tuple[Finding, ...]
    problems: tuple[str, ...]
    runs: tuple[RunAudit, ...] = ()
    skipped: tuple[Skipped, ...] = ()

    def failed(self, fail_on: str) -> bool:
        """True when a finding is at or above ``fail_on`` (info, warning, error; never)."""
        if fail_on == "never":
            return False
        return any(severity_rank(f.severity) >= severity_rank(fail_on) for f in self.findings)


def audit_spec(run: Run, options: AuditOptions) -> MetricSpec:
    """The metric the audit ranks a run by."""
    text = options.metric or DEFAULT_METRIC[run.task]
    return parse_metric(text, mode=options.mode, logged=run.logged_names(), logged_modes=selected_modes([run]))


def _better(spec: MetricSpec, a: float, b: float, margin: float) -> bool:
    """``a`` beats ``b`` by more than ``margin`` (relative for unbounded metrics)."""
    if spec.name in _UNBOUNDED or spec.source != "builtin":
        scale = max(abs(b), 1e-12)
        gain = (a - b) / scale if spec.maximize else (b - a) / scale
    else:
        gain = a - b if spec.maximize else b - a
    return gain > margin


def _best_index(spec: MetricSpec, values: Sequence[float | None]) -> int | None:
    best = None
    for i, v in enumerate(values):
        if v is not None and (best is None or spec.better(v, values[best])):  # type: ignore[arg-type]
            best = i
    return best


def _finite(preds: Predictions) -> bool:
    return preds.output.dtype.kind != "f" or bool(np.isfinite(preds.output).all())


def _perfect_auc(prep: metrics.Prepared) -> float | None:
    """1.0 when every positive outscores every negative (ROC AUC is then exactly 1), else
    None: an O(N) test, where computing the AUC itself would need a sort."""
    assert prep.proba is not None
    pos = prep.y.view(bool)
    if pos.all() or not pos.any():
        return None
    # NOTE: the unsaturated ranking scores: probabilities of 1.0 may hide distinct logits.
    return 1.0 if prep.score[pos].min() > prep.score[~pos].max() else None


class _Collector:
    """Pass 1, one checkpoint at a time: per-checkpoint statistics on val (and train where
    recorded), and with ``keep_rows`` the compact per-row data of the selection statistics.
    Fed by :func:`_collect` (which reads the files) or, as an
    :data:`~ckptaudit.metrics.evaluation.Observer`, by a verb's scoring pass (so `check`
    and `pick` read each val.npz once)."""

    def __init__(self, run: Run, spec: MetricSpec, keep_rows: bool = True) -> None:
        self.result = RunAudit(run=run, spec=spec, stats=[])
        self.scorer = RunScorer(run, [spec])
        self.bound = self.scorer.specs[0]
        self.result.spec = self.bound
        self.guard = ValSetGuard(run)
        self.rows = selection.EvaluationBuilder(run, self.bound, max_bytes=selection.MAX_ROW_BYTES if keep_rows else 0)
        # NOTE: the first checkpoint with both splits is where train-val-overlap looks; its
        # ids and hashes are kept so that the check does not read the files again.
        self.overlap_at = next((c for c in run.checkpoints if c.has_split("train") and c.has_split("val")), None)
        self._overlap_val: Predictions | None = None

    def wants_val(self, ckpt: Checkpoint) -> bool:
        """Whether the audit reads this checkpoint's val.npz."""
        return (self.bound.source != "logged" and not ckpt.metrics_only) or ckpt.has_split("val")

    def __call__(
        self,
        ckpt: Checkpoint,
        preds: Predictions | None,
        prep: metrics.Prepared | None,
        values: tuple[float | None, ...] | None,
        error: str | None,
    ) -> None:
        """Record one checkpoint (``prep``: the prepared view of finite ``preds``, or None)."""
        result, run, bound, rows = self.result, self.result.run, self.bound, self.rows
        st = _Stats(ckpt)
        result.stats.append(st)
        if error is not None:
            result.problems.append(error)
        if preds is not None:
            problem = self.guard.problem(ckpt, preds)
            if problem and not result.val_changed:
                result.val_changed = True
                rows.drop(f"the validation set changed: {problem}")
                result.findings.append(
                    Finding(
                        "val-set-changed",
                        "error",
                        run.name,
                        ckpt.name,
                        f"{problem}; scores of this run cannot be compared",
                        {"epoch": ckpt.epoch, "rows": preds.n},
                    )
                )
            result.n_val = preds.n
        if bound.source == "builtin":
            # NOTE: the view is prepared once and serves the metric and every statistic below.
            value = None if prep is None else metrics.KERNELS[bound.name](prep, bound)
            st.value = value if value is not None and math.isfinite(value) else None
        else:
            (st.value,), _ = self.scorer.score(ckpt, preds)
        rows.reads += preds is not None
        rows.add(ckpt, prep, st.value)
        if ckpt is self.overlap_at and preds is not None:
            self._overlap_val = replace(preds, output=preds.output[:0])
        if prep is None:
            if ckpt is self.overlap_at and preds is not None:
                self._train(ckpt, st, None)
            return
        if run.task in ("binary", "multiclass"):
            cm = metrics.confusion(prep, None)
            support = cm.sum(axis=1)
            st.accuracy = float(np.trace(cm) / cm.sum())
            st.recalls = np.divide(np.diag(cm), support, out=np.zeros(len(support)), where=support > 0)
            if result.prevalence is None:
                result.prevalence = support / support.sum()
        if run.task == "binary" and prep.proba is not None:
            st.auc = _perfect_auc(prep)
        if run.task == "regression":
            st.r2 = metrics.r2(prep, parse_metric("r2"))
        self._train(ckpt, st, prep)

    def _train(self, ckpt: Checkpoint, st: _Stats, prep: metrics.Prepared | None) -> None:
        """The checkpoint's train.npz, read once: its metric value (for a scorable
        checkpoint under a built-in metric) and, at the overlap checkpoint, its ids."""
        result, run, bound = self.result, self.result.run, self.bound
        scored = prep is not None and bound.source == "builtin" and ckpt.has_split("train")
        if not scored and ckpt is not self.overlap_at:
            return
        try:
            train = read_predictions(run, ckpt, "train")
        except RunFormatError as exc:
            if scored:
                result.problems.append(str(exc))
            return
        if ckpt is self.overlap_at and self._overlap_val is not None:
            result.overlap = (self._overlap_val, replace(train, output=train.output[:0]))
        if scored and _finite(train):
            value = metrics.KERNELS[bound.name](prepare_predictions(run, train), bound)
            st.train_value = value if math.isfinite(value) else None

    def finish(self) -> RunAudit:
        """The run's statistics, with its evaluation."""
        self.result.evaluation = self.rows.finish()
        return self.result


def _collect(run: Run, spec: MetricSpec, keep_rows: bool = True) -> RunAudit:
    """Pass 1 (see :class:`_Collector`), reading each val.npz and train.npz once."""
    collector = _Collector(run, spec, keep_rows)
    for ckpt in run.checkpoints:
        preds = None
        error = None
        if collector.wants_val(ckpt):
            try:
                preds = read_predictions(run, ckpt, "val")
            except RunFormatError as exc:
                error = str(exc)
        prep = prepare_predictions(run, preds) if preds is not None and _finite(preds) else None
        collector(ckpt, preds, prep, None, error)
    return collector.finish()


def _noise(ra: RunAudit, options: AuditOptions) -> None:
    """Selection statistics from the per-row data of pass 1 (no file is read again); a
    selection the caller computed from the same evaluation is kept."""
    if ra.winner is None or ra.val_changed or ra.evaluation is None or ra.selection is not None:
        return
    ra.selection = selection.select(ra.evaluation, resamples=options.resamples, seed=options.seed)


# --------------------------------------------------------------------------- checks


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


def _relies_on_accuracy(run: Run) -> bool:
    if run.selected_by is None:
        return False
    return base_name(run.selected_by.metric) in ("accuracy", "categorical_accuracy", "binary_accuracy")


def _focus(ra: RunAudit, o: AuditOptions) -> _Stats | None:
    """The checkpoint that matters: the one being shipped, else the one training chose,
    else the audit winner."""
    name = o.focus or ra.run.chosen
    if name is not None:
        for st in ra.stats:
            if st.checkpoint.name == name:
                return st
    return next((s for s in ra.stats if s.checkpoint is ra.winner), None)


def check_accuracy_paradox(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    st = _focus(ra, o)
    if ra.prevalence is None or st is None or st.accuracy is None or st.recalls is None:
        return
    prev = ra.prevalence
    baseline = float(prev.max())
    # NOTE: the paradox is accuracy that *looks* good: a checkpoint below the majority
    # baseline trades accuracy for the rare class, which is not what this finding is about.
    if baseline < o.imbalance or st.accuracy < baseline:
        return
    rare = int(np.argmin(np.where(prev > 0, prev, np.inf)))
    lift = (st.accuracy - baseline) / (1 - baseline) if baseline < 1 else 0.0
    rare_recall = float(st.recalls[rare])
    if lift >= o.paradox_lift and rare_recall >= o.paradox_recall:
        return
    names = ra.run.classes or tuple(str(i) for i in range(len(prev)))
    severity = "error" if _relies_on_accuracy(ra.run) else "warning"
    picked = f", and the run picks by {ra.run.selected_by.metric}" if severity == "error" and ra.run.selected_by else ""
    yield Finding(
        "accuracy-paradox",
        severity,
        ra.run.name,
        st.checkpoint.name,
        f"accuracy {st.accuracy:.4f} vs {baseline:.4f} for always predicting {names[int(np.argmax(prev))]!r} "
        f"(removes {lift:.0%} of its errors), recall of {names[rare]!r} {rare_recall:.4f}{picked}",
        {
            "prevalence": {names[i]: _r(p) for i, p in enumerate(prev)},
            "baseline_accuracy": _r(baseline),
            "accuracy": _r(st.accuracy),
            "error_reduction": _r(lift),
            "recall": {names[i]: _r(r) for i, r in enumerate(st.recalls)},
            "balanced_accuracy": _r(float(np.mean(st.recalls[prev > 0]))),
            "selected_by": None if ra.run.selected_by is None else ra.run.selected_by.metric,
        },
    )


def check_overlap(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    run = ra.run
    ckpt = next((c for c in run.checkpoints if c.has_split("train") and c.has_split("val")), None)
    if ckpt is None:
        return
    if ra.overlap is None:  # the pass could not read one of them
        return
    val, train = ra.overlap
    flagged = np.zeros(val.n, dtype=bool)
    by: list[str] = []
    for key, label in (("ids", "id"), ("input_hash", "input_hash")):
        tv, vv = getattr(train, key), getattr(val, key)
        if tv is None or vv is None:
            continue
        hit = np.isin(vv, tv)
        if hit.any():
            by.append(label)
            flagged |= hit
    if not flagged.any():
        return
    count = int(flagged.sum())
    examples = (val.ids[flagged][:5] if val.ids is not None else val.input_hash[flagged][:5]).tolist()  # type: ignore[index]
    yield Finding(
        "train-val-overlap",
        "error",
        run.name,
        None,
        f"{count} of {val.n} validation rows ({count / val.n:.1%}) also appear in train.npz (matched by {' and '.join(by)})",
        {"count": count, "fraction": _r(count / val.n), "matched_by": by, "examples": examples, "checked_at": ckpt.name},
    )


def check_val_beats_train(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    pairs = [s for s in ra.stats if s.value is not None and s.train_value is not None]
    if len(pairs) < 2 or ra.val_changed:
        return
    beats = [s for s in pairs if _better(ra.spec, s.value, s.train_value, o.margin)]  # type: ignore[arg-type]
    if len(beats) * 2 <= len(pairs):
        return
    gaps = [s.value - s.train_value for s in beats]  # type: ignore[operator]
    yield Finding(
        "val-beats-train",
        "warning",
        ra.run.name,
        None,
        f"validation {ra.spec.text} beats training on {len(beats)} of {len(pairs)} checkpoints "
        f"(median gap {float(np.median(gaps)):+.4f})",
        {
            "metric": ra.spec.text,
            "checkpoints": len(pairs),
            "val_better": len(beats),
            "margin": o.margin,
            "median_gap": _r(float(np.median(gaps))),
            "per_epoch": [{"epoch": s.checkpoint.epoch, "train": _r(s.train_value), "val": _r(s.value)} for s in pairs],
        },
    )


def check_suspicious_perfect(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    n = len(ra.stats)
    hits: list[tuple[_Stats, str, float]] = []
    for st in ra.stats:
        if st.accuracy is not None and st.accuracy >= o.perfect:
            hits.append((st, "accuracy", st.accuracy))
        elif st.auc is not None:
            hits.append((st, "roc_auc", st.auc))
        elif st.r2 is not None and st.r2 >= o.perfect:
            hits.append((st, "r2", st.r2))
        else:
            for key, value in st.checkpoint.logged.items():
                k = key.lower()
                if "val" in k and "loss" in k and math.isfinite(value) and value <= 1e-6:
                    hits.append((st, key, value))
                    break
    if not hits:
        return
    first, what, value = hits[0]
    position = ra.stats.index(first) + 1
    early = position <= max(1, n // 5)
    yield Finding(
        "suspicious-perfect",
        "warning",
        ra.run.name,
        first.checkpoint.name,
        f"validation {what} {value:.4f} at epoch {first.checkpoint.epoch} "
        f"(checkpoint {position} of {n}{', early in training' if early else ''}); {len(hits)} checkpoint(s) near-perfect",
        {
            "first_epoch": first.checkpoint.epoch,
            "metric": what,
            "value": _r(value, 6),
            "early": early,
            "checkpoints": [s.checkpoint.name for s, _, _ in hits],
        },
    )


def _is_train_name(name: str) -> bool:
    n = name.lower()
    # NOTE: Keras and the HF Trainer log the training loss as plain `loss`.
    return n == "loss" or n.startswith("train") or "_train" in n or "training" in n


#: (validation, training) names of logged losses, as Lightning users, Keras and HF log them
LOSS_PAIRS = (("val_loss", "train_loss"), ("val_loss", "loss"), ("eval_loss", "loss"), ("eval_loss", "train_loss"))


def check_selected_by_train(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    run = ra.run
    if run.selected_by is not None and _is_train_name(run.selected_by.metric):
        yield Finding(
            "selected-by-train-metric",
            "error",
            run.name,
            run.chosen,
            f"run.json selected_by names a training metric ({run.selected_by.metric}); "
            f"the best checkpoint by validation {ra.spec.text} is {ra.winner.name if ra.winner else '-'}",
            {"selected_by": run.selected_by.metric, "chosen": run.chosen, "val_winner": ra.winner.name if ra.winner else None},
        )
        return
    if run.chosen is None or ra.winner is None:
        return
    train_values = [s.train_value for s in ra.stats]
    best_train = _best_index(ra.spec, train_values)
    if best_train is None:
        return
    chosen_stats = next((s for s in ra.stats if s.checkpoint.name == run.chosen), None)
    if chosen_stats is None or ra.stats[best_train] is not chosen_stats or chosen_stats.checkpoint is ra.winner:
        return
    if run.chosen in ra.tied_with_winner():
        return  # chosen cannot be told apart from the validation winner: no harm done
    yield Finding(
        "selected-by-train-metric",
        "error",
        run.name,
        run.chosen,
        f"chosen {run.chosen} is the best by training {ra.spec.text} ({chosen_stats.train_value:.4f}) but not by "
        f"validation: {ra.winner.name} scores {_value(ra, ra.winner):.4f} vs {chosen_stats.value:.4f}",
        {"chosen": run.chosen, "val_winner": ra.winner.name, "metric": ra.spec.text},
    )


def _value(ra: RunAudit, ckpt: Checkpoint) -> float:
    return next(s.value for s in ra.stats if s.checkpoint is ckpt)  # type: ignore[return-value]


def check_overfitting(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    pairs = [s for s in ra.stats if s.value is not None and s.train_value is not None]
    spec = ra.spec
    if len(pairs) >= 3 and not ra.val_changed:
        vals = [cast(float, s.value) for s in pairs]
        trains = [cast(float, s.train_value) for s in pairs]
        label = spec.text
    else:
        found = None
        for val_name, train_name in LOSS_PAIRS:
            logged = [s for s in ra.stats if val_name in s.checkpoint.logged and train_name in s.checkpoint.logged]
            if len(logged) >= 3:
                found = (val_name, train_name, logged)
                break
        if found is None:
            return
        val_name, train_name, pairs = found
        vals = [s.checkpoint.logged[val_name] for s in pairs]
        trains = [s.checkpoint.logged[train_name] for s in pairs]
        spec = parse_metric(val_name, logged=[val_name])
        label = f"{val_name}/{train_name}"
    b = _best_index(spec, vals)
    if b is None or b == len(pairs) - 1:
        return
    last = len(pairs) - 1
    if not (_better(spec, vals[b], vals[last], o.margin) and spec.better(trains[last], trains[b])):  # type: ignore[arg-type]
        return
    yield Finding(
        "overfitting",
        "info",
        ra.run.name,
        pairs[b].checkpoint.name,
        f"validation {label} is best at epoch {pairs[b].checkpoint.epoch} ({vals[b]:.4f}) and worsens to {vals[last]:.4f} "
        f"by epoch {pairs[last].checkpoint.epoch}, while training improves from {trains[b]:.4f} to {trains[last]:.4f}",
        {
            "metric": label,
            "best_epoch": pairs[b].checkpoint.epoch,
            "gap_per_epoch": [
                {"epoch": s.checkpoint.epoch, "train": _r(t), "val": _r(v), "gap": _r(t - v)}
                for s, t, v in zip(pairs, trains, vals, strict=True)
            ],
        },  # type: ignore[operator]
    )


def check_best_is_last(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    scored = [s for s in ra.stats if s.value is not None]
    if len(scored) >= 2 and ra.winner is not None and scored[-1].checkpoint is ra.winner:
        yield Finding(
            "best-is-last",
            "info",
            ra.run.name,
            ra.winner.name,
            f"the best checkpoint by {ra.spec.text} is the last one (epoch {ra.winner.epoch}); training may not have converged",
            {"metric": ra.spec.text, "epoch": ra.winner.epoch, "value": _r(scored[-1].value)},
        )


def check_noise(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    sel = ra.selection
    if ra.winner is None or sel is None or sel.estimate is None:
        return
    tied = ra.tied_with_winner()
    if not tied:
        return
    n = sum(1 for s in ra.stats if s.value is not None)
    severity = "warning" if len(tied) + 1 >= max(3, o.tie_fraction * n) else "info"
    e = sel.estimate
    yield Finding(
        "winner-within-noise",
        severity,
        ra.run.name,
        ra.winner.name,
        f"{len(tied)} of {n - 1} other checkpoints cannot be told apart from the best, {ra.winner.name} "
        f"({ra.spec.text} {e.raw:.4f}), on {ra.n_val} rows (95% model confidence set); "
        f"expected on new data {e.expected:.4f} [{e.interval[0]:.4f}, {e.interval[1]:.4f}], optimism {e.optimism:+.4f}",
        {
            "metric": ra.spec.text,
            "winner": ra.winner.name,
            "value": _r(e.raw, 6),
            "expected_on_new_data": _r(e.expected, 6),
            "expected_ci95": [_r(e.interval[0], 6), _r(e.interval[1], 6)],
            "optimism": _r(e.optimism, 6),
            "tied": len(tied),
            "tied_checkpoints": tied,
            "checkpoints": n,
            "method": sel.method,
            "resamples": o.resamples,
            "seed": o.seed,
        },
    )


def check_small_val_set(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    if ra.n_val == 0:
        return
    evidence: dict[str, object] = {"rows": ra.n_val, "min_rows": o.min_rows}
    reasons = []
    if ra.n_val < o.min_rows:
        reasons.append(f"{ra.n_val} validation rows (< {o.min_rows})")
    if ra.prevalence is not None:
        counts = np.rint(ra.prevalence * ra.n_val).astype(int)
        present = counts[counts > 0]
        rarest = int(present.min()) if present.size else 0
        evidence.update(rarest_class_rows=rarest, min_class_rows=o.min_class_rows)
        if rarest < o.min_class_rows:
            reasons.append(f"the rarest class has {rarest} rows (< {o.min_class_rows})")
    if reasons:
        yield Finding(
            "small-val-set",
            "warning",
            ra.run.name,
            None,
            f"{'; '.join(reasons)}: one row moves {ra.spec.text} by a large step",
            evidence,
        )


CHECKS: tuple[Callable[[RunAudit, AuditOptions], Iterator[Finding]], ...] = (
    check_accuracy_paradox,
    check_overlap,
    check_val_beats_train,
    check_suspicious_perfect,
    check_selected_by_train,
    check_overfitting,
    check_best_is_last,
    check_noise,
    check_small_val_set,
)


def audit_run(run: Run, options: AuditOptions = AuditOptions()) -> RunAudit:
    """Audit one run: statistics, winner, selection statistics and findings."""
    return audit_collected(_collect(run, audit_spec(run, options), keep_rows=options.noise), options)


def audit_pass(run: Run, options: AuditOptions = AuditOptions(), *, keep_rows: bool | None = None) -> _Collector:
    """The audit's statistics of ``run`` as an :data:`~ckptaudit.metrics.evaluation.Observer`
    of a verb's own scoring pass (give it to ``iter_scores(..., observe=...)``, which must
    read every val.npz: ``read_all`` or ``guard``); then :func:`audit_collected`. It reads
    train.npz itself, once. ``keep_rows=False`` keeps no per-row data (the caller passes
    its own evaluation to :func:`audit_collected`)."""
    return _Collector(run, audit_spec(run, options), keep_rows=options.noise if keep_rows is None else keep_rows)


def audit_collected(
    collected: RunAudit | _Collector,
    options: AuditOptions = AuditOptions(),
    *,
    evaluation: selection.RunEvaluation | None = None,
    selected: selection.RunSelection | None = None,
) -> RunAudit:
    """Finish an audit from pass 1's statistics: winner, selection statistics and findings.
    ``evaluation`` and ``selected`` are the caller's, computed from the same pass under the
    audit's metric (so that they are not computed twice)."""
    ra = collected.finish() if isinstance(collected, _Collector) else collected
    if evaluation is not None:
        ra.evaluation = evaluation
    best = _best_index(ra.spec, [s.value for s in ra.stats])
    ra.winner = None if best is None else ra.stats[best].checkpoint
    if options.noise:
        if selected is not None and ra.winner is not None and not ra.val_changed:
            ra.selection = selected
        _noise(ra, options)
    for check in CHECKS:
        ra.findings.extend(check(ra, options))
    keep = [f for f in ra.findings if (not options.select or f.code in options.select) and f.code not in options.ignore]
    ra.findings = sorted(keep, key=lambda f: (-severity_rank(f.severity), list(CODES).index(f.code)))
    return ra


def audit_paths(paths: Sequence[str | Path], options: AuditOptions = AuditOptions()) -> AuditReport:
    """Audit every run under ``paths``; findings grouped by run, most severe first.

    A run that cannot be audited (unreadable, no checkpoint yet, a metric that does not
    apply to it) is left out with the reason (``AuditReport.skipped``); the others are
    audited. When every run is left out, :class:`~ckptaudit.sweep.NothingLeftError`.
    """
    from .store.reader import discover_sweep
    from .sweep import NothingLeftError, problems_of

    runs, skipped = discover_sweep(paths)
    if runs and options.metric is not None:
        # NOTE: a misspelt metric is one error for the whole command, not one per run.
        parse_metric(options.metric, mode=options.mode, logged=sorted({n for r in runs for n in r.logged_names()}))
    audits = []
    for run in runs:
        try:
            audits.append(audit_run(run, options))
        except MetricError as exc:
            kind = "skipped" if exc.path in (None, run.name) else "error"  # a custom metric that raised is an error
            skipped.append(Skipped(run.name, exc.path or run.name, exc.problem, kind))
        except CkptauditError as exc:
            skipped.append(Skipped(run.name, exc.path or run.name, exc.problem, "error"))
    if not audits:
        raise NothingLeftError(skipped)
    return AuditReport(
        findings=tuple(f for ra in audits for f in ra.findings),
        problems=tuple(p for ra in audits for p in ra.problems) + problems_of(skipped),
        runs=tuple(audits),
        skipped=tuple(skipped),
    )
