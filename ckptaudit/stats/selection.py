"""Statistics that know the winner was selected.

A run's winner is the best of many checkpoints scored on the same validation rows, so
its validation value flatters it (the maximum of noisy estimates is biased upward) and
comparing it pairwise with every other checkpoint multiplies false alarms. This module
answers both questions over one run's per-row predictions of *all* checkpoints at once:

* **Expected on new data** (selection-corrected estimate of the winner): bootstrap the
  whole selection (Tsamardinos et al. 2018, "BBC-CV"): resample rows, select the best
  checkpoint on the in-bag rows, score that checkpoint on the out-of-bag rows. The mean
  of those scores estimates what the selected checkpoint scores on new data; their 2.5th
  and 97.5th percentiles are its 95% interval; ``optimism`` is how far the raw validation
  value flatters it (positive: the raw value is better than the expectation).
* **The checkpoints that cannot be told apart from the best**: a model confidence set
  (Hansen, Lunde & Nason 2011) with the range statistic: a checkpoint leaves the set when
  the best one in the set beats it by more than the 95% quantile of the bootstrap maximum
  of all centred pairwise differences in the set, step by step until none leaves. The set contains the truly best checkpoints
  with probability >= 95%, so a run of equal checkpoints reports one of them as worse at
  most about 5% of the time, however many there are.
* A 95% interval of every checkpoint's value: the percentile interval of the same
  resamples; for one proportion (accuracy; recall, precision, specificity, npv of one
  class) the Wilson interval of its counts; for ROC AUC with a small class the
  Hanley-McNeil interval (:mod:`ckptaudit.stats.intervals`).
* The smallest gap to the best the confidence set could have told apart
  (``RunSelection.detectable_difference``): "cannot be told apart" is not "equal".

Resampling is by rows wherever the metric depends on the class mix (accuracy, precision,
F1, balanced rates, mean losses); only ROC AUC and average precision resample within each
class (:func:`~ckptaudit.stats.rows.row_data`). A resample whose in-bag or out-of-bag rows
hold no row of the metric's class (binary: no positive) is undefined for a class metric:
it is left out and counted (``WinnerEstimate.skipped_draws``), never scored 0; with fewer
than :data:`~ckptaudit.stats.intervals.MIN_POSITIVES` such rows the winner estimate says
``too_few_positives``. Row weights: :mod:`ckptaudit.stats.weights`; large validation sets
draw the resampled sums from their Gaussian limit (:mod:`ckptaudit.stats.gaussian`).

Where things live: per-row forms and the one pass (:mod:`~ckptaudit.stats.rows`), weights
(:mod:`~ckptaudit.stats.weights`), weighted values (:mod:`~ckptaudit.stats.weighted`), the
Gaussian path (:mod:`~ckptaudit.stats.gaussian`), intervals
(:mod:`~ckptaudit.stats.intervals`), the confidence set (:mod:`~ckptaudit.stats.confidence`),
results (:mod:`~ckptaudit.stats.results`); this module runs them (:func:`select`) and
re-exports every name other modules import from it.

One pass reads each prediction file once and keeps compact per-row data
(:class:`RowData`): predicted labels as uint8 for confusion metrics, the displayed
metric's own score columns (in their dtype) for ROC AUC / average precision, float32
per-row losses for mean metrics (log_loss, brier,
mse, mae, rmse, top_k_accuracy, multilabel subset accuracy), predicted labels packed 8 to
a byte for multilabel per-label metrics, float32 squared residuals for R2, and (bin,
hit - confidence) float64 pairs for ece. Every value is a function of weighted sums
(:func:`weighted_values`, the one bootstrap engine; :mod:`ckptaudit.stats.bootstrap` runs
on it too): a confusion metric needs only each class's weighted true-positive, predicted
and actual counts and n (:func:`~ckptaudit.metrics.kernels.from_counts`), computed by
matrix products with 0/1 indicators (up to 8 classes) or sparse ones (more; many-class
accuracy from per-row hits), never
classes x classes cells per resample; a multilabel metric the same per label; R2 the sums
of the squared residuals and of the centred targets. Memory:
``rows x checkpoints x (1 or 4)`` bytes, e.g.
5 MB (labels) or 20 MB (scores) for 50 checkpoints x 100,000 rows; above
:data:`MAX_ROW_BYTES` (512 MiB) no per-row data is kept and the statistics are reported
as unavailable, with the reason (`rank --ci` and `pick` then bootstrap each checkpoint they
show on its own, which reads its val.npz a second time: the one exception to "each
prediction file is read once per command"). The bootstrap works on chunks of resamples whose weight
matrices stay under ~64 MB (with the out-of-bag indicators), groups checkpoints so that each
count array stays under 4 MB, and never allocates resamples x checkpoints x checkpoints
nor resamples x classes x classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..metrics.spec import MetricSpec
from ..store.reader import Run

# NOTE: the statistics live in one module per concept; every name other modules and tests
# import from here stays importable from here.
from . import (
    ranking_rows,  # noqa: F401
    streamed,
)
from .batched import precomputed
from .confidence import confidence_set, confidence_set_threshold, rows_per_block  # noqa: F401
from .gaussian import (  # noqa: F401
    _GAUSSIAN_BLOCK_ROWS,
    _GAUSSIAN_MAX_FEATURES,
    _GAUSSIAN_MIN_CELLS,
    _GAUSSIAN_MIN_STRATUM,
    _features,
    _gaussian_sums,
    gaussian_ok,
    gaussian_values,
)
from .intervals import (  # noqa: F401
    MIN_POSITIVES,
    SMALL_CLASS_ROWS,
    _all_percentiles,
    _checkpoint_interval,
    _percentiles,
    event_class,
    hanley_mcneil_interval,
    proportion_counts,
    wilson_interval,
)
from .results import CORRECTION, LEVEL, METHOD, CheckpointSelection, RunSelection, WinnerEstimate  # noqa: F401
from .rows import (  # noqa: F401
    _MEAN,
    _RANKING,
    MAX_ROW_BYTES,
    EvaluationBuilder,
    RowData,
    RunEvaluation,
    _per_row,
    evaluate_arrays,
    evaluate_run,
    row_data,
    row_kind,
)
from .streamed import Draws
from .weighted import _absent, weighted_values  # noqa: F401
from .weights import (  # noqa: F401
    _CHUNK_CELLS,
    _DRAW_CACHE,
    _DRAW_CACHE_BYTES,
    _DRAW_CACHE_MIN_CELLS,
    _EXACT_CELLS,
    _POISSON_LUT,
    _by_stratum,
    _state_key,
    _stratum_weights,
    _weight_chunks,
)

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0


def select(evaluation: RunEvaluation, *, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> RunSelection:
    """Selection statistics of one evaluated run (see the module docstring)."""
    # NOTE: the matrices here are small (checkpoints wide); BLAS threads only contend with
    # each other, which on a busy 2-core machine made this 4x slower.
    with _one_blas_thread():
        return _select(evaluation, resamples, seed)


_CONTROLLER: list[Any] = []


def _one_blas_thread() -> Any:
    """A context that limits BLAS to one thread. The controller (which inspects the loaded
    libraries, ~1 ms) is made once per process: a sweep of 1000 runs selects 1000 times."""
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController  # a dependency of scikit-learn

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")


#: the latest run's resampled values: (key, row data, (v_in, v_out), generator state after)
_LAST_RESAMPLED: list[tuple[tuple, Any, tuple[np.ndarray, np.ndarray], Any]] = []
#: resampled values up to this many bytes are remembered
_LAST_RESAMPLED_BYTES = 4 * 2**20


def _resampled(
    rows: RowData, spec: MetricSpec, task: str, resamples: int, rng: np.random.Generator, event: int | None, exact: bool = False
):
    """In-bag and out-of-bag values (resamples, C); with an ``event`` class, a resample
    whose in-bag or out-of-bag rows hold none of it is NaN (undefined, not 0). ``exact``:
    never the Gaussian sums (a block of a run's checkpoints, :mod:`ckptaudit.stats.streamed`).

    The selection, the trend and the regret of one run resample the same rows with the
    same seed: the latest values are remembered (by the row data object's identity, the metric,
    the generator's state and the path) and handed back as they are. Callers leave them
    as they found them (``_draws`` negates in place and back)."""
    gaussian = not exact and gaussian_ok(rows, resamples)
    key = (spec, task, resamples, event, gaussian, _state_key(rng.bit_generator.state))
    batched = precomputed(rows, key)  # a sweep's window computed in wide products
    if batched is not None:
        rng.bit_generator.state = batched[1]
        return batched[0]
    if _LAST_RESAMPLED:
        old_key, old_rows, values, state = _LAST_RESAMPLED[0]
        if old_rows is rows and old_key == key:
            rng.bit_generator.state = state
            return values
    values = _resampled_now(rows, spec, task, resamples, rng, event, gaussian)
    _LAST_RESAMPLED.clear()
    if values[0].nbytes + values[1].nbytes <= _LAST_RESAMPLED_BYTES:
        # NOTE: holds a reference to the row data, so that its identity cannot be reused
        _LAST_RESAMPLED.append((key, rows, values, rng.bit_generator.state))
    return values


def _resampled_now(
    rows: RowData, spec: MetricSpec, task: str, resamples: int, rng: np.random.Generator, event: int | None, gaussian: bool
):
    """:func:`_resampled`, computed."""
    if gaussian:
        return gaussian_values(rows, spec, task, resamples, rng)
    # NOTE: (resamples, C) float64 twice is what a sweep of many checkpoints holds: a single
    # chunk's values are used as they are (no copy), several are written into one array
    # (no list of chunks and no concatenation beside it; issue 21: 1.5 GB at 20,000).
    in_out: np.ndarray | None = None
    done = 0
    by_stratum = _by_stratum(rows, resamples)
    for both in _weight_chunks(by_stratum.strata, resamples, rng, out_of_bag=True):
        k = both.shape[0] // 2
        if by_stratum.group_div:  # slices: the worst group is selected in bag, scored out of bag
            from .groupstats import paired_values

            values_both = paired_values(by_stratum, both, spec, task)
            if event is not None and by_stratum.classes is not None:
                values_both[_absent(both, by_stratum.classes, event)] = np.nan
        else:
            values_both = streamed.weighted_in_blocks(by_stratum, both, spec, task, event, resamples)
        del both
        if k == resamples:
            return values_both[:k], values_both[k:]
        if in_out is None:
            in_out = np.empty((2, resamples, values_both.shape[1]))
        in_out[0, done : done + k] = values_both[:k]
        in_out[1, done : done + k] = values_both[k:]
        done += k
        del values_both
    assert in_out is not None
    return in_out[0], in_out[1]


def _picked(v_in: np.ndarray, sign: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per resample: the checkpoint selected in bag (the largest oriented value, NaN as
    -inf, ties to the first), whether any value is finite, whether all are; in blocks of
    resamples, so that no other (resamples, C) array is made beside ``v_in``."""
    count = v_in.shape[0]
    picked = np.empty(count, dtype=np.intp)
    any_finite = np.empty(count, dtype=bool)
    all_finite = np.empty(count, dtype=bool)
    step = rows_per_block(v_in.shape[1])
    for start in range(0, count, step):
        part = v_in[start : start + step]
        if part.shape[1] <= _NARROW:
            _picked_narrow(
                part, sign, picked[start : start + step], any_finite[start : start + step], all_finite[start : start + step]
            )
            continue
        ok = np.isfinite(part)
        picked[start : start + step] = np.where(ok, sign * part, -np.inf).argmax(axis=1)
        any_finite[start : start + step] = ok.any(axis=1)
        all_finite[start : start + step] = ok.all(axis=1)
    return picked, any_finite, all_finite


#: up to this many checkpoints, :func:`_picked` works column by column
_NARROW = 16


def _picked_narrow(part: np.ndarray, sign: float, picked: np.ndarray, any_finite: np.ndarray, all_finite: np.ndarray) -> None:
    """:func:`_picked` of a block of few checkpoints, into the given arrays: a running
    maximum over the columns, first index on ties (what argmax gives), instead of numpy's
    reductions along a short inner axis (a 1,000 x 5 block took 0.2 ms, 0.03 here)."""
    cols = np.ascontiguousarray(part.T)
    ok = np.isfinite(cols)
    oriented = np.where(ok, sign * cols, -np.inf)
    picked[...] = 0
    best = oriented[0].copy()
    for j in range(1, oriented.shape[0]):
        better = oriented[j] > best
        picked[better] = j
        np.maximum(best, oriented[j], out=best)
    np.any(ok, axis=0, out=any_finite)
    np.all(ok, axis=0, out=all_finite)


def _draws(
    rows: RowData,
    spec: MetricSpec,
    task: str,
    resamples: int,
    rng: np.random.Generator,
    event: int | None,
    sign: float,
    point: np.ndarray,
    w_local: int,
) -> Draws:
    """The bootstrap's :class:`~ckptaudit.stats.streamed.Draws`, every checkpoint's values
    held at once (resamples x checkpoints, in bag and out of bag)."""
    v_in, v_out = _resampled(rows, spec, task, resamples, rng, event)
    # BBC: the checkpoint each resample selects (ties to the earlier epoch), scored out of
    # bag; a resample where the metric is undefined in or out of bag is left out, and counted
    picked, any_finite, finite = _picked(v_in, sign)
    oob_all = v_out[np.arange(v_out.shape[0]), picked]
    del v_out
    # model confidence set over the resamples where every checkpoint is defined
    # NOTE: v_in itself where nothing is left out (no copy): larger-is-better as it is,
    # smaller-is-better negated in place and back (exact: 1.0 * v is v, -(-v) is v)
    whole = bool(finite.all())
    flip = whole and sign != 1.0
    oriented = v_in if whole else sign * v_in[finite]
    if flip:
        np.negative(v_in, out=v_in)
    try:
        members, pvalues, q = (
            confidence_set_threshold(oriented, sign * point, w_local)
            if finite.any()
            else ([w_local], np.ones(point.shape[0]), None)
        )
    finally:
        if flip:
            np.negative(v_in, out=v_in)
    del oriented
    intervals = _all_percentiles(v_in)
    return Draws(oob_all, any_finite, finite, members, pvalues, q, intervals)


def _select(evaluation: RunEvaluation, resamples: int, seed: int) -> RunSelection:
    spec = evaluation.spec
    sign = 1.0 if spec.maximize else -1.0
    values = evaluation.values
    ckpts = evaluation.checkpoints
    scorable = [i for i, v in enumerate(values) if v is not None]
    winner_i = max(scorable, key=lambda i: (sign * values[i], -i)) if scorable else None  # type: ignore[operator]
    winner = None if winner_i is None else ckpts[winner_i].name
    rows = evaluation.rows

    def plain(note: str | None) -> RunSelection:
        entries = tuple(CheckpointSelection(c.name, c.epoch, v, None, None, None) for c, v in zip(ckpts, values, strict=True))
        n = 0 if rows is None else int(rows.data.shape[1])
        return RunSelection(evaluation.run.name, spec.text, spec.maximize, n, resamples, seed, winner, None, entries, (), note)

    if rows is None or winner_i is None:
        return plain(evaluation.rows_note or "no checkpoint could be scored")
    if winner_i not in evaluation.scored or winner is None:
        return plain("the winner has no per-row data")
    task = evaluation.run.task
    n = int(rows.data.shape[1])
    rng = np.random.default_rng(seed)
    event = event_class(spec, task, rows.kind)
    scored = list(evaluation.scored)
    if rows.kind == "confusion":  # the kernels' values are exactly the per-row counts' values
        point = np.array([values[i] for i in scored], dtype=np.float64)
    else:  # float32 rows: centre the bootstrap on the same numbers it resamples
        point = weighted_values(rows, np.ones((1, n), dtype=np.float32), spec, task)[0]
    w_local = scored.index(winner_i)

    if streamed.streams(rows, resamples):
        # NOTE: many checkpoints: their bootstrap values in blocks, never all at once
        draws = streamed.draws(rows, spec, task, resamples, rng, event, sign, point, w_local)
    else:
        draws = _draws(rows, spec, task, resamples, rng, event, sign, point, w_local)
    usable = np.isfinite(draws.oob_all) & draws.any_finite
    oob_scores = draws.oob_all[usable]
    positives = None if event is None or rows.classes is None else int(np.count_nonzero(rows.classes == event))
    estimate = None
    if oob_scores.size:
        raw = float(values[winner_i])  # type: ignore[arg-type]
        expected = float(oob_scores.mean())
        interval = _percentiles(oob_scores)
        assert interval is not None
        few = positives is not None and positives < MIN_POSITIVES
        estimate = WinnerEstimate(
            winner,
            raw,
            expected,
            interval,
            sign * (raw - expected),
            skipped_draws=int(np.count_nonzero(~usable)),
            positives=positives,
            too_few_positives=few,
            positives_needed=MIN_POSITIVES if few else None,
        )
    members, pvalues, q = draws.members, draws.pvalues, draws.q
    member_names = {ckpts[scored[j]].name for j in members}
    tied = [winner] + [c.name for c in ckpts if c.name in member_names and c.name != winner]

    entries = []
    local = {ci: j for j, ci in enumerate(scored)}
    proportions = proportion_counts(rows, spec, task)
    for i, (c, v) in enumerate(zip(ckpts, values, strict=True)):
        j = local.get(i)
        if j is None:
            entries.append(CheckpointSelection(c.name, c.epoch, v, None, None, None))
            continue
        # (only ROC AUC may replace the percentile interval)
        interval = _checkpoint_interval(rows, spec, draws.intervals[j], v)
        if proportions is not None and proportions[1][j] > 0 and v is not None:
            # NOTE: one proportion: the Wilson interval of its own counts (the percentile
            # bootstrap of a proportion under-covers with few events: 71-81% for recall at
            # 5 positives, [1, 1] for 2 of 2)
            interval = wilson_interval(float(proportions[0][j]), float(proportions[1][j]))
        entries.append(CheckpointSelection(c.name, c.epoch, v, interval, c.name in member_names, float(pvalues[j])))
    unscored = len(scorable) - len(scored)
    note = f"{unscored} scorable checkpoint(s) without per-row data were left out" if unscored else None
    return RunSelection(
        evaluation.run.name,
        spec.text,
        spec.maximize,
        n,
        resamples,
        seed,
        winner,
        estimate,
        tuple(entries),
        tuple(tied),
        note,
        detectable_difference=q,
    )


def evaluate_selection(
    run: Run, spec: MetricSpec, *, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> RunSelection:
    """Selection statistics of ``run`` under ``spec`` (bound to the run with
    :class:`~ckptaudit.metrics.evaluation.RunScorer`), reading each val.npz once. A verb
    that has already read the files passes its :class:`RunEvaluation` to :func:`select`."""
    return select(evaluate_run(run, spec), resamples=resamples, seed=seed)


def selections_for(
    runs: Sequence[Run],
    spec: MetricSpec,
    *,
    resamples: int,
    seed: int,
    evaluations: dict[str, RunEvaluation] | None = None,
) -> dict[str, RunSelection]:
    """Selection statistics of each run under the unbound ``spec`` (bound per run), from
    ``evaluations`` (by run name) where given, else from a pass of their own."""
    from ..metrics.evaluation import RunScorer

    known = evaluations or {}
    out = {}
    for run in runs:
        evaluation = known.get(run.name)
        if evaluation is None:
            evaluation = evaluate_run(run, RunScorer(run, [spec]).specs[0])
        out[run.name] = select(evaluation, resamples=resamples, seed=seed)
    return out
