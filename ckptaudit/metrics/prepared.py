"""One checkpoint's predictions in the shape every metric kernel expects (:class:`Prepared`).

:func:`prepare` turns stored target/output arrays into that view: binary targets re-coded
so that 1 is the positive class, logits kept beside their (lazily computed) probabilities,
so ranking metrics and log_loss never see a saturated probability.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import MetricError

DEFAULT_THRESHOLD = 0.5


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # NOTE: split by sign so large |x| never overflows exp().
    out = np.empty_like(x, dtype=np.float64)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _sigmoid64(x: np.ndarray) -> np.ndarray:
    """The sigmoid of logits, in float64."""
    return _sigmoid(x.astype(np.float64))


def _softmax64(x: np.ndarray) -> np.ndarray:
    """The softmax of logits by rows, in float64."""
    return _softmax(x.astype(np.float64))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """log(softmax(x)) by rows in float64, as (x - max) - log(sum(exp(x - max))): never
    log of a rounded probability, and the same arithmetic as scipy.special.log_softmax."""
    z = x.astype(np.float64) - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)), exact for any x (so -log(sigmoid(z)) = softplus(-z))."""
    return np.logaddexp(0.0, x)


def logit_threshold(threshold: float) -> float:
    """The logit at which the sigmoid equals ``threshold`` (0.5 -> 0.0 exactly)."""
    if threshold <= 0.0:
        return -np.inf
    if threshold >= 1.0:
        return np.inf
    return float(np.log(threshold) - np.log1p(-threshold))


@dataclass(init=False)
class Prepared:
    """One checkpoint's predictions in the shape every kernel expects.

    ``y`` holds class indices (binary: 1 means the positive class, as int8; multiclass
    int64), a 0/1 matrix (multilabel) or values (regression). ``proba`` holds
    probabilities (binary: of the positive class, shape (N,); multiclass (N, C);
    multilabel (N, L)) in their stored float precision, or None when the run records
    hard labels; ``hard`` holds those labels. ``logit`` keeps a logit run's scores
    before any sigmoid/softmax (binary: the positive class's log-odds, (N,); multiclass
    (N, C); multilabel (N, L)): ranking metrics and log_loss use them, because
    probabilities round to exactly 0 or 1 long before logits stop being distinct.
    ``eps`` is the clipping bound for probabilities as scikit-learn's log_loss uses it:
    the machine epsilon of the stored float type.

    For a logit run ``proba`` is computed from ``logit`` on first use (``to_proba``): label
    metrics take the argmax or the sign of the logits and never pay for a float64 softmax
    (a 50,000 x 1,000 checkpoint's would be 400 MB).
    """

    task: str
    y: np.ndarray
    _proba: np.ndarray | None
    hard: np.ndarray | None
    n_classes: int
    logit: np.ndarray | None = None
    eps: float = float(np.finfo(np.float64).eps)
    _cache: dict[object, np.ndarray] = field(default_factory=dict)
    #: the logits' probabilities (sigmoid or softmax), applied on first use of ``proba``
    to_proba: Callable[[np.ndarray], np.ndarray] | None = None
    #: the rows' group columns (``group``/``group:<name>`` -> (N,)), None when the file has none
    groups: dict[str, np.ndarray] | None = None

    def __init__(
        self,
        task: str,
        y: np.ndarray,
        proba: np.ndarray | None,
        hard: np.ndarray | None,
        n_classes: int,
        logit: np.ndarray | None = None,
        eps: float = float(np.finfo(np.float64).eps),
        to_proba: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.task, self.y, self._proba, self.hard, self.n_classes = task, y, proba, hard, n_classes
        self.logit, self.eps, self.to_proba = logit, eps, to_proba
        self._cache = {}
        self.groups = None

    @property
    def proba(self) -> np.ndarray | None:
        """Probabilities (see the class); for logits computed on first use."""
        if self._proba is None and self.to_proba is not None and self.logit is not None:
            self._proba = self.to_proba(self.logit)
        return self._proba

    @property
    def proba64(self) -> np.ndarray:
        """``proba`` as float64, for kernels whose arithmetic needs the precision."""
        assert self.proba is not None
        if "p64" not in self._cache:
            self._cache["p64"] = self.proba.astype(np.float64, copy=False)
        return self._cache["p64"]

    @property
    def score(self) -> np.ndarray:
        """Ranking scores, monotone in the probabilities but never saturated: the logits
        (binary, multilabel), the log-probabilities (multiclass logits, so that columns
        compare across rows), or the stored probabilities."""
        if self.logit is None:
            assert self.proba is not None
            return self.proba
        if self.task != "multiclass":
            return self.logit
        if "logp" not in self._cache:
            self._cache["logp"] = _log_softmax(self.logit)
        return self._cache["logp"]

    def take(self, idx: np.ndarray) -> Prepared:
        """The same view restricted to rows ``idx`` (the bootstrap's resamples)."""
        out = Prepared(
            self.task,
            self.y[idx],
            None if self._proba is None else self._proba[idx],
            None if self.hard is None else self.hard[idx],
            self.n_classes,
            None if self.logit is None else self.logit[idx],
            self.eps,
            self.to_proba,
        )
        out.groups = None if self.groups is None else {k: v[idx] for k, v in self.groups.items()}
        return out

    def labels(self, threshold: float | None) -> np.ndarray:
        """Hard predictions: class indices (binary: bool), or a 0/1 matrix for multilabel.

        Multiclass predictions are the argmax, ties going to the lower class index (as
        numpy's and PyTorch's argmax; top_k_accuracy uses the same rule). A binary or
        multilabel row is positive when its probability is above the threshold; for
        logits the comparison is made on the logit scale, which is exact.
        """
        if self.hard is not None:
            return self.hard
        # NOTE: logits alone decide the labels: no probability is computed here.
        scores = self.logit if self.logit is not None else self.proba
        assert scores is not None
        if self.task == "multiclass":
            if "argmax" not in self._cache:
                self._cache["argmax"] = scores.argmax(axis=1)
            return self._cache["argmax"]
        # NOTE: np.float64 makes the comparison exact even for float32 scores.
        t = np.float64(DEFAULT_THRESHOLD if threshold is None else threshold)
        key = ("t", float(t))
        if key not in self._cache:
            if self.logit is None:
                self._cache[key] = scores > t
            else:
                self._cache[key] = self.logit > np.float64(logit_threshold(float(t)))
        return self._cache[key]


def prepare(
    task: str,
    output_kind: str,
    target: np.ndarray,
    output: np.ndarray,
    positive_class: int = 1,
    n_classes: int | None = None,
) -> Prepared:
    """Turn stored target/output arrays into a :class:`Prepared` view.

    Logits go through sigmoid (binary, multilabel) or softmax (multiclass) for the
    probability-based kernels and are kept for the ranking ones. For a binary run the
    stored target is the class index; ``positive_class`` says which index the (N,) score
    refers to, and the view re-codes targets so that 1 means positive. ``n_classes`` is
    the run's number of classes from run.json; a multiclass ``label`` run needs it,
    because hard labels cannot tell how many classes exist.
    """
    out = np.asarray(output)
    if task == "regression":
        return Prepared(task, np.asarray(target, dtype=np.float64), out.astype(np.float64, copy=False), None, 0)
    eps = float(np.finfo(out.dtype).eps) if out.dtype.kind == "f" else float(np.finfo(np.float64).eps)
    if out.dtype.kind == "f" and out.dtype.itemsize < 4:
        out = out.astype(np.float32)
    if task == "binary":
        y = (np.asarray(target) == positive_class).view(np.int8)
        if out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]  # nn.Linear(h, 1) with BCEWithLogitsLoss: one positive-class column
        if output_kind == "label":
            return Prepared(task, y, None, out == positive_class, 2)
        if output_kind == "logit":
            if out.ndim == 2:
                # NOTE: softmax over (neg, pos) is the sigmoid of their difference.
                out = out[:, positive_class].astype(np.float64) - out[:, 1 - positive_class]
            return Prepared(task, y, None, None, 2, logit=out, eps=eps, to_proba=_sigmoid64)
        if out.ndim == 2:
            out = out[:, positive_class]
        return Prepared(task, y, out, None, 2, eps=eps)
    if task == "multiclass":
        y = np.asarray(target).astype(np.int64, copy=False)
        if output_kind == "label":
            if n_classes is None:
                raise MetricError("a multiclass label run needs its number of classes (run.json 'classes' or 'num_classes')")
            return Prepared(task, y, None, out.astype(np.int64, copy=False), n_classes)
        if output_kind == "logit":
            return Prepared(task, y, None, None, out.shape[1], logit=out, eps=eps, to_proba=_softmax64)
        return Prepared(task, y, out, None, out.shape[1], eps=eps)
    # multilabel
    y = np.asarray(target).astype(np.int64, copy=False)
    if output_kind == "label":
        return Prepared(task, y, None, out.astype(np.int64, copy=False), y.shape[1])
    if output_kind == "logit":
        return Prepared(task, y, None, None, y.shape[1], logit=out, eps=eps, to_proba=_sigmoid64)
    return Prepared(task, y, out, None, y.shape[1], eps=eps)
