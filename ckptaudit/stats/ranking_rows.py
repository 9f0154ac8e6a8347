"""Per-row data of ROC AUC and average precision for the selection statistics.

The bootstrap needs each checkpoint's metric under thousands of row-weight vectors ``w``
(:func:`ckptaudit.stats.selection.weighted_values`). Two forms serve it:

* **Exact** (validation sets under :data:`LINEAR_MIN_ROWS` rows, with at most
  :data:`EXACT_MAX_CELLS` rows x score columns): the per-row data are the checkpoint's
  scores as float32 (kind ``"ranking"``; shape (rows,) for a binary run, (rows, columns)
  for multiclass one-vs-rest and multilabel), and every weight vector re-ranks them
  (weighted tie groups, cumulative sums): the metric of the resample itself.
* **Linearised** (everything larger): the metric is replaced by its first-order (Hajek)
  projection in the row weights, ``V(w) = V + sum_r (w_r - 1) infl_r + O(1/n)``, with
  ``infl_r = dV/dw_r`` from :func:`ckptaudit.metrics.influence.influence` (ROC AUC: the DeLong
  placement values; one-vs-rest macro/weighted/micro averages and multilabel averages by
  the chain rule; average precision: the derivative of its ratio form). The per-row data
  are ``V + n x infl_r`` as float32, a mean-type statistic (kind ``"mean"``): a weighted
  mean of them is ``V + sum_r (w_r - 1) infl_r`` for weights summing to ``n`` (the
  stratified in-bag resamples), and the same projection self-normalised for the
  out-of-bag rows. So the bootstrap of a ranking metric costs one (weights x rows) @
  (rows x checkpoints) product, like a mean loss, and large runs go through the Gaussian
  sums of :func:`ckptaudit.stats.selection.gaussian_ok`.

The approximation drops the second-order (degenerate U-statistic) term, whose variance is
O(1/(n_pos x n_neg)) against O(1/min(n_pos, n_neg)) for the first-order term: relatively
small once each class has tens of rows. Checked by simulation (tests/test_ranking_rows.py):
at 2,000-3,000 rows (5% and 50% prevalence) the linearised bootstrap sd of every checkpoint
is within 10% of the exact bootstrap's, for ROC AUC and average precision, and the model
confidence set's false-alarm rate on equal checkpoints stays near 5% (measured while
choosing the thresholds: within 5% down to 600 rows x 20 classes, 600 rows x 5 labels at
10% prevalence and 300 binary rows at 5% prevalence, 1000 resamples). A binary run under
:data:`LINEAR_MIN_ROWS` rows (where a class may have a handful of rows) keeps the exact
form, so bench/simulate_selection.py's small-sample ROC AUC coverage is unchanged (98.2% at
n = 100 and 300; the linearised form covers 96.0% at n = 1,000 and 95.5% at n = 3,000, 5%
prevalence, 200 trials). For average precision the two also differ in that duplicated rows
of a resample tie with themselves, which biases the exact bootstrap's mean upward (by
0.1-0.4 sd in those simulations); the projection is centred on the validation value.

Both forms use the kernels' own scores (logits, log-probabilities, probabilities in their
stored precision) through :func:`ckptaudit.metrics.ranks.columns`, the function the
displayed metric ranks by (issue 17: float32 copies of sigmoids saturated into ties, the
negative class of a multiclass run was flipped, micro pooled -p).
"""

from __future__ import annotations

import numpy as np

from ..metrics import influence, ranks
from ..metrics import kernels as metrics
from ..metrics.spec import MetricSpec

#: validation sets with at least this many rows use the linearised form
LINEAR_MIN_ROWS = 1000
#: ... and so do smaller ones with more than this many rows x score columns
EXACT_MAX_CELLS = 2_000


def _score_columns(prep: metrics.Prepared) -> int:
    return 1 if prep.task == "binary" else prep.n_classes


def form(prep: metrics.Prepared) -> str:
    """``"ranking"`` (exact: float32 scores) or ``"mean"`` (linearised) for a run whose
    checkpoints look like ``prep`` (the choice depends only on the validation set's size)."""
    n = prep.y.shape[0]
    if n < LINEAR_MIN_ROWS and n * _score_columns(prep) <= EXACT_MAX_CELLS:
        return "ranking"
    return "mean"


def per_row(kind: str, spec: MetricSpec, prep: metrics.Prepared) -> np.ndarray:
    """One checkpoint's per-row data in form ``kind`` (see the module docstring). The exact
    form is the score matrix of :func:`ckptaudit.metrics.ranks.column_matrix`, (rows,
    columns), in the scores' own dtype: the very values the displayed metric ranks (a
    float64 score is never rounded into a tie; a logit run ranks its logits)."""
    if kind == "mean":
        # NOTE: where the pass computed the value with the influence (one sort per column,
        # :func:`ckptaudit.metrics.influence.remember`), that influence is taken here
        value, infl = influence.recall(prep, spec)
        infl *= prep.y.shape[0]
        infl += value
        return infl.astype(np.float32)
    return ranks.column_matrix(prep, spec)[2]


def targets(spec: MetricSpec, prep: metrics.Prepared) -> tuple[str, np.ndarray]:
    """(mode, positives (rows, columns) bool) of the exact form: how the columns combine
    (``single``, ``macro``, ``weighted``, ``micro``) and which rows are positive in each,
    from the same :func:`~ckptaudit.metrics.ranks.column_matrix` as the scores."""
    mode, pos, _ = ranks.column_matrix(prep, spec)
    return mode, pos


# --------------------------------------------------------------------------- exact form


def _weighted_column(pos: np.ndarray, scores: np.ndarray, w: np.ndarray, name: str) -> np.ndarray:
    """ROC AUC or average precision of one column under each weight row: (k, N) -> (k,).
    The weighted group sums are exact (integer weights in float32) and the rest runs in
    float64, so unit weights give the kernel's value."""
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ws = w[:, order]
    p_sorted = pos[order]
    gp = np.add.reduceat(ws * p_sorted, starts, axis=1).astype(np.float64)
    gn = np.add.reduceat(ws * ~p_sorted, starts, axis=1).astype(np.float64)
    total_p = gp.sum(axis=1)
    total_n = gn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if name == "roc_auc":
            below = np.cumsum(gn, axis=1) - gn
            return (gp * (below + 0.5 * gn)).sum(axis=1) / (total_p * total_n)
        # average precision: thresholds from the highest score down
        tps = np.cumsum(gp[:, ::-1], axis=1)
        fps = np.cumsum(gn[:, ::-1], axis=1)
        prec = np.where(tps + fps > 0, tps / np.maximum(tps + fps, 1e-300), 0.0)
        values = (gp[:, ::-1] * prec).sum(axis=1) / total_p
        return np.where(total_p > 0, values, 0.0)


def exact_values(pos: np.ndarray, data: np.ndarray, w: np.ndarray, mode: str, name: str) -> np.ndarray:
    """The metric of every checkpoint (``data``: (C, N, columns) scores, ``pos`` (N,
    columns) positives, ``mode`` how the columns combine) under each weight row of ``w``
    (k, N): (k, C)."""
    out = np.empty((w.shape[0], data.shape[0]))
    width = pos.shape[1]
    for c in range(data.shape[0]):
        if mode == "single":
            out[:, c] = _weighted_column(pos[:, 0], data[c, :, 0], w, name)
            continue
        if mode == "micro":  # one pooled ranking; element (r, j) carries row r's weight
            out[:, c] = _weighted_column(pos.ravel(), data[c].ravel(), np.repeat(w, width, axis=1), name)
            continue
        per = np.stack([_weighted_column(pos[:, j], data[c, :, j], w, name) for j in range(width)], axis=1)
        if mode == "macro":
            out[:, c] = per.mean(axis=1)
            continue
        support = (w @ pos.astype(w.dtype)).astype(np.float64)
        total = support.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            weighted = (np.where(support > 0, per, 0.0) * support).sum(axis=1) / total
        out[:, c] = np.where(total > 0, weighted, 0.0)
    return out
