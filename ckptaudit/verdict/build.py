"""Building the verdict: one evaluation pass per run feeds the statistics and the audit.

:class:`RunPass` watches a run's scoring pass (:func:`~ckptaudit.metrics.evaluation.iter_scores`,
directly or through :func:`~ckptaudit.sweep.score_sweep`): per metric an
:class:`~ckptaudit.stats.selection.EvaluationBuilder` keeps the compact per-row data, the
audit's collector its statistics, so each val.npz is read once. :meth:`RunPass.finish`
then computes, once, the selection statistics of every metric, identifies the chosen
checkpoint, finishes the audit and (under a policy) applies the gate's rules, and returns
the frozen :class:`~ckptaudit.verdict.model.Verdict` every view reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engines import read_ahead
from ..errors import CkptauditError, UsageError
from ..metrics.evaluation import CheckpointScore, Observer, RunScorer, iter_scores, observers
from ..metrics.spec import MetricSpec
from ..stats import bootstrap
from ..store.reader import Run, Skipped
from .model import Chosen, MetricVerdict, Verdict

if TYPE_CHECKING:
    from ..config import Policy

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Options:
    """What a verdict is asked to establish (each view asks for what it shows)."""

    statistics: bool = True  #: intervals, the tie set and the winner estimate
    all_metrics: bool = True  #: statistics for every metric (False: the first only)
    audit: bool = True  #: the audit's findings
    resamples: int = bootstrap.DEFAULT_RESAMPLES
    seed: int = bootstrap.DEFAULT_SEED
    mode: str | None = None
    policy: Policy | None = None  #: the gate's policy: adds its rules
    chosen: str | None = None  #: --chosen as given (None: run.json chosen)
    guard: bool = True  #: stop at a changed validation set (the report shows such a run instead)
    #: the audit's thresholds and switches (:class:`~ckptaudit.auditing.AuditOptions`; None:
    #: the defaults, ranked by the first metric)
    audit_options: Any = None
    #: the gate's engine (:func:`ckptaudit.gate.engine.judge`), applied under ``policy``; given
    #: by the caller so that the verdict, which the gate reads, never imports the gate
    judge: Callable[[Verdict], tuple[Any, ...]] | None = None

    def __post_init__(self) -> None:
        # NOTE: every verb's statistics come through here, so the bound on --resamples (and on
        # a repository's ckptaudit.toml) is checked once for all of them, before any pass
        if self.statistics or self.audit or self.policy is not None:
            from ..limits import MAX_RESAMPLES, check_resamples

            # (fewer than the least is each verb's own check: the report clamps, the API refuses)
            if isinstance(self.resamples, bool) or not isinstance(self.resamples, int) or self.resamples > MAX_RESAMPLES:
                check_resamples(self.resamples)


class RunPass:
    """One run's evaluation, gathered from its scoring pass (see the module docstring)."""

    def __init__(self, run: Run, specs: Sequence[MetricSpec], options: Options) -> None:
        self.run = run
        self.options = options
        self.bound = RunScorer(run, specs).specs
        self.collector: Any = None
        self.audit_error: CkptauditError | None = None
        self.builders: list[Any] = [None] * len(self.bound)
        self.pass_intervals: list[dict[str, tuple[float, float] | None]] = [{} for _ in self.bound]
        #: (the collector's result, each metric's evaluation), once built
        self._evaluated: tuple[Any, list[Any]] | None = None
        if options.audit:
            from ..auditing import audit_pass

            try:
                self.collector = audit_pass(run, self._audit_options(None))
            except CkptauditError as exc:  # raised where the verdict's findings are read
                self.audit_error = exc
            else:
                # NOTE: the pass scores the audit's metric already where it is one of its own
                # (the same kernel on the same view): the audit reads that value, not its own
                same = [k for k, spec in enumerate(self.bound) if spec == self.collector.bound and spec.source == "builtin"]
                self.collector.value_at = same[0] if same else None
        if options.statistics:
            wanted = range(len(self.bound)) if options.all_metrics else range(min(1, len(self.bound)))
            for k in wanted:
                spec = self.bound[k]
                if not bootstrap.supports(spec):
                    continue
                if spec.operating is not None:  # issue 20: the checkpoint and its threshold
                    from ..stats.operating import OperatingBuilder

                    self.builders[k] = OperatingBuilder(run, spec, self.options.resamples)
                    continue
                if k == 0 and self.collector is not None and self.collector.bound == spec and self.collector.rows.max_bytes:
                    # NOTE: the audit keeps the same per-row data: one copy serves both
                    self.builders[k] = self.collector.rows
                    continue
                from ..stats import selection  # (a plain rank computes no statistic: not imported)

                self.builders[k] = selection.EvaluationBuilder(run, spec)

    def _audit_options(self, focus: str | None) -> Any:
        from ..auditing import AuditOptions

        o = self.options
        if o.audit_options is not None:
            return replace(o.audit_options, focus=o.audit_options.focus or focus)
        return AuditOptions(metric=self.bound[0].text, mode=o.mode, resamples=max(o.resamples, 100), seed=o.seed, focus=focus)

    def observer(self) -> Any:
        """The :data:`~ckptaudit.metrics.evaluation.Observer` of this run's pass (None: nothing to gather)."""
        each: list[Any] = []
        if self.collector is not None:
            each.append(self.collector)
        resamples, seed = self.options.resamples, self.options.seed
        for k, builder in enumerate(self.builders):
            if builder is None or builder is getattr(self.collector, "rows", None):
                continue
            each.append(_metric_observer(k, builder, self.bound[k], self.pass_intervals[k], resamples, seed))
        return observers(*each)

    def evaluations(self) -> list[Any]:
        """The run's per-row evaluations, built once from the pass (the collector's, then
        each statistic's own): what :meth:`finish` selects on, and what a sweep's window
        batches beforehand (:func:`ckptaudit.stats.batched.precompute`)."""
        if self._evaluated is None:
            collected = None if self.collector is None else self.collector.finish()
            evaluations: list[Any] = []
            for builder in self.builders:
                if builder is None or builder.kind == "operating":
                    evaluations.append(None)
                elif collected is not None and builder is self.collector.rows:
                    evaluations.append(collected.evaluation)
                else:
                    evaluations.append(builder.finish())
            self._evaluated = (collected, evaluations)
        return self._evaluated[1]

    def finish(self, scores: Sequence[CheckpointScore], skipped: Sequence[Skipped] = ()) -> Verdict:
        """The run's verdict from its pass's ``scores`` (every statistic computed here, once)."""
        o = self.options
        scores = tuple(scores)
        problems = [n for s in scores if s.unreadable for n in s.notes[:1]]
        evaluated = self.evaluations()
        assert self._evaluated is not None
        collected = self._evaluated[0]
        metrics_out = []
        for k, spec in enumerate(self.bound):
            values = tuple(s.values[k] for s in scores)
            builder = self.builders[k]
            if builder is None:
                computed = o.statistics and (o.all_metrics or k == 0)
                metrics_out.append(MetricVerdict(spec, values, (None,) * len(scores), None, computed))
                continue
            if builder.kind == "operating":  # issue 20: checkpoint and threshold re-selected together
                sel = builder.select([sc.checkpoint for sc in scores], values, o.resamples, o.seed)
            else:
                from ..stats import selection

                sel = selection.select(evaluated[k], resamples=o.resamples, seed=o.seed)
            # NOTE: the selection's entries are read here, once; the views read the verdict
            by_name = {c.checkpoint: c for c in sel.checkpoints} if sel.available else {}
            intervals = self._intervals(k, spec, scores, by_name)
            entries = [by_name.get(s.checkpoint.name) for s in scores]
            tied = tuple(None if e is None else e.tied_best for e in entries)
            names = {s.checkpoint.name: i for i, s in enumerate(scores)}
            metrics_out.append(MetricVerdict(spec, values, intervals, sel, True, tied, names))
        chosen = self._chosen(scores)
        audit = None
        if collected is not None:
            from ..auditing import audit_collected

            first = metrics_out[0]
            same = first.selection is not None and collected.spec == first.spec
            focus = None if chosen.checkpoint is None else chosen.checkpoint.name
            audit = audit_collected(collected, self._audit_options(focus), selected=first.selection if same else None)
        verdict = Verdict(
            run=self.run,
            metrics=tuple(metrics_out),
            scores=scores,
            resamples=o.resamples,
            seed=o.seed,
            audit=audit,
            chosen=chosen,
            policy=o.policy,
            problems=tuple(dict.fromkeys(problems)),
            skipped=tuple(skipped),
            audit_error=self.audit_error,
        )
        if o.policy is not None and o.judge is not None:
            verdict = replace(verdict, rules=o.judge(verdict))
        return verdict

    def _intervals(
        self, k: int, spec: MetricSpec, scores: tuple[CheckpointScore, ...], by_name: dict[str, Any]
    ) -> tuple[tuple[float, float] | None, ...]:
        """Each checkpoint's 95% interval: the selection's where it has one; else the
        per-checkpoint bootstrap the pass computed (a metric without a per-row form); else,
        for a run past the per-row memory bound, a bootstrap of that checkpoint on its own
        (its val.npz read again: the one exception, see :mod:`ckptaudit.stats.selection`)."""
        out: list[tuple[float, float] | None] = []
        kept = self.pass_intervals[k]
        for s in scores:
            name = s.checkpoint.name
            entry = by_name.get(name)
            if entry is not None:
                out.append(entry.interval)
            elif name in kept:
                out.append(kept[name])
            elif s.values[k] is not None and not s.checkpoint.metrics_only and spec.source == "builtin":
                out.append(_read_again(self.run, spec, s.checkpoint, self.options))
            else:
                out.append(None)
        return tuple(out)

    def _chosen(self, scores: tuple[CheckpointScore, ...]) -> Chosen:
        """The checkpoint being shipped: ``--chosen`` identified by the run store
        (:mod:`ckptaudit.store.identity`: a name, folder, provenance or weights file), else
        run.json ``chosen`` (a name: no weights are read, so `rank` stays light)."""
        given = self.options.chosen
        if given is None:
            if self.run.chosen is None:
                return Chosen(None, None)
            ckpt = self.run.checkpoint(self.run.chosen)
            if ckpt is None:
                problem = f"run.json 'chosen' names {self.run.chosen!r}, which is not a checkpoint of the run"
                if self.options.policy is not None:
                    raise UsageError(problem, self.run.path)  # the gate never judges a run it cannot place
                return Chosen(None, None, problem=f"{self.run.name}: {problem}")
            return Chosen(ckpt, "run.json chosen", (ckpt.name,))
        from ..store.identity import identify, provenance_metric

        identified = identify(self.run, given)
        if identified is None:
            return Chosen(None, None, given=given)
        ckpt = _judged(identified.candidates, self.run, scores, self.bound[0])
        how = identified.how
        if len(identified.candidates) > 1:
            how = f"{how}; judged {ckpt.name} (the worst of them by {self.bound[0].text}, then the earliest)"
        return Chosen(ckpt, how, tuple(c.name for c in identified.candidates), given, provenance_metric(given))


def _metric_observer(
    k: int, builder: Any, spec: MetricSpec, intervals: dict[str, Any], resamples: int, seed: int
) -> Callable[..., None]:
    """Feeds metric ``k``'s values to its builder; a metric without a per-row form gets
    each scorable checkpoint's bootstrap interval from the predictions in hand."""
    per_row = builder.kind is not None

    def observe(ckpt: Any, preds: Any, prep: Any, values: tuple, error: str | None) -> None:
        builder.reads += preds is not None
        builder.add(ckpt, prep, values[k])
        if not per_row and prep is not None and values[k] is not None:
            intervals[ckpt.name] = bootstrap.interval(spec, prep, resamples=resamples, seed=seed)

    if per_row and hasattr(builder, "wants_influence"):
        observe.wants_influence = builder.wants_influence  # type: ignore[attr-defined]  # one sort per column
    return observe


def _read_again(run: Run, spec: MetricSpec, ckpt: Any, options: Options) -> tuple[float, float] | None:
    from ..metrics.evaluation import prepare_predictions
    from ..store.reader import read_predictions

    try:
        prep = prepare_predictions(run, read_predictions(run, ckpt))
    except CkptauditError:
        return None
    return bootstrap.interval(spec, prep, resamples=options.resamples, seed=options.seed)


def _judged(candidates: tuple[Any, ...], run: Run, scores: Sequence[CheckpointScore], spec: MetricSpec) -> Any:
    """The candidate judged when the shipped weights match several checkpoints
    (docs/check.md): the worst under the policy metric (an unscorable one is worst), then
    run.json ``chosen``, then the earliest epoch, as in `rank`'s ties."""
    if len(candidates) == 1:
        return candidates[0]
    sign = 1.0 if spec.maximize else -1.0
    value_of = {id(s.checkpoint): s.values[0] for s in scores}

    def key(ckpt: Any) -> tuple:
        value = value_of.get(id(ckpt))
        return (value is not None, 0.0 if value is None else sign * value, ckpt.name != run.chosen, ckpt.order_key)

    return min(candidates, key=key)


def evaluate_run(
    run: Run, specs: Sequence[MetricSpec], options: Options = Options(), *, cache: bool = False, observe: Observer | None = None
) -> Verdict:
    """The verdict of one run under ``specs`` (unbound; the first orders), in one pass;
    ``observe`` also sees that pass (what a view draws besides the verdict, e.g. the
    report's diagnostics), so no file is read twice."""
    gather, scores = scan_run(run, specs, options, cache=cache, observe=observe)
    return gather.finish(scores, run.skipped)


def scan_run(
    run: Run, specs: Sequence[MetricSpec], options: Options = Options(), *, cache: bool = False, observe: Observer | None = None
) -> tuple[RunPass, list[CheckpointScore]]:
    """The one pass of :func:`evaluate_run`: what it gathered and the scores; the verdict
    is ``gather.finish(scores, run.skipped)`` (a caller that judges runs in windows batches
    their selections in between, :func:`batched_selections`)."""
    gather = RunPass(run, specs, options)
    watch = observers(gather.observer(), observe)
    # NOTE: the audit reads every val.npz (its statistics need them): with the guard the pass
    # does; without it, read_all says so.
    read_all = gather.collector is not None
    # NOTE: under --engine ray the files are read (and checked) in Ray tasks, ahead of this pass
    pool = None if cache else read_ahead([run], [specs], guard=options.guard, read_all=read_all)
    try:
        scores = list(iter_scores(run, specs, guard=options.guard, cache=cache, observe=watch, read_all=read_all, pool=pool))
    finally:
        if pool is not None:
            pool.close()
    return gather, scores


def _values_only(run: Run, specs: Sequence[MetricSpec], scores: list[CheckpointScore], options: Options) -> Verdict:
    """The verdict of a pass that gathered nothing but the scores (a plain `rank`): values
    only, without binding the specs again (a sweep of thousands of runs stays linear)."""
    scores_t = tuple(scores)
    metrics_out = tuple(MetricVerdict(spec, tuple(s.values[k] for s in scores_t)) for k, spec in enumerate(specs))
    problems = tuple(n for s in scores_t if s.unreadable for n in s.notes[:1])
    return Verdict(run, metrics_out, scores_t, options.resamples, options.seed, problems=problems, skipped=run.skipped)


@dataclass(frozen=True)
class Verdicts:
    """The verdicts of a sweep: one per usable run, and what was left out (with why)."""

    specs: tuple[MetricSpec, ...]
    verdicts: tuple[Verdict, ...]
    skipped: tuple[Skipped, ...]
    problems: tuple[str, ...]

    @property
    def runs(self) -> tuple[Run, ...]:
        """The runs judged, in sweep order."""
        return tuple(v.run for v in self.verdicts)

    def scores(self) -> list[CheckpointScore]:
        """Every checkpoint's scores, run by run."""
        return [s for v in self.verdicts for s in v.scores]


#: runs whose verdicts are built together (their selections batched where they resample alike)
WINDOW = 64


@contextmanager
def batched_selections(gathers: Sequence[RunPass]) -> Iterator[None]:
    """While the block runs (the window's verdicts built), the first metric's resampled
    values of the window's runs (passes under one set of options), computed in wide
    products where they resample alike (:mod:`ckptaudit.stats.batched`; each run's
    selection then finds its own); dropped after, however the block ends. Evaluations are
    built here once, as :meth:`RunPass.finish` would build them."""
    from ..stats import batched

    try:
        options = gathers[0].options if gathers else None
        if options is not None and options.statistics:
            evaluations = [first for first in map(_first_evaluation, gathers) if first is not None]
            batched.precompute(evaluations, options.resamples, options.seed)
        yield
    finally:
        batched.release()


def _first_evaluation(gather: RunPass) -> Any:
    """The run's first metric's evaluation (None: none, or it cannot be built: the error is
    raised again where the run's verdict is built)."""
    try:
        return gather.evaluations()[0]
    except CkptauditError:
        return None


def batchable(gather: RunPass) -> bool:
    """Whether a run's first selection could be batched with other runs' (a caller that
    holds runs in a window finishes the others at once: holding them would only cost memory)."""
    if not gather.options.statistics:
        return False
    from ..stats import batched

    first = _first_evaluation(gather)
    return first is not None and batched.eligible(first, gather.options.resamples)


def evaluate_paths(
    paths: Sequence[str | Path],
    metrics: Sequence[str],
    options: Options = Options(statistics=False, audit=False),
    *,
    progress: ProgressFn | None = None,
    cache: bool = False,
    jobs: int | None = None,
) -> Verdicts:
    """The verdict of every usable run under ``paths`` (one pass per run; worker
    processes where the pass gathers nothing but the scores)."""
    from ..sweep import problems_of, score_sweep

    passes: dict[int, RunPass] = {}
    gathering = options.statistics or options.audit or options.policy is not None

    def watch(run: Run, specs: Sequence[MetricSpec]) -> Any:
        gather = RunPass(run, specs, options)
        passes[id(run)] = gather
        return gather.observer()

    sweep = score_sweep(
        paths, metrics, mode=options.mode, progress=progress, cache=cache, observe=watch if gathering else None, jobs=jobs
    )
    by_run: dict[int, list[CheckpointScore]] = {id(run): [] for run in sweep.runs}
    for s in sweep.scores:
        group = by_run.get(id(s.run))
        if group is not None:
            group.append(s)
    verdicts = []
    for first in range(0, len(sweep.runs), WINDOW):
        window = sweep.runs[first : first + WINDOW]
        with batched_selections([passes[id(run)] for run in window if id(run) in passes]):
            for run in window:
                gather = passes.get(id(run))
                if gather is None:
                    verdicts.append(_values_only(run, sweep.specs, by_run[id(run)], options))
                else:
                    verdicts.append(gather.finish(by_run[id(run)], run.skipped))
    problems = tuple(p for v in verdicts for p in v.problems if p) + problems_of(sweep.skipped)
    return Verdicts(tuple(sweep.specs), tuple(verdicts), tuple(sweep.skipped), problems)


def evaluate(
    path: str | Path | Run,
    metrics: str | Sequence[str] = (),
    *,
    policy: Policy | None = None,
    chosen: str | None = None,
    mode: str | None = None,
    resamples: int = bootstrap.DEFAULT_RESAMPLES,
    seed: int = bootstrap.DEFAULT_SEED,
    audit: bool = True,
    judge: Callable[[Verdict], tuple[Any, ...]] | None = None,
) -> Verdict:
    """The verdict of the one run at ``path``: every metric's values and intervals, the
    tie set, the winner estimate, the findings, the chosen checkpoint and (with ``policy``,
    a :class:`~ckptaudit.config.Policy`, and ``judge``: :func:`ckptaudit.gate.engine.judge`)
    the gate's rules. Metrics default to the policy's,
    else the audit's default for the run's task."""
    from ..metrics.evaluation import parse_metrics
    from ..store.reader import discover

    runs = [path] if isinstance(path, Run) else discover([path])
    if len(runs) != 1:
        raise UsageError(f"a verdict is of one run at a time; {len(runs)} runs found (name one run)", str(path))
    run = runs[0]
    texts = [metrics] if isinstance(metrics, str) else list(metrics)
    if not texts and policy is not None:
        texts = [policy.metric_spec()]
    if not texts:
        from ..auditing import DEFAULT_METRIC

        texts = [DEFAULT_METRIC[run.task]]
    specs = parse_metrics(texts, runs, mode if policy is None else policy.mode)
    options = Options(
        resamples=resamples if policy is None else policy.resamples,
        seed=seed if policy is None else policy.seed,
        mode=mode if policy is None else policy.mode,
        policy=policy,
        chosen=chosen,
        audit=audit or policy is not None,
        judge=judge,
    )
    return evaluate_run(run, specs, options)
