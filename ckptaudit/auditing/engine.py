"""``audit``: find the patterns that make a checkpoint choice dishonest, with the numbers.

One pass streams each run's checkpoints (one prediction file in memory at a time) and
collects what every check needs, including the compact per-row predictions from which
the selection statistics (:mod:`ckptaudit.stats.selection`) find the checkpoints that cannot be
told apart from the winner and what the winner is expected to score on new data. Each check is a
small function from those statistics to findings, in its own module under
:mod:`ckptaudit.auditing.rules`, so adding a check does not touch the others. Thresholds live in
:class:`AuditOptions` with documented defaults (README, `ckptaudit explain CODE`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import MetricError, RunFormatError, UsageError
from ..limits import check_resamples
from ..metrics import influence, operating
from ..metrics import kernels as metrics
from ..metrics.evaluation import RunScorer, _nonfinite, prepare_predictions, selected_modes
from ..metrics.spec import MetricSpec, parse_metric
from ..stats import bootstrap, selection
from ..store.reader import Checkpoint, Predictions, Run, Skipped, ValSetGuard, read_predictions
from ..store.runformat import NO_TASK_YET
from .common import _best_index
from .finding import Finding, severity_rank
from .rules import CHECKS, CODES
from .rules.logged_metric_mismatch import rescore_logged

#: the metric the audit uses when none is given, by task (label-output runs have no scores)
DEFAULT_METRIC = {"binary": "balanced_accuracy", "multiclass": "balanced_accuracy", "multilabel": "f1", "regression": "mse"}


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
        for name, least in (("min_rows", 0), ("min_class_rows", 0), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise UsageError(f"--{name.replace('_', '-')} must be an integer >= {least}, got {value!r}")
        check_resamples(self.resamples)


@dataclass
class _Stats:
    checkpoint: Checkpoint
    value: float | None = None
    train_value: float | None = None
    accuracy: float | None = None
    recalls: np.ndarray | None = None
    auc: float | None = None
    r2: float | None = None
    #: logged validation metric -> logged, re-scored (and causes where they disagree); see
    #: :func:`~ckptaudit.auditing.rules.logged_metric_mismatch.rescore_logged`
    logged_rescored: dict[str, dict[str, Any]] | None = None
    nonfinite: int = 0  #: NaN/inf values in the checkpoint's validation outputs


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
    #: the validation rows' group columns (slices, docs/slices.md), from the first scorable checkpoint
    groups: dict[str, np.ndarray] | None = None

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
    if options.metric:
        text = options.metric
    elif not run.task:  # an imported run not yet predicted: only what training logged
        if run.selected_by is None:
            raise MetricError(f"give --metric: {NO_TASK_YET}", run.name)
        text = run.selected_by.metric
    else:
        text = DEFAULT_METRIC[run.task]
    return parse_metric(text, mode=options.mode, logged=run.logged_names(), logged_modes=selected_modes([run]))


def _finite(preds: Predictions) -> bool:
    # NOTE: one sum over the values, no bool copy of them (issue 21: isfinite().all() over 50M)
    return _nonfinite(preds.output) == 0


def _perfect_auc(prep: metrics.Prepared) -> float | None:
    """1.0 when every positive outscores every negative (ROC AUC is then exactly 1), else
    None: an O(N) test, where computing the AUC itself would need a sort."""
    assert prep.proba is not None
    pos = prep.y.view(bool)
    if pos.all() or not pos.any():
        return None
    kept = influence.perfect_auc(prep)
    if kept is not None:  # the pass sorted the scores for ROC AUC's influence already
        return 1.0 if kept else None
    c = operating.cached_curve(prep) if prep.task == "binary" else None
    if c is not None and c.grows is not None:  # an operating point sorted the scores already
        return 1.0 if c.fp[c.grows[-1]] == 0 else None  # no negative at the lowest positive's threshold
    # NOTE: the unsaturated ranking scores: probabilities of 1.0 may hide distinct logits.
    # Every negative below the lowest positive: only the positives reach it (one compare and
    # a count, half the time of the negatives' copy and maximum).
    # (the positives' rows taken, then their scores: a boolean index is 3x slower)
    score = prep.score
    rows = np.flatnonzero(pos)
    return 1.0 if np.count_nonzero(score >= score[rows].min()) == rows.shape[0] else None


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
        # (whether each checkpoint has a train.npz, asked once here and read again per
        # checkpoint below: a file check each, 20 a run of an HPO sweep before)
        self._has_train = {c.name: c.has_split("train") for c in run.checkpoints}
        self.overlap_at = next((c for c in run.checkpoints if self._has_train[c.name] and c.has_split("val")), None)
        self._overlap_val: Predictions | None = None
        #: where the scoring pass that feeds this collector puts this very metric's value,
        #: set by that pass (None: the collector scores it itself)
        self.value_at: int | None = None

    def wants_influence(self, spec: MetricSpec, prep: metrics.Prepared) -> bool:
        """Whether the per-row data kept here need ``spec``'s influence on ``prep`` (see
        :data:`ckptaudit.metrics.evaluation.WANTS_INFLUENCE`)."""
        return self.rows.wants_influence(spec, prep)

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
            # NOTE: the view is prepared once and serves the metric and every statistic below
            # (a ranking metric's value with its per-row influence: one sort per column).
            if prep is not None and self.wants_influence(bound, prep):
                influence.remember(prep, bound)
            if prep is not None and values is not None and self.value_at is not None:
                st.value = values[self.value_at]  # the pass's kernel on this very view (finite or None)
            else:
                value = None if prep is None else metrics.KERNELS[bound.name](prep, bound)
                st.value = value if value is not None and math.isfinite(value) else None
        else:
            (st.value,), _ = self.scorer.score(ckpt, preds)
        rows.reads += preds is not None
        rows.add(ckpt, prep, st.value)
        if result.groups is None and prep is not None and prep.groups:
            result.groups = prep.groups  # slices: read by slice-regression and small-slice
        if ckpt is self.overlap_at and preds is not None:
            self._overlap_val = replace(preds, output=preds.output[:0])
        if preds is not None and prep is None:
            st.nonfinite = _nonfinite(preds.output)
        if prep is not None and ckpt.logged:
            st.logged_rescored = rescore_logged(run, ckpt, prep)
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
        has_train = self._has_train.get(ckpt.name)
        scored = prep is not None and bound.source == "builtin" and (ckpt.has_split("train") if has_train is None else has_train)
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
            try:
                value = metrics.KERNELS[bound.name](prepare_predictions(run, train), bound)
            except MetricError:
                if bound.group_agg is None and bound.group_name is None:
                    raise
                # NOTE: a slice metric on a train.npz without its group column (the framework
                # callbacks record val_groups only): no train value, not a failed run
                return
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
