"""Property-based differential test: every built-in metric and option against scikit-learn.

Hypothesis draws small validation sets (absent classes, never-predicted classes, constant
and tied scores, logits up to +-1e4, float16/32/64 storage), writes them as a run and scores
them through the path `ckptaudit rank` uses (discover -> parse_metrics -> score_runs). The
reference is scikit-learn on the stored arrays, under the conventions docs/metrics.md
documents (ranking on logits, the argmax tie rule, per-label means for multilabel).

Profiles: HYPOTHESIS_PROFILE=ci (the default: few examples, derandomised, well under a
minute) or HYPOTHESIS_PROFILE=long (thousands of random examples), e.g.
    HYPOTHESIS_PROFILE=long python -m pytest -q tests/test_differential.py
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from runfiles import score, write_run
from scipy.special import expit, log_softmax, logit, softmax
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    # NOTE: shrinking a failure can take minutes; CI reports the first failing example
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
settings.register_profile("long", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DTYPES = (np.float16, np.float32, np.float64)
THRESHOLDS = (0.0, 0.25, 0.5, 0.7, 1.0)
#: logits that tie, saturate sigmoid/softmax, or sit at the edges of float16
LOGIT_POOL = (-1e4, -745.0, -40.0, -1.0, 0.0, 0.5, 1.0, 36.8, 40.0, 745.0, 1e4)
TOL = 1e-9


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ---------------------------------------------------------------- drawing data


@st.composite
def logits(draw, shape: tuple[int, ...]) -> np.ndarray:
    kind = draw(st.sampled_from(["free", "pool", "constant"]))
    size = int(np.prod(shape))
    if kind == "constant":
        return np.full(shape, draw(st.sampled_from(LOGIT_POOL)))
    if kind == "pool":
        values = draw(st.lists(st.sampled_from(LOGIT_POOL), min_size=size, max_size=size))
    else:
        values = draw(st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=size, max_size=size))
    return np.array(values, dtype=np.float64).reshape(shape)


@st.composite
def classes(draw, n: int, n_classes: int) -> np.ndarray:
    """Class indices from a random non-empty subset of the classes (some absent)."""
    present = draw(st.lists(st.integers(0, n_classes - 1), min_size=1, max_size=n_classes, unique=True))
    return np.array(draw(st.lists(st.sampled_from(present), min_size=n, max_size=n)), dtype=np.int64)


def stored(values: np.ndarray, dtype) -> np.ndarray:
    return values.astype(dtype)


# ---------------------------------------------------------------- the reference


def per_class_binary(name: str, y: np.ndarray, pred: np.ndarray, beta: float) -> float:
    """One class's one-vs-rest value of a count metric, by scikit-learn (y, pred: 0/1)."""
    if name == "precision":
        return quiet(skm.precision_score, y, pred, labels=[0, 1], zero_division=0)
    if name == "recall":
        return quiet(skm.recall_score, y, pred, labels=[0, 1], zero_division=0)
    if name == "f1":
        return quiet(skm.f1_score, y, pred, labels=[0, 1], zero_division=0)
    if name == "fbeta":
        return quiet(skm.fbeta_score, y, pred, beta=beta, labels=[0, 1], zero_division=0)
    # specificity and npv are recall and precision of the complement
    inner = {"specificity": "recall", "npv": "precision"}[name]
    return per_class_binary(inner, 1 - y, 1 - pred, beta)


def count_metric(name: str, Y: np.ndarray, P: np.ndarray, average: str | None, cls: int | None, beta: float) -> float:
    """precision/recall/f1/fbeta/specificity/npv over one-vs-rest columns Y, P (N, C)."""
    if cls is not None:
        return per_class_binary(name, Y[:, cls], P[:, cls], beta)
    if average == "micro":
        return per_class_binary(name, Y.ravel(), P.ravel(), beta)
    per = np.array([per_class_binary(name, Y[:, c], P[:, c], beta) for c in range(Y.shape[1])])
    if average == "weighted":
        support = Y.sum(axis=0)
        return float((per * support).sum() / support.sum()) if support.sum() else 0.0
    return float(per.mean())


def sklearn_direct(name: str, y, pred, average: str, labels, beta: float) -> float:
    """The same value straight from scikit-learn's multiclass/multilabel API."""
    fn = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score, "fbeta": skm.fbeta_score}[name]
    kwargs = {"beta": beta} if name == "fbeta" else {}
    return quiet(fn, y, pred, labels=labels, average=average, zero_division=0, **kwargs)


def ece_reference(correct: np.ndarray, conf: np.ndarray, bins: int) -> float:
    prob_true, prob_pred = quiet(calibration_curve, correct, conf, n_bins=bins, strategy="uniform")
    edges = np.linspace(0, 1, bins + 1)
    sizes = np.bincount(np.searchsorted(edges[1:-1], conf), minlength=bins)
    sizes = sizes[sizes > 0]
    return float(np.sum(sizes * np.abs(prob_true - prob_pred)) / conf.size)


def ranking(fn, Y: np.ndarray, S: np.ndarray, average: str | None, cls: int | None) -> float:
    """roc_auc_score / average_precision_score over one-vs-rest columns."""
    if cls is not None:
        return quiet(fn, Y[:, cls], S[:, cls])
    return quiet(fn, Y, S, average=average or "macro")


def top_k_reference(y: np.ndarray, scores: np.ndarray, k: int) -> float:
    """scikit-learn's top-k under ckptaudit's tie rule (lower class index first): columns
    reversed, plus a never-best column so that 2-class runs take the multiclass path."""
    n_classes = scores.shape[1]
    padded = np.c_[scores, np.full(len(y), scores.min() - 1.0)][:, ::-1]
    return quiet(skm.top_k_accuracy_score, n_classes - y, padded, k=k, labels=range(n_classes + 1))


class Case:
    """One drawn validation set and what the reference needs to know about it."""

    def __init__(self, task, output, target, out, *, Y, hard, score, proba, logit_scores, n_classes, **run_json):
        self.task, self.output, self.target, self.out = task, output, target, out
        self.Y = Y  # (N, C) 0/1 one-vs-rest targets (binary: [negative, positive])
        self.hard = hard  # callable threshold -> (N, C) 0/1 predictions
        self.score = score  # (N, C) ranking scores, or None for label runs
        self.proba = proba  # positive-class (N,) / (N, C) probabilities in float64, or None
        self.logit_scores = logit_scores  # (N,) / (N, C) logits, or None
        self.n_classes = n_classes
        self.run_json = run_json

    @property
    def y(self) -> np.ndarray:
        return self.Y[:, 1] if self.task == "binary" else self.Y.argmax(1) if self.task == "multiclass" else self.Y


def reference(case: Case, text: str) -> float:
    name, _, opts_text = text.partition(":")
    opts = dict(o.split("=") for o in opts_text.split(",")) if opts_text else {}
    t = float(opts.get("threshold", 0.5))
    average = opts.get("average")
    cls = None
    if "class" in opts:
        names = [c.lower() for c in case.run_json.get("classes", [])]
        cls = names.index(opts["class"].lower()) if opts["class"].lower() in names else int(opts["class"])
    if case.task == "binary" and cls is not None:
        # class=INDEX names a stored class; column 1 of Y is the positive one
        cls = int(cls == case.run_json.get("positive_class", 1))
    beta = float(opts.get("beta", 2.0 if name == "f2" else 1.0))
    name = "fbeta" if name == "f2" else name
    task, Y = case.task, case.Y
    P = case.hard(t) if name not in ("roc_auc", "average_precision", "log_loss", "brier", "ece", "top_k_accuracy") else None
    if task == "binary":
        y, pred = Y[:, 1], None if P is None else P[:, 1]
        if name == "accuracy":
            return skm.accuracy_score(y, pred)
        if name == "balanced_accuracy":
            return quiet(skm.balanced_accuracy_score, y, pred)
        if name == "mcc":
            return quiet(skm.matthews_corrcoef, y, pred)
        if name == "cohen_kappa":
            return quiet(skm.cohen_kappa_score, y, pred)
        if name in ("precision", "recall", "f1", "fbeta", "specificity", "npv"):
            if cls is None and average is None:
                cls = 1
            return count_metric(name, Y, P, average, cls, beta)
    elif task == "multiclass":
        y, pred = Y.argmax(1), None if P is None else P.argmax(1)
        labels = list(range(case.n_classes))
        if name == "accuracy":
            return skm.accuracy_score(y, pred)
        if name == "balanced_accuracy":
            return quiet(skm.balanced_accuracy_score, y, pred)
        if name == "mcc":
            return quiet(skm.matthews_corrcoef, *((y, pred) if cls is None else (y == cls, pred == cls)))
        if name == "cohen_kappa":
            return quiet(skm.cohen_kappa_score, y, pred, labels=labels)
        if name in ("precision", "recall", "f1", "fbeta", "specificity", "npv"):
            value = count_metric(name, Y, P, average, cls, beta)
            if name in ("precision", "recall", "f1", "fbeta") and cls is None:
                assert value == pytest.approx(sklearn_direct(name, y, pred, average or "macro", labels, beta), abs=TOL)
            return value
    elif task == "multilabel":
        L = Y.shape[1]
        if name == "accuracy":
            return skm.accuracy_score(Y, P)
        if name == "balanced_accuracy":
            return float(np.mean([quiet(skm.balanced_accuracy_score, Y[:, i], P[:, i]) for i in range(L)]))
        if name == "mcc":
            cols = range(L) if cls is None else [cls]
            return float(np.mean([quiet(skm.matthews_corrcoef, Y[:, i], P[:, i]) for i in cols]))
        if name in ("precision", "recall", "f1", "fbeta", "specificity", "npv"):
            value = count_metric(name, Y, P, average, cls, beta)
            if name in ("precision", "recall", "f1", "fbeta") and cls is None:
                assert value == pytest.approx(sklearn_direct(name, Y, P, average or "macro", None, beta), abs=TOL)
            return value
    # score-based metrics
    S = case.score
    if name in ("roc_auc", "average_precision"):
        fn = skm.roc_auc_score if name == "roc_auc" else skm.average_precision_score
        if task == "binary" and cls is None and average is None:
            cls = 1
        if task == "binary" and average == "micro" and case.logit_scores is None:
            # micro pools both columns into one ranking: scikit-learn reads them as [1 - p, p]
            S = np.c_[1 - case.proba, case.proba]
        return ranking(fn, Y, S, average, cls)
    if name == "log_loss":
        if case.logit_scores is not None:
            z = case.logit_scores
            if task == "multiclass":
                value = float(-log_softmax(z, axis=1)[np.arange(len(z)), Y.argmax(1)].mean())
                if np.abs(z).max() <= 30:
                    assert value == pytest.approx(
                        skm.log_loss(Y.argmax(1), softmax(z, axis=1), labels=range(case.n_classes)), rel=1e-6
                    )
                return value
            y = Y[:, 1] if task == "binary" else Y
            value = float(np.where(y == 1, np.logaddexp(0, -z), np.logaddexp(0, z)).mean())
            if np.abs(z).max() <= 30 and task == "binary":
                assert value == pytest.approx(skm.log_loss(y, expit(z), labels=[0, 1]), rel=1e-6)
            return value
        eps = np.finfo(case.out.dtype).eps
        p = np.clip(case.proba, eps, 1 - eps)
        if task == "binary":
            return skm.log_loss(Y[:, 1], p, labels=[0, 1])
        if task == "multiclass":
            return quiet(skm.log_loss, Y.argmax(1), p, labels=range(case.n_classes))
        return float(np.mean([skm.log_loss(Y[:, i], p[:, i], labels=[0, 1]) for i in range(Y.shape[1])]))
    if name == "brier":
        p = case.proba
        if task == "binary":
            return skm.brier_score_loss(Y[:, 1], p, labels=[0, 1])
        if task == "multiclass":
            return quiet(skm.brier_score_loss, Y.argmax(1), p, labels=range(case.n_classes))
        return float(np.mean([skm.brier_score_loss(Y[:, i], p[:, i], labels=[0, 1]) for i in range(Y.shape[1])]))
    if name == "ece":
        bins = int(opts.get("bins", 15))
        p = case.proba
        if task == "binary":
            pred = case.hard(0.5)[:, 1]
            conf = np.where(pred == 1, p, 1 - p)
            correct = (pred == Y[:, 1]).astype(int)
        else:
            pred = (case.logit_scores if case.logit_scores is not None else p).argmax(1)
            conf = p[np.arange(len(p)), pred]
            correct = (pred == Y.argmax(1)).astype(int)
        return ece_reference(correct, conf, bins)
    if name == "top_k_accuracy":
        scores = case.logit_scores if case.logit_scores is not None else case.proba
        return top_k_reference(Y.argmax(1), scores, int(opts.get("k", 2)))
    raise AssertionError(f"no reference for {text}")


# ---------------------------------------------------------------- specs and comparison

COUNT = ("precision", "recall", "f1", "f2", "specificity", "npv")


def label_specs(task: str, n_classes: int, t: float, cls: int) -> list[str]:
    specs = ["accuracy", "balanced_accuracy", "mcc", f"mcc:class={cls}"]
    if task != "multilabel":
        specs.append("cohen_kappa")
    for name in COUNT:
        specs += [name, f"{name}:class={cls}"] + [f"{name}:average={a}" for a in ("macro", "micro", "weighted")]
    if task != "multiclass":
        specs += [f"{name}:threshold={t}" for name in ("accuracy", "balanced_accuracy", "recall", "precision", "mcc")]
        specs += [f"f1:average=macro,threshold={t}", f"cohen_kappa:threshold={t}"] if task == "binary" else []
    return specs


def score_specs(task: str, n_classes: int, cls: int, k: int, bins: int) -> list[str]:
    specs = ["log_loss", "brier"]
    for name in ("roc_auc", "average_precision"):
        specs += [name, f"{name}:class={cls}"] + [f"{name}:average={a}" for a in ("macro", "micro", "weighted")]
    if task != "multilabel":
        specs += ["ece", f"ece:bins={bins}"]
    if task == "multiclass":
        specs += ["top_k_accuracy", f"top_k_accuracy:k={k}", "top_k_accuracy:k=1"]
    return specs


def check(case: Case, specs: list[str], beta: float = 0.5) -> None:
    specs += [f"fbeta:beta={beta}", f"fbeta:beta={beta},average=weighted"]
    names = case.run_json.get("classes")
    if names:
        # class=NAME resolves like class=INDEX (case-insensitively)
        specs += [f"recall:class={names[-1].upper()}", f"f1:class={names[0]}"]
        if case.score is not None:
            specs += [f"roc_auc:class={names[0]}", f"average_precision:class={names[-1]}"]
    specs = list(dict.fromkeys(specs))
    with tempfile.TemporaryDirectory() as tmp:
        run = write_run(Path(tmp) / "run", case.task, case.output, case.target, [case.out], **case.run_json)
        (result,) = score(run, specs)
    assert result.values is not None
    for text, value in zip(specs, result.values, strict=True):
        expected = reference(case, text)
        if expected is None or (isinstance(expected, float) and math.isnan(expected)):
            assert value is None, (text, value)
        else:
            assert value is not None, (text, expected, result.notes)
            tol = 1e-12 * max(1.0, abs(expected)) + TOL
            assert value == pytest.approx(expected, abs=tol), text


def onehot(y: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes, dtype=np.int64)[y]


# ---------------------------------------------------------------- the tests


@given(
    data=st.data(), n=st.integers(1, 25), dtype=st.sampled_from(DTYPES), output=st.sampled_from(["probability", "logit", "label"])
)
def test_binary(data, n, dtype, output):
    positive = data.draw(st.sampled_from([0, 1]), "positive_class")
    target = data.draw(classes(n, 2), "target")
    two_columns = output != "label" and data.draw(st.booleans(), "two columns")
    t = data.draw(st.sampled_from(THRESHOLDS), "threshold")
    cls = data.draw(st.integers(0, 1), "class")
    y_pos = (target == positive).astype(np.int64)
    Y = np.c_[1 - y_pos, y_pos]
    run_json = {"positive_class": positive}
    if data.draw(st.booleans(), "named"):
        run_json["classes"] = ["neg", "pos"] if positive == 1 else ["pos", "neg"]
    if output == "label":
        out = data.draw(classes(n, 2), "labels").astype(dtype)
        pred_pos = (out == positive).astype(np.int64)
        case = Case(
            "binary",
            output,
            target,
            out,
            Y=Y,
            hard=lambda t: np.c_[1 - pred_pos, pred_pos],
            score=None,
            proba=None,
            logit_scores=None,
            n_classes=2,
            **run_json,
        )
        specs = [s for s in label_specs("binary", 2, t, cls) if "threshold" not in s]
    else:
        z = data.draw(logits((n, 2) if two_columns else (n,)), "logits")
        if output == "logit":
            out = stored(z, dtype)
            zz = out.astype(np.float64)
            s = zz[:, positive] - zz[:, 1 - positive] if two_columns else zz
            proba, logit_scores = expit(s), s
            hard = lambda t: np.c_[1 - (s > logit(t)), s > logit(t)].astype(np.int64)  # noqa: E731
        else:
            p = softmax(z, axis=1) if two_columns else expit(z)
            out = stored(p, dtype)
            s = out.astype(np.float64)[:, positive] if two_columns else out.astype(np.float64)
            proba, logit_scores = s, None
            hard = lambda t: np.c_[1 - (s > t), s > t].astype(np.int64)  # noqa: E731
        case = Case(
            "binary",
            output,
            target,
            out,
            Y=Y,
            hard=hard,
            score=np.c_[-s, s],
            proba=proba,
            logit_scores=logit_scores,
            n_classes=2,
            **run_json,
        )
        specs = label_specs("binary", 2, t, cls) + score_specs("binary", 2, cls, 2, data.draw(st.integers(1, 20), "bins"))
    check(case, specs, data.draw(st.sampled_from([0.5, 2.0, 3.7]), "beta"))


@given(
    data=st.data(),
    n=st.integers(1, 25),
    n_classes=st.integers(2, 5),
    dtype=st.sampled_from(DTYPES),
    output=st.sampled_from(["probability", "logit", "label"]),
)
def test_multiclass(data, n, n_classes, dtype, output):
    target = data.draw(classes(n, n_classes), "target")
    cls = data.draw(st.integers(0, n_classes - 1), "class")
    Y = onehot(target, n_classes)
    run_json: dict = {}
    if data.draw(st.booleans(), "named"):
        run_json["classes"] = [f"c{i}" for i in range(n_classes)]
    elif output == "label" or data.draw(st.booleans(), "num_classes"):
        run_json["num_classes"] = n_classes
    if output == "label":
        pred = data.draw(classes(n, n_classes), "labels")  # some classes never predicted
        out = pred.astype(dtype)
        case = Case(
            "multiclass",
            output,
            target,
            out,
            Y=Y,
            hard=lambda t: onehot(pred, n_classes),
            score=None,
            proba=None,
            logit_scores=None,
            n_classes=n_classes,
            **run_json,
        )
        specs = label_specs("multiclass", n_classes, 0.5, cls)
    else:
        z = data.draw(logits((n, n_classes)), "logits")
        if output == "logit":
            out = stored(z, dtype)
            zz = out.astype(np.float64)
            score_, proba, logit_scores, argmax = log_softmax(zz, axis=1), softmax(zz, axis=1), zz, zz.argmax(1)
        else:
            out = stored(softmax(z, axis=1), dtype)
            proba = out.astype(np.float64)
            score_, logit_scores, argmax = proba, None, proba.argmax(1)
        case = Case(
            "multiclass",
            output,
            target,
            out,
            Y=Y,
            hard=lambda t: onehot(argmax, n_classes),
            score=score_,
            proba=proba,
            logit_scores=logit_scores,
            n_classes=n_classes,
            **run_json,
        )
        k = data.draw(st.integers(1, n_classes + 1), "k")
        specs = label_specs("multiclass", n_classes, 0.5, cls) + score_specs(
            "multiclass", n_classes, cls, k, data.draw(st.integers(1, 20), "bins")
        )
    check(case, specs, data.draw(st.sampled_from([0.5, 2.0, 3.7]), "beta"))


@st.composite
def multilabel_targets(draw, n: int, n_labels: int) -> np.ndarray:
    cols = []
    for _ in range(n_labels):
        mode = draw(st.sampled_from(["mixed", "zeros", "ones"]))
        if mode == "mixed":
            cols.append(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
        else:
            cols.append([int(mode == "ones")] * n)
    return np.array(cols, dtype=np.int64).T


@given(
    data=st.data(),
    n=st.integers(1, 25),
    n_labels=st.integers(2, 4),
    dtype=st.sampled_from(DTYPES),
    output=st.sampled_from(["probability", "logit", "label"]),
)
def test_multilabel(data, n, n_labels, dtype, output):
    Y = data.draw(multilabel_targets(n, n_labels), "target")
    t = data.draw(st.sampled_from(THRESHOLDS), "threshold")
    cls = data.draw(st.integers(0, n_labels - 1), "class")
    if output == "label":
        pred = data.draw(multilabel_targets(n, n_labels), "labels")
        case = Case(
            "multilabel",
            output,
            Y,
            pred.astype(dtype),
            Y=Y,
            hard=lambda t: pred,
            score=None,
            proba=None,
            logit_scores=None,
            n_classes=n_labels,
        )
        specs = [s for s in label_specs("multilabel", n_labels, t, cls) if "threshold" not in s]
    else:
        z = data.draw(logits((n, n_labels)), "logits")
        if output == "logit":
            out = stored(z, dtype)
            zz = out.astype(np.float64)
            case = Case(
                "multilabel",
                output,
                Y,
                out,
                Y=Y,
                hard=lambda t: (zz > logit(t)).astype(np.int64),
                score=zz,
                proba=expit(zz),
                logit_scores=zz,
                n_classes=n_labels,
            )
        else:
            out = stored(expit(z), dtype)
            p = out.astype(np.float64)
            case = Case(
                "multilabel",
                output,
                Y,
                out,
                Y=Y,
                hard=lambda t: (p > t).astype(np.int64),
                score=p,
                proba=p,
                logit_scores=None,
                n_classes=n_labels,
            )
        specs = label_specs("multilabel", n_labels, t, cls) + score_specs("multilabel", n_labels, cls, 2, 15)
    check(case, specs, data.draw(st.sampled_from([0.5, 2.0, 3.7]), "beta"))


@given(data=st.data(), n=st.integers(1, 25), dims=st.sampled_from([None, 1, 3]), dtype=st.sampled_from(DTYPES))
def test_regression(data, n, dims, dtype):
    shape = (n,) if dims is None else (n, dims)
    size = int(np.prod(shape))
    values = st.one_of(st.sampled_from([0.0, 1.0, -2.5, 100.0]), st.floats(-1e3, 1e3, allow_nan=False))
    y = np.array(data.draw(st.lists(values, min_size=size, max_size=size), "target")).reshape(shape).astype(dtype)
    p = np.array(data.draw(st.lists(values, min_size=size, max_size=size), "output")).reshape(shape).astype(dtype)
    specs = ["mse", "rmse", "mae", "r2"]
    with tempfile.TemporaryDirectory() as tmp:
        run = write_run(Path(tmp) / "run", "regression", "value", y, [p])
        (result,) = score(run, specs)
    y64, p64 = y.astype(np.float64), p.astype(np.float64)
    for text, value in zip(specs, result.values, strict=True):
        ref = {
            "mse": skm.mean_squared_error,
            "rmse": skm.root_mean_squared_error,
            "mae": skm.mean_absolute_error,
            "r2": skm.r2_score,
        }[text]
        expected = quiet(ref, y64, p64)
        if math.isnan(expected):
            assert value is None, text
        else:
            assert value == pytest.approx(expected, rel=1e-9, abs=TOL), text
