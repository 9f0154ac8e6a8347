"""The metric engine: vectorised numpy kernels for every built-in metric.

Each kernel takes a :class:`Prepared` view of one checkpoint's predictions and a
:class:`~ckptaudit.metrics.spec.MetricSpec`, and returns a float (NaN where the metric is
undefined on this data, for example ROC AUC with one class absent). Nothing here loops
over rows in Python and nothing calls scikit-learn: the tests check every kernel against
scikit-learn, which is too slow for the hot path of re-scoring hundreds of checkpoints.

Conventions follow scikit-learn so numbers agree to 1e-9:
- undefined per-class ratios (0/0) count as 0, like ``zero_division=0``;
- macro and weighted averages run over all classes of the run (run.json or the output width);
- balanced accuracy averages recall over the classes present in the targets;
- a binary prediction is positive when its probability is above the threshold (0.5);
- ranking metrics (ROC AUC, average precision, top-k) and log_loss use logits where the
  run stores them, so saturated probabilities never turn distinct scores into ties.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import MetricError
from . import operating, ranks

# NOTE: the prepared view lives in its own module; these names stay importable from here
from .prepared import (  # noqa: F401
    DEFAULT_THRESHOLD,
    Prepared,
    _log_softmax,
    _sigmoid,
    _sigmoid64,
    _softmax,
    _softmax64,
    _softplus,
    logit_threshold,
    prepare,
)

if TYPE_CHECKING:
    from .spec import MetricSpec

DEFAULT_ECE_BINS = 15
DEFAULT_TOP_K = 2


# --------------------------------------------------------------------------- counts


@dataclass(frozen=True)
class Counts:
    """Per-class confusion counts (one-vs-rest), each of shape (C,)."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray

    @property
    def support(self) -> np.ndarray:
        return self.tp + self.fn


def confusion_matrix(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """C x C confusion matrix (rows: true class, columns: predicted) by one bincount."""
    n = max(n_classes, int(y.max(initial=0)) + 1, int(pred.max(initial=0)) + 1)
    return np.bincount(y * n + pred, minlength=n * n).reshape(n, n)


def confusion(prep: Prepared, threshold: float | None) -> np.ndarray:
    """The confusion matrix of a binary (class 1 = positive) or multiclass view."""
    pred = prep.labels(threshold)
    if prep.task == "binary":
        # NOTE: boolean counts are several times faster than a bincount of codes.
        pos = prep.y.view(bool)
        pr = pred if pred.dtype == bool else pred.astype(bool)
        tp = np.count_nonzero(pos & pr)
        fn = np.count_nonzero(pos) - tp
        fp = np.count_nonzero(pr) - tp
        tn = pos.shape[0] - tp - fn - fp
        return np.array([[tn, fp], [fn, tp]])
    return confusion_matrix(prep.y, pred, prep.n_classes)


def counts_from_confusion(cm: np.ndarray) -> Counts:
    """One-vs-rest counts of every class of a confusion matrix, or of a batch of them
    (shape (B, C, C) gives counts of shape (B, C))."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    fp = cm.sum(axis=-2) - tp
    fn = cm.sum(axis=-1) - tp
    tn = cm.sum(axis=(-2, -1))[..., None] - tp - fp - fn
    return Counts(tp, fp, fn, tn)


def multilabel_counts(prep: Prepared, threshold: float | None) -> Counts:
    """Per-label counts of a multilabel view."""
    y = prep.y.astype(bool)
    p = prep.labels(threshold).astype(bool)
    tp = np.count_nonzero(y & p, axis=0)
    fp = np.count_nonzero(~y & p, axis=0)
    fn = np.count_nonzero(y & ~p, axis=0)
    return Counts(tp, fp, fn, y.shape[0] - tp - fp - fn)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _fbeta_values(c: Counts, beta: float) -> np.ndarray:
    b2 = beta * beta
    return _ratio((1 + b2) * c.tp, (1 + b2) * c.tp + b2 * c.fn + c.fp)


#: per-class values of the one-vs-rest metrics, from counts
PER_CLASS: dict[str, Callable[[Counts, MetricSpec], np.ndarray]] = {
    "precision": lambda c, s: _ratio(c.tp, c.tp + c.fp),
    "recall": lambda c, s: _ratio(c.tp, c.tp + c.fn),
    "specificity": lambda c, s: _ratio(c.tn, c.tn + c.fp),
    "npv": lambda c, s: _ratio(c.tn, c.tn + c.fn),
    "f1": lambda c, s: _fbeta_values(c, 1.0),
    "fbeta": lambda c, s: _fbeta_values(c, 1.0 if s.beta is None else s.beta),
}


def _reduce(name: str, c: Counts, spec: MetricSpec, task: str, n_classes: int) -> np.ndarray:
    """A per-class metric under the spec's class selection or averaging; works on counts
    of shape (C,) and on batches of shape (B, C)."""
    per_class = PER_CLASS[name](c, spec)
    if spec.class_index is not None:
        return per_class[..., spec.class_index]
    average = spec.average or ("binary" if task == "binary" else "macro")
    if average == "binary":
        return per_class[..., 1]
    if average == "macro":
        return per_class[..., :n_classes].mean(axis=-1)
    if average == "weighted":
        support = c.support[..., :n_classes].astype(np.float64)
        total = support.sum(axis=-1)
        return _ratio((per_class[..., :n_classes] * support).sum(axis=-1), total)
    if average == "micro":
        summed = Counts(*(a[..., :n_classes].sum(axis=-1, keepdims=True) for a in (c.tp, c.fp, c.fn, c.tn)))
        return PER_CLASS[name](summed, spec)[..., 0]
    raise MetricError(f"unknown average {average!r}")


def _mcc_from_sums(correct: np.ndarray, t_sum: np.ndarray, p_sum: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Matthews' correlation from the number of correct rows, the true-class and the
    predicted-class counts (last axis) and n, batched over the leading axes (scikit-learn's
    formula, 0 where it is undefined)."""
    cov_ytyp = correct * n - (t_sum * p_sum).sum(axis=-1)
    cov_ypyp = n * n - (p_sum * p_sum).sum(axis=-1)
    cov_ytyt = n * n - (t_sum * t_sum).sum(axis=-1)
    den = cov_ytyt * cov_ypyp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, cov_ytyp / np.sqrt(np.where(den > 0, den, 1.0)), 0.0)


def _binary_mcc(c: Counts) -> np.ndarray:
    """MCC of each class's one-vs-rest 2 x 2 matrix, (..., C) -> (..., C)."""
    tp, fp, fn, tn = (np.asarray(a, dtype=np.float64) for a in (c.tp, c.fp, c.fn, c.tn))
    t_sum = np.stack([tn + fp, fn + tp], axis=-1)
    p_sum = np.stack([tn + fn, fp + tp], axis=-1)
    return _mcc_from_sums(tp + tn, t_sum, p_sum, tp + fp + fn + tn)


def from_confusion(cm: np.ndarray, spec: MetricSpec, task: str, n_classes: int) -> float:
    """Any confusion-based metric of a binary or multiclass run, from its confusion matrix."""
    return float(from_confusions(cm[None], spec, task, n_classes)[0])


def from_confusions(cms: np.ndarray, spec: MetricSpec, task: str, n_classes: int) -> np.ndarray:
    """The metric of each confusion matrix in a (B, C, C) batch, vectorised (through
    :func:`from_counts`: the diagonal, the column and the row sums are all it needs)."""
    tp = np.diagonal(cms, axis1=-2, axis2=-1)
    return from_counts(tp, cms.sum(axis=-2), cms.sum(axis=-1), cms.sum(axis=(-2, -1)), spec, task, n_classes)


def from_counts(
    tp: np.ndarray, predicted: np.ndarray, actual: np.ndarray, n: np.ndarray, spec: MetricSpec, task: str, n_classes: int
) -> np.ndarray:
    """Every confusion-based metric from per-class counts, batched over leading axes.

    ``tp``, ``predicted`` and ``actual`` have shape (..., C): the rows of each class
    predicted as that class, predicted as it, and truly of it; ``n`` (...,) the rows. For a
    binary or multiclass run these are the diagonal, column and row sums of the confusion
    matrix, which is all any of these metrics needs (so a bootstrap never builds C x C
    cells per resample); for a multilabel run they are per-label counts (``accuracy``,
    subset accuracy, has no count form there). Counts may be weighted (non-integer).
    """
    tp = np.asarray(tp, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    fp = predicted - tp
    fn = actual - tp
    c = Counts(tp, fp, fn, n[..., None] - tp - fp - fn)
    name = spec.name
    if task == "multilabel":
        return _multilabel_values(c, spec, n_classes)
    if name == "accuracy":
        with np.errstate(invalid="ignore", divide="ignore"):
            return tp.sum(axis=-1) / n
    if name in PER_CLASS:
        return np.asarray(_reduce(name, c, spec, task, n_classes), dtype=np.float64)
    if name == "balanced_accuracy":
        present = actual > 0
        recall = _ratio(tp, actual)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (recall * present).sum(axis=-1) / present.sum(axis=-1)
    if name == "mcc":
        if spec.class_index is not None:
            return _binary_mcc(c)[..., spec.class_index]
        return _mcc_from_sums(tp.sum(axis=-1), actual, predicted, n)
    if name == "cohen_kappa":
        # 1 - observed disagreement / expected disagreement, the expected confusion matrix
        # being the outer product of the marginals over n (scikit-learn's definition)
        with np.errstate(invalid="ignore", divide="ignore"):
            expected_off = n - (predicted * actual).sum(axis=-1) / n
            out = 1.0 - (n - tp.sum(axis=-1)) / expected_off
        return np.where(expected_off == 0, np.nan, out)
    raise MetricError(f"{name} is not a confusion-matrix metric")


def _multilabel_values(c: Counts, spec: MetricSpec, n_classes: int) -> np.ndarray:
    """A per-label metric of a multilabel run from per-label counts (..., L), batched."""
    if spec.name in PER_CLASS:
        return np.asarray(_reduce(spec.name, c, spec, "multilabel", n_classes), dtype=np.float64)
    if spec.name == "balanced_accuracy":
        # NOTE: each label's value is scikit-learn's balanced_accuracy_score of that label:
        # the mean recall over the classes (0, 1) present in its targets, so a label whose
        # targets are all 0 scores its true-negative rate alone.
        pos, neg = c.tp + c.fn, c.tn + c.fp
        recall_sum = _ratio(c.tp, pos) + _ratio(c.tn, neg)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (recall_sum / ((pos > 0).astype(np.float64) + (neg > 0))).mean(axis=-1)
    if spec.name == "mcc":
        per_label = _binary_mcc(c)
        if spec.class_index is not None:
            return per_label[..., spec.class_index]
        return per_label[..., :n_classes].mean(axis=-1)
    raise MetricError(f"{spec.name} is not defined for multilabel runs")


def _multilabel(prep: Prepared, spec: MetricSpec) -> float:
    if spec.name == "accuracy":
        # NOTE: subset accuracy, as scikit-learn's accuracy_score defines it for multilabel.
        return float(subset_hits(prep, spec).mean())
    return float(_multilabel_values(multilabel_counts(prep, spec.threshold), spec, prep.n_classes))


def label_metric(prep: Prepared, spec: MetricSpec) -> float:
    """Kernel of every confusion-based metric (accuracy, recall, f1, mcc, ...)."""
    if prep.task == "multilabel":
        return _multilabel(prep, spec)
    return from_confusion(confusion(prep, spec.threshold), spec, prep.task, prep.n_classes)


# --------------------------------------------------------------------------- score-based


def _binary_auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC of 0/1 targets ``y`` and scores ``s``: the Mann-Whitney U with average ranks
    for tied scores, from one sort (:func:`ckptaudit.metrics.ranks.auc`)."""
    return ranks.auc(np.flatnonzero(y), s)


def _binary_ap(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision as scikit-learn defines it: sum over thresholds of dR * P
    (0.0 when there is no positive row, as scikit-learn returns); see
    :func:`ckptaudit.metrics.ranks.ap`."""
    return ranks.ap(np.flatnonzero(y), s)


def _one_vs_rest(prep: Prepared) -> np.ndarray:
    """(N, C) 0/1 targets of a multiclass view (multilabel targets as they are)."""
    if prep.task == "multiclass":
        onehot = np.zeros((prep.y.shape[0], prep.n_classes), dtype=np.int64)
        onehot[np.arange(prep.y.shape[0]), prep.y] = 1
        return onehot
    return prep.y


def _score_average(binary: Callable[[np.ndarray, np.ndarray], float]) -> Callable[[Prepared, MetricSpec], float]:
    # NOTE: these metrics depend only on the order of the scores, so they rank the
    # unsaturated prep.score (logits, log-probabilities) and take the negative class as
    # the reversed order (-s), never 1 - p, which rounds distinct scores to ties. Columns
    # are scored one at a time (multiclass log-probabilities a block of columns at a
    # time), never as a one-hot or float64 copy of the whole matrix.
    def kernel(prep: Prepared, spec: MetricSpec) -> float:
        return ranks.value(prep, spec, binary)

    return kernel


roc_auc = _score_average(ranks.auc)
average_precision = _score_average(ranks.ap)


def _log_loss_rows(prep: Prepared) -> np.ndarray:
    """Each row's negative log-likelihood (multilabel: the mean over its labels)."""
    y = prep.y
    if prep.logit is not None:
        if prep.task == "multiclass":
            return -prep.score[np.arange(y.shape[0]), y]
        z = prep.logit.astype(np.float64, copy=False)
        # NOTE: -log(sigmoid(z)) = softplus(-z) and -log(1 - sigmoid(z)) = softplus(z).
        per = np.where(y == 1, _softplus(-z), _softplus(z))
    else:
        assert prep.proba is not None
        p = np.clip(prep.proba64, prep.eps, 1 - prep.eps)
        if prep.task == "multiclass":
            return -np.log(p[np.arange(y.shape[0]), y])
        per = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    # NOTE: multilabel: the mean over labels of each label's binary log loss.
    return per.mean(axis=1) if per.ndim == 2 else per


def log_loss(prep: Prepared, spec: MetricSpec) -> float:
    """Mean negative log-likelihood. From logits it is exact (log-sigmoid, log-softmax);
    from probabilities they are clipped to [eps, 1 - eps], eps the machine epsilon of the
    stored float type, as scikit-learn does."""
    return float(_log_loss_rows(prep).mean())


def _brier_rows(prep: Prepared) -> np.ndarray:
    assert prep.proba is not None
    if prep.task == "multiclass":
        summed = ((_one_vs_rest(prep) - prep.proba64) ** 2).sum(axis=1)
        # NOTE: with 2 classes scikit-learn halves the sum, giving the binary value.
        return summed / 2 if prep.n_classes < 3 else summed
    per = (prep.y - prep.proba64) ** 2
    return per.mean(axis=1) if per.ndim == 2 else per


def brier(prep: Prepared, spec: MetricSpec) -> float:
    """Mean squared error of the probabilities (2-class multiclass: halved, as scikit-learn)."""
    return float(_brier_rows(prep).mean())


def _ece_rows(prep: Prepared, spec: MetricSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Each row's confidence bin, hit (float64 0/1) and top-label confidence, and the
    number of bins."""
    assert prep.proba is not None
    n_bins = DEFAULT_ECE_BINS if spec.bins is None else spec.bins
    if prep.task == "binary":
        p = prep.proba64
        pred = prep.labels(None).astype(np.int64)
        conf = np.where(pred == 1, p, 1 - p)
    else:
        pred = prep.labels(None)
        conf = prep.proba64[np.arange(prep.y.shape[0]), pred]
    correct = (pred == prep.y).astype(np.float64)
    # NOTE: bins are right-closed, as in scikit-learn's calibration_curve.
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], conf), correct, conf, n_bins


def ece_terms(prep: Prepared, spec: MetricSpec) -> tuple[np.ndarray, np.ndarray]:
    """Each row's confidence bin and (hit - confidence), as float64: the expected
    calibration error is the sum over bins of |the bin's summed terms| over n (the
    bootstrap reweights these)."""
    ids, correct, conf, _ = _ece_rows(prep, spec)
    return ids.astype(np.float64), correct - conf


def ece(prep: Prepared, spec: MetricSpec) -> float:
    """Top-label expected calibration error over equal-width confidence bins."""
    ids, correct, conf, n_bins = _ece_rows(prep, spec)
    acc_sum = np.bincount(ids, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(ids, weights=conf, minlength=n_bins)
    return float(np.abs(acc_sum - conf_sum).sum() / conf.shape[0])


def _top_k_rows(prep: Prepared, spec: MetricSpec) -> np.ndarray:
    assert prep.proba is not None or prep.logit is not None
    k = DEFAULT_TOP_K if spec.k is None else spec.k
    # NOTE: the order within a row is the same for logits and probabilities, and logits
    # never saturate into ties.
    p = prep.proba if prep.logit is None else prep.logit
    assert p is not None
    rows = np.arange(p.shape[0])
    true_score = p[rows, prep.y][:, None]
    # NOTE: ties rank the lower class index first, the argmax rule of `accuracy`, so
    # that top-1 accuracy and accuracy always agree.
    above = (p > true_score).sum(axis=1)
    idx = np.arange(p.shape[1])[None, :]
    tied_before = ((p == true_score) & (idx < prep.y[:, None])).sum(axis=1)
    return ((above + tied_before) < k).astype(np.float64)


def top_k_accuracy(prep: Prepared, spec: MetricSpec) -> float:
    """Share of rows whose true class is among the k highest scores (ties: lower index first)."""
    return float(_top_k_rows(prep, spec).mean())


# --------------------------------------------------------------------------- regression


def _per_output(prep: Prepared) -> tuple[np.ndarray, np.ndarray]:
    y = prep.y if prep.y.ndim == 2 else prep.y[:, None]
    assert prep.proba is not None
    p = prep.proba if prep.proba.ndim == 2 else prep.proba[:, None]
    return y, p


def _residual_rows(prep: Prepared, name: str) -> np.ndarray:
    """Squared (mse, rmse) or absolute (mae) residuals, (N, outputs)."""
    y, p = _per_output(prep)
    return np.abs(y - p) if name == "mae" else (y - p) ** 2


def mse(prep: Prepared, spec: MetricSpec) -> float:
    return float(_residual_rows(prep, "mse").mean(axis=1).mean())


def rmse(prep: Prepared, spec: MetricSpec) -> float:
    return float(np.sqrt(_residual_rows(prep, "rmse").mean(axis=0)).mean())


def mae(prep: Prepared, spec: MetricSpec) -> float:
    return float(_residual_rows(prep, "mae").mean(axis=1).mean())


def subset_hits(prep: Prepared, spec: MetricSpec) -> np.ndarray:
    """Per row of a multilabel view: 1.0 where every label is predicted right."""
    return np.all(prep.labels(spec.threshold) == prep.y, axis=1).astype(np.float64)


def mean_rows(prep: Prepared, spec: MetricSpec) -> np.ndarray:
    """The per-row values whose mean is the metric, from the same arithmetic as its kernel
    (the selection statistics resample these, so that unit weights give the displayed
    value): log_loss, brier, top_k_accuracy, mse, mae and multilabel subset accuracy give
    (N,) float64; rmse gives the squared residuals, (N,) for one output and (N, outputs)
    for several (the metric is the mean over outputs of each output's root)."""
    name = spec.name
    if name == "log_loss":
        return _log_loss_rows(prep)
    if name == "brier":
        return _brier_rows(prep)
    if name == "top_k_accuracy":
        return _top_k_rows(prep, spec)
    if name == "accuracy" and prep.task == "multilabel":
        return subset_hits(prep, spec)
    if name in ("mse", "mae", "rmse"):
        per = _residual_rows(prep, name)
        if name == "rmse":
            return per[:, 0] if per.shape[1] == 1 else per
        return per.mean(axis=1)
    raise MetricError(f"{name} is not a mean of per-row values")


def r2(prep: Prepared, spec: MetricSpec) -> float:
    y, p = _per_output(prep)
    if y.shape[0] < 2:
        # NOTE: undefined with fewer than 2 rows (scikit-learn returns NaN too).
        return float("nan")
    ss_res = ((y - p) ** 2).sum(axis=0)
    ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    # NOTE: a constant target gives 1.0 for a perfect fit and 0.0 otherwise, as
    # scikit-learn's force_finite does.
    safe = ss_tot != 0
    per = np.where(safe, 1 - ss_res / np.where(safe, ss_tot, 1.0), np.where(ss_res == 0, 1.0, 0.0))
    return float(per.mean())


def undefined_reason(prep: Prepared, spec: MetricSpec) -> str:
    """Why a kernel returned NaN on this view, in words for a note."""
    if spec.operating is not None:  # issue 20: no threshold meets the constraint
        return operating.undefined_reason(prep, spec)
    if spec.name == "r2" and prep.y.shape[0] < 2:
        return f"undefined with fewer than 2 rows (the validation set has {prep.y.shape[0]})"
    if spec.name == "roc_auc":
        return "undefined on this validation set: ROC AUC needs rows of both classes (of each class it averages)"
    return "undefined on this validation set (for example a class with no rows)"


KERNELS: dict[str, Callable[[Prepared, MetricSpec], float]] = {
    **{
        name: label_metric
        for name in (
            "accuracy",
            "balanced_accuracy",
            "precision",
            "recall",
            "f1",
            "fbeta",
            "specificity",
            "npv",
            "mcc",
            "cohen_kappa",
        )
    },
    "roc_auc": roc_auc,
    "average_precision": average_precision,
    "log_loss": log_loss,
    "brier": brier,
    "ece": ece,
    "top_k_accuracy": top_k_accuracy,
    "mse": mse,
    "rmse": rmse,
    "mae": mae,
    "r2": r2,
    # issue 20: operating points (the threshold chosen per checkpoint, see metrics/operating.py)
    operating.NAME: operating.kernel,
    operating.COST: operating.kernel,
}

# NOTE: slices (issue 24): a grouped spec (worst_group(M), M:group=NAME) is scored on its
# groups' rows by the same kernels; a plain spec goes straight through.
from .groups import grouped_kernels  # noqa: E402

KERNELS = grouped_kernels(KERNELS)
