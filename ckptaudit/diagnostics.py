"""Diagnostics of one checkpoint for the report: how it errs on the validation set.

Confusion matrix, ROC and precision-recall curves, reliability (calibration) curve, or
regression residuals, of the checkpoints the report focuses on (the chosen one and the
winner). These are drawings of one checkpoint's predictions, not statistics of the choice:
the verdict (:mod:`ckptaudit.verdict`) holds those.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from .metrics import kernels as metrics
from .metrics.spec import MetricSpec, parse_metric
from .store.reader import Checkpoint, Run

#: most points of a ROC or precision-recall curve kept for drawing (exact at the kept points)
MAX_CURVE_POINTS = 200
#: most rows of a residual scatter kept for drawing (an evenly spaced sample of the sorted rows)
MAX_RESIDUAL_POINTS = 400
#: more classes than this and the confusion matrix is left out (it would be unreadable)
MAX_CONFUSION_CLASSES = 30
RELIABILITY_BINS = 10


@dataclass(frozen=True)
class Curve:
    """Points of a ROC (x fpr, y tpr) or precision-recall (x recall, y precision) curve."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    area: float | None


@dataclass(frozen=True)
class Reliability:
    """A reliability (calibration) curve: per non-empty bin the mean predicted probability,
    the observed frequency, and the number of rows (bins as scikit-learn's
    ``calibration_curve(strategy="uniform")``)."""

    predicted: tuple[float, ...]
    observed: tuple[float, ...]
    counts: tuple[int, ...]
    what: str  #: "positive class" (binary), "top label" (multiclass), "all labels" (multilabel)


@dataclass(frozen=True)
class Residuals:
    """Regression residuals (target minus prediction) against the prediction, sampled for drawing."""

    predicted: tuple[float, ...]
    residual: tuple[float, ...]
    rows: int
    rmse: float


@dataclass(frozen=True)
class Diagnostics:
    """How one checkpoint errs on the validation set."""

    checkpoint: str
    epoch: int
    roles: tuple[str, ...]  #: "chosen", "winner" or both
    labels: tuple[str, ...] = ()
    confusion: tuple[tuple[int, ...], ...] | None = None
    roc: Curve | None = None
    pr: Curve | None = None
    reliability: Reliability | None = None
    residuals: Residuals | None = None
    #: issue 20: this checkpoint's operating point under the report's first metric, when that
    #: is an operating point of a binary run (:func:`operating_marker`)
    operating: OperatingMarker | None = None


@dataclass(frozen=True)
class OperatingMarker:
    """Where one checkpoint's chosen threshold sits on its curves, and the constraint line."""

    threshold: float  #: as a probability
    recall: float
    precision: float | None
    fpr: float
    constraint: str  #: precision, recall or specificity
    bound: float


def operating_marker(prep: metrics.Prepared, spec: object) -> OperatingMarker | None:
    """The operating point of ``spec`` (an operating-point spec bound to the run) on one
    checkpoint, read from the same curve its value came from (None: unmet, or cost)."""
    from .metrics import operating

    point = getattr(spec, "operating", None)
    if point is None or point.is_cost or prep.task != "binary":
        return None
    choice, c = operating.evaluate(prep, spec)
    if choice.index is None or c.n_pos == 0 or c.n_neg == 0:
        return None
    tp, fp = int(c.tp[choice.index]), int(c.fp[choice.index])
    t = operating.threshold(prep, spec)
    return OperatingMarker(
        float("inf") if t is None else t,
        tp / c.n_pos,
        tp / (tp + fp) if tp + fp else None,
        fp / c.n_neg,
        point.constraint,
        point.bound,
    )


def _thin(n: int, most: int) -> np.ndarray:
    """Indices of at most ``most`` evenly spaced points of ``n``, both ends kept."""
    if n <= most:
        return np.arange(n)
    # (rounded evenly spaced points never decrease: a repeat can only follow its twin, so
    # dropping those is np.unique's answer, without its import of numpy.ma and its hashing)
    idx = np.linspace(0, n - 1, most).round().astype(int)
    return idx[np.r_[True, idx[1:] != idx[:-1]]]


def _round(values: np.ndarray, digits: int = 5) -> tuple[float, ...]:
    return tuple(np.round(values.astype(np.float64), digits).tolist())


@cache
def _area_spec(name: str) -> MetricSpec:
    """The parsed spec of a curve's area (roc_auc, average_precision), parsed once."""
    return parse_metric(name)


def roc_pr_curves(y: np.ndarray, score: np.ndarray) -> tuple[Curve, Curve] | None:
    """ROC and precision-recall curves at every distinct score (as scikit-learn's
    ``roc_curve(drop_intermediate=False)`` and ``precision_recall_curve``), thinned to
    :data:`MAX_CURVE_POINTS`; None when one class is absent."""
    pos = y.astype(bool)
    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    # NOTE: the scores sorted alone, and the positives at or above each distinct score
    # counted by a search among the positives' own sorted scores: the same integers as a
    # stable argsort and a running count of the hits, without the 100,000-row argsort that
    # was most of a report's curve (issue 21)
    s = np.sort(score)[::-1]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # the last row of each distinct score
    tp = n_pos - np.searchsorted(np.sort(score[pos]), s[last], side="left")
    fp = (last + 1) - tp
    fpr = np.r_[0.0, fp / n_neg]
    tpr = np.r_[0.0, tp / n_pos]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    # NOTE: the precision-recall curve starts at recall 0, precision 1, as scikit-learn draws it.
    rec = np.r_[0.0, recall]
    prec = np.r_[1.0, precision]
    keep_roc = _thin(fpr.size, MAX_CURVE_POINTS)
    keep_pr = _thin(rec.size, MAX_CURVE_POINTS)
    prep = metrics.Prepared("binary", y.astype(np.int8), score, None, 2)
    auc = metrics.KERNELS["roc_auc"](prep, _area_spec("roc_auc"))
    ap = metrics.KERNELS["average_precision"](prep, _area_spec("average_precision"))
    return (
        Curve(_round(fpr[keep_roc]), _round(tpr[keep_roc]), float(auc)),
        Curve(_round(rec[keep_pr]), _round(prec[keep_pr]), float(ap)),
    )


def _bin_ids(predicted: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.searchsorted(edges[1:-1], predicted)`` for equal-width ``edges`` over [0, 1]:
    each value's bin from ``floor(p x bins)``, moved by one where that lands beside an
    inner edge (off by at most one: the product and linspace's edges each round once; only
    the downward move was ever seen, at edges themselves, on 1-400 bins: the upward one is a
    guard).
    A binary search per value took 97 ms of a 5,000,000-value curve, this 60 (issue 21)."""
    bins = edges.shape[0] - 1
    inner = np.r_[-np.inf, edges[1:-1], np.inf]  # inner[j]: the edge below bin j (none: -inf)
    ids = np.empty(predicted.shape, dtype=np.intp)
    flat, out = predicted.reshape(-1), ids.reshape(-1)
    # NOTE: a block of values at a time: the temporaries stay a block's size (5,000,000 values
    # at once held four 40 MB arrays beside the bins)
    for first in range(0, flat.shape[0], _BIN_BLOCK):
        p = flat[first : first + _BIN_BLOCK]
        guess = np.multiply(p, bins, dtype=np.float64).astype(np.intp)
        np.clip(guess, 0, bins - 1, out=guess)
        guess -= p <= inner[guess]
        guess += p > inner[guess + 1]
        out[first : first + _BIN_BLOCK] = guess
    return ids


#: values binned at a time by :func:`_bin_ids`
_BIN_BLOCK = 1 << 18


def reliability_curve(observed: np.ndarray, predicted: np.ndarray, bins: int = RELIABILITY_BINS) -> tuple[np.ndarray, ...]:
    """Per non-empty bin of ``predicted`` (equal widths over [0, 1]): mean predicted, observed
    frequency and count, binned as scikit-learn's ``calibration_curve``."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = _bin_ids(predicted, edges)
    count = np.bincount(ids, minlength=bins)
    sum_pred = np.bincount(ids, weights=predicted.astype(np.float64), minlength=bins)
    sum_obs = np.bincount(ids, weights=observed.astype(np.float64), minlength=bins)
    nz = count > 0
    return sum_pred[nz] / count[nz], sum_obs[nz] / count[nz], count[nz]


#: rows x classes of a multiclass checkpoint's probabilities computed at a time (16 MB of float32)
_CHUNK_VALUES = 1 << 22


def _top_label(prep: metrics.Prepared) -> tuple[np.ndarray, np.ndarray]:
    """Each row's top probability (float64) and whether its top label is the target, in
    chunks of rows: a 50,000 x 1,000 checkpoint's whole softmax in float64 would be 400 MB.
    Softmax and argmax work row by row, so the values are those of the whole matrix."""
    if prep.logit is not None and prep.to_proba is not None:
        logit, to_proba = prep.logit, prep.to_proba
        n, width = logit.shape[0], logit.shape[1]

        def rows(a: int, b: int) -> np.ndarray:
            return to_proba(logit[a:b])
    else:
        proba = prep.proba
        assert proba is not None
        n, width = proba.shape[0], proba.shape[1]

        def rows(a: int, b: int) -> np.ndarray:
            return proba[a:b]

    pred = np.empty(n, dtype=np.float64)
    hit = np.empty(n, dtype=np.float64)
    step = max(1, _CHUNK_VALUES // max(width, 1))
    for a in range(0, n, step):
        p = rows(a, min(a + step, n))
        top = p.argmax(axis=1)
        pred[a : a + p.shape[0]] = p[np.arange(p.shape[0]), top]  # (the maximum, without a second pass)
        hit[a : a + p.shape[0]] = top == prep.y[a : a + p.shape[0]]
    return pred, hit


def _reliability(prep: metrics.Prepared) -> Reliability | None:
    # NOTE: logits have probabilities; asking prep.proba of them would compute them all at once
    if not (prep.logit is not None and prep.to_proba is not None) and prep.proba is None:
        return None
    if prep.task == "multiclass":
        pred, obs = _top_label(prep)
        what = "top label"
    elif prep.task == "binary":
        pred, obs, what = prep.proba64, prep.y.astype(np.float64), "positive class"
    else:
        pred, obs, what = prep.proba64.ravel(), prep.y.ravel().astype(np.float64), "all labels"
    mean_pred, freq, count = reliability_curve(obs, np.clip(pred, 0.0, 1.0))
    return Reliability(_round(mean_pred), _round(freq), tuple(int(c) for c in count), what)


def diagnose(
    run: Run, checkpoint: Checkpoint, roles: tuple[str, ...], prep: metrics.Prepared, spec: object = None
) -> Diagnostics:
    """Confusion matrix, ROC, precision-recall, reliability or residuals of one checkpoint
    (and, under an operating-point ``spec``, where its chosen threshold sits)."""
    task = run.task
    if task == "regression":
        y = prep.y.reshape(prep.y.shape[0], -1)[:, 0]
        pred = prep.proba.reshape(prep.y.shape[0], -1)[:, 0]  # type: ignore[union-attr]
        resid = y - pred
        order = np.argsort(pred, kind="mergesort")
        keep = order[_thin(order.size, MAX_RESIDUAL_POINTS)]
        rmse = float(np.sqrt(np.mean(resid**2)))
        res = Residuals(_round(pred[keep], 4), _round(resid[keep], 4), int(y.size), rmse)
        return Diagnostics(checkpoint.name, checkpoint.epoch, roles, residuals=res)
    labels: tuple[str, ...] = ()
    confusion = None
    if task in ("binary", "multiclass"):
        cm = metrics.confusion(prep, None)
        names = run.classes or tuple(str(i) for i in range(cm.shape[0]))
        if task == "binary":
            # NOTE: the kernels' view codes 1 as the positive class; name rows in that order.
            pos = run.positive_class
            names = (names[1 - pos], names[pos]) if len(names) == 2 else ("negative", "positive")
        if cm.shape[0] <= MAX_CONFUSION_CLASSES:
            confusion = tuple(tuple(int(v) for v in row) for row in cm)
            labels = tuple(names[: cm.shape[0]]) + tuple(str(i) for i in range(len(names), cm.shape[0]))
    roc = pr = None
    if task == "binary" and prep.proba is not None:
        curves = roc_pr_curves(prep.y, prep.proba)
        if curves is not None:
            roc, pr = curves
    return Diagnostics(
        checkpoint.name,
        checkpoint.epoch,
        roles,
        labels=labels,
        confusion=confusion,
        roc=roc,
        pr=pr,
        reliability=_reliability(prep),
        operating=None if spec is None else operating_marker(prep, spec),
    )
