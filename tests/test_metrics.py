"""Every built-in metric agrees with scikit-learn to 1e-9 on real fixture predictions,
including edge cases: a class absent, all-one-class predictions, tied scores."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from ckptaudit.metrics.evaluation import RunScorer
from ckptaudit.metrics.kernels import prepare
from ckptaudit.metrics.spec import parse_metric
from ckptaudit.store.reader import read_predictions, read_run

TOL = 1e-9


def load(runs_dir: Path, name: str, checkpoint: int = -1):
    run = read_run(runs_dir / name)
    ckpt = run.checkpoints[checkpoint]
    return run, ckpt, read_predictions(run, ckpt)


def ours(run, ckpt, preds, text: str) -> float | None:
    scorer = RunScorer(run, [parse_metric(text)])
    return scorer.score(ckpt, preds)[0][0]


def sigmoid(x):
    return 1 / (1 + np.exp(-x.astype(np.float64)))


@pytest.fixture(scope="module")
def binary(runs_dir):
    run, ckpt, preds = load(runs_dir, "fraud", 10)
    p = sigmoid(preds.output)
    return run, ckpt, preds, preds.target.astype(int), p


@pytest.fixture(scope="module")
def multiclass(runs_dir):
    run, ckpt, preds = load(runs_dir, "digits", 5)
    return run, ckpt, preds, preds.target.astype(int), preds.output.astype(np.float64)


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


BINARY_CASES = [
    ("accuracy", lambda y, p: skm.accuracy_score(y, p > 0.5)),
    ("balanced_accuracy", lambda y, p: skm.balanced_accuracy_score(y, p > 0.5)),
    ("precision", lambda y, p: skm.precision_score(y, p > 0.5, zero_division=0)),
    ("recall", lambda y, p: skm.recall_score(y, p > 0.5)),
    ("recall:class=fraud", lambda y, p: skm.recall_score(y, p > 0.5)),
    ("recall:class=legit", lambda y, p: skm.recall_score(y, p > 0.5, pos_label=0)),
    ("recall:class=0", lambda y, p: skm.recall_score(y, p > 0.5, pos_label=0)),
    ("recall:threshold=0.2", lambda y, p: skm.recall_score(y, p > 0.2)),
    ("precision:threshold=0.8", lambda y, p: skm.precision_score(y, p > 0.8, zero_division=0)),
    ("recall:average=macro", lambda y, p: skm.recall_score(y, p > 0.5, average="macro")),
    ("f1:average=weighted", lambda y, p: skm.f1_score(y, p > 0.5, average="weighted")),
    ("f1:average=micro", lambda y, p: skm.f1_score(y, p > 0.5, average="micro")),
    ("f1", lambda y, p: skm.f1_score(y, p > 0.5)),
    ("f2", lambda y, p: skm.fbeta_score(y, p > 0.5, beta=2)),
    ("fbeta:beta=0.5", lambda y, p: skm.fbeta_score(y, p > 0.5, beta=0.5)),
    ("specificity", lambda y, p: skm.recall_score(y, p > 0.5, pos_label=0)),
    ("npv", lambda y, p: skm.precision_score(y, p > 0.5, pos_label=0)),
    ("mcc", lambda y, p: skm.matthews_corrcoef(y, p > 0.5)),
    ("cohen_kappa", lambda y, p: skm.cohen_kappa_score(y, (p > 0.5).astype(int))),
    ("roc_auc", lambda y, p: skm.roc_auc_score(y, p)),
    ("roc_auc:class=legit", lambda y, p: skm.roc_auc_score(1 - y, 1 - p)),
    ("roc_auc:average=macro", lambda y, p: skm.roc_auc_score(np.eye(2)[y], np.c_[1 - p, p], average="macro")),
    ("average_precision", lambda y, p: skm.average_precision_score(y, p)),
    ("pr_auc", lambda y, p: skm.average_precision_score(y, p)),
    ("log_loss", lambda y, p: skm.log_loss(y, p)),
    ("brier", lambda y, p: skm.brier_score_loss(y, p)),
]


@pytest.mark.parametrize("text,reference", BINARY_CASES, ids=[c[0] for c in BINARY_CASES])
def test_binary_metric_matches_sklearn(binary, text, reference):
    run, ckpt, preds, y, p = binary
    assert ours(run, ckpt, preds, text) == pytest.approx(reference(y, p), abs=TOL)


MULTICLASS_CASES = [
    ("accuracy", lambda y, p: skm.accuracy_score(y, p.argmax(1))),
    ("balanced_accuracy", lambda y, p: skm.balanced_accuracy_score(y, p.argmax(1))),
    ("precision", lambda y, p: skm.precision_score(y, p.argmax(1), average="macro", labels=range(10), zero_division=0)),
    ("recall", lambda y, p: skm.recall_score(y, p.argmax(1), average="macro", labels=range(10))),
    ("recall:average=weighted", lambda y, p: skm.recall_score(y, p.argmax(1), average="weighted", labels=range(10))),
    ("precision:average=micro", lambda y, p: skm.precision_score(y, p.argmax(1), average="micro", labels=range(10))),
    ("recall:class=3", lambda y, p: skm.recall_score(y, p.argmax(1), labels=[3], average="macro")),
    ("f1", lambda y, p: skm.f1_score(y, p.argmax(1), average="macro", labels=range(10))),
    ("f2:average=weighted", lambda y, p: skm.fbeta_score(y, p.argmax(1), beta=2, average="weighted", labels=range(10))),
    ("specificity:class=8", lambda y, p: skm.recall_score(y == 8, p.argmax(1) == 8, pos_label=False)),
    ("npv:class=8", lambda y, p: skm.precision_score(y == 8, p.argmax(1) == 8, pos_label=False)),
    ("mcc", lambda y, p: skm.matthews_corrcoef(y, p.argmax(1))),
    ("mcc:class=2", lambda y, p: skm.matthews_corrcoef(y == 2, p.argmax(1) == 2)),
    ("cohen_kappa", lambda y, p: skm.cohen_kappa_score(y, p.argmax(1))),
    ("roc_auc", lambda y, p: skm.roc_auc_score(y, p, multi_class="ovr", average="macro")),
    ("roc_auc:average=weighted", lambda y, p: skm.roc_auc_score(y, p, multi_class="ovr", average="weighted")),
    ("roc_auc:average=micro", lambda y, p: skm.roc_auc_score(y, p, multi_class="ovr", average="micro")),
    ("roc_auc:class=4", lambda y, p: skm.roc_auc_score(y == 4, p[:, 4])),
    ("average_precision", lambda y, p: skm.average_precision_score(y, p, average="macro")),
    ("average_precision:average=micro", lambda y, p: skm.average_precision_score(y, p, average="micro")),
    ("log_loss", lambda y, p: skm.log_loss(y, p, labels=range(10))),
    ("brier", lambda y, p: skm.brier_score_loss(y, p, labels=range(10))),
    ("top_k_accuracy", lambda y, p: skm.top_k_accuracy_score(y, p, k=2, labels=range(10))),
    ("top_k_accuracy:k=3", lambda y, p: skm.top_k_accuracy_score(y, p, k=3, labels=range(10))),
]


@pytest.mark.parametrize("text,reference", MULTICLASS_CASES, ids=[c[0] for c in MULTICLASS_CASES])
def test_multiclass_metric_matches_sklearn(multiclass, text, reference):
    run, ckpt, preds, y, p = multiclass
    assert ours(run, ckpt, preds, text) == pytest.approx(quiet(reference, y, p), abs=TOL)


def _ece_reference(correct: np.ndarray, conf: np.ndarray, n_bins: int) -> float:
    # calibration_curve gives each non-empty bin's accuracy and mean confidence; the bin
    # sizes come from the same right-closed bins it uses.
    prob_true, prob_pred = calibration_curve(correct, conf, n_bins=n_bins, strategy="uniform")
    edges = np.linspace(0, 1, n_bins + 1)
    sizes = np.bincount(np.searchsorted(edges[1:-1], conf), minlength=n_bins)
    sizes = sizes[sizes > 0]
    return float(np.sum(sizes * np.abs(prob_true - prob_pred)) / conf.size)


def test_ece_matches_calibration_curve(binary, multiclass):
    run, ckpt, preds, y, p = multiclass
    pred = p.argmax(1)
    ref = _ece_reference((pred == y).astype(int), p.max(1), 15)
    assert ours(run, ckpt, preds, "ece") == pytest.approx(ref, abs=TOL)
    run, ckpt, preds, y, p = binary
    pred = (p > 0.5).astype(int)
    ref = _ece_reference((pred == y).astype(int), np.where(pred == 1, p, 1 - p), 10)
    assert ours(run, ckpt, preds, "ece:bins=10") == pytest.approx(ref, abs=TOL)


@pytest.mark.parametrize("name", ["mse", "rmse", "mae", "r2"])
@pytest.mark.parametrize("fixture_run", ["friedman", "overfit"])
def test_regression_metric_matches_sklearn(runs_dir, name, fixture_run):
    run, ckpt, preds = load(runs_dir, fixture_run, 3)
    y, p = preds.target.astype(np.float64), preds.output.astype(np.float64)
    reference = {
        "mse": skm.mean_squared_error,
        "rmse": skm.root_mean_squared_error,
        "mae": skm.mean_absolute_error,
        "r2": skm.r2_score,
    }[name]
    assert ours(run, ckpt, preds, name) == pytest.approx(reference(y, p), abs=TOL)


def test_multioutput_regression_averages_outputs_uniformly():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(300, 3))
    p = y + rng.normal(scale=[0.1, 0.5, 1.0], size=(300, 3))
    prep = prepare("regression", "value", y, p)
    from ckptaudit.metrics import kernels as m

    for name, ref in (
        ("mse", skm.mean_squared_error),
        ("rmse", skm.root_mean_squared_error),
        ("mae", skm.mean_absolute_error),
        ("r2", skm.r2_score),
    ):
        assert m.KERNELS[name](prep, parse_metric(name)) == pytest.approx(ref(y, p), abs=TOL)


# ---------------------------------------------------------------- multilabel (digits as one-vs-rest labels)


@pytest.fixture(scope="module")
def multilabel(multiclass):
    _, _, _, y, p = multiclass
    return np.eye(10, dtype=int)[y], p


MULTILABEL_CASES = [
    ("accuracy", lambda y, p: skm.accuracy_score(y, (p > 0.5).astype(int))),
    ("precision", lambda y, p: skm.precision_score(y, p > 0.5, average="macro", zero_division=0)),
    ("recall:average=micro", lambda y, p: skm.recall_score(y, p > 0.5, average="micro")),
    ("f1:average=weighted", lambda y, p: skm.f1_score(y, p > 0.5, average="weighted", zero_division=0)),
    ("recall:threshold=0.3", lambda y, p: skm.recall_score(y, p > 0.3, average="macro")),
    ("roc_auc", lambda y, p: skm.roc_auc_score(y, p, average="macro")),
    ("roc_auc:average=micro", lambda y, p: skm.roc_auc_score(y, p, average="micro")),
    ("average_precision:average=weighted", lambda y, p: skm.average_precision_score(y, p, average="weighted")),
    ("balanced_accuracy", lambda y, p: np.mean([skm.balanced_accuracy_score(y[:, i], p[:, i] > 0.5) for i in range(10)])),
    ("mcc", lambda y, p: np.mean([skm.matthews_corrcoef(y[:, i], p[:, i] > 0.5) for i in range(10)])),
    ("log_loss", lambda y, p: np.mean([skm.log_loss(y[:, i], p[:, i], labels=[0, 1]) for i in range(10)])),
    ("brier", lambda y, p: np.mean([skm.brier_score_loss(y[:, i], p[:, i]) for i in range(10)])),
]


@pytest.mark.parametrize("text,reference", MULTILABEL_CASES, ids=[c[0] for c in MULTILABEL_CASES])
def test_multilabel_metric_matches_sklearn(multilabel, text, reference):
    y, p = multilabel
    from ckptaudit.metrics import kernels as m

    spec = parse_metric(text)
    prep = prepare("multilabel", "probability", y, p)
    assert m.KERNELS[spec.name](prep, spec) == pytest.approx(quiet(reference, y, p), abs=TOL)


# ---------------------------------------------------------------- edge cases


def kernel(text, task, kind, y, out, positive_class=1, n_classes=None):
    from ckptaudit.metrics import kernels as m

    spec = parse_metric(text)
    if spec.class_ref is not None:
        spec = spec.for_run(None, task, positive_class)
    return m.KERNELS[spec.name](prepare(task, kind, np.asarray(y), np.asarray(out), positive_class, n_classes), spec)


def test_tied_scores_match_sklearn_auc_and_ap():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    s = np.round(rng.random(2000) * 0.5 + y * 0.2, 1)  # heavy ties: 8 distinct values
    assert kernel("roc_auc", "binary", "probability", y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=TOL)
    assert kernel("average_precision", "binary", "probability", y, s) == pytest.approx(skm.average_precision_score(y, s), abs=TOL)


def test_top_k_ties_follow_sklearn():
    # ties go to the lower class index (the argmax rule of accuracy); scikit-learn gives
    # them to the higher one, so its value on reversed columns is the reference
    rng = np.random.default_rng(2)
    p = np.round(rng.random((500, 5)), 1)
    y = rng.integers(0, 5, 500)
    for k in (1, 2, 3):
        ref = skm.top_k_accuracy_score(4 - y, p[:, ::-1], k=k, labels=range(5))
        assert kernel(f"top_k_accuracy:k={k}", "multiclass", "probability", y, p) == pytest.approx(ref, abs=TOL)


def test_all_one_class_predictions_match_sklearn():
    y = np.array([0, 1, 0, 1, 1, 0, 0, 0])
    p = np.zeros(8)  # the model predicts "negative" for every row
    for text, ref in (
        ("precision", skm.precision_score(y, p > 0.5, zero_division=0)),
        ("recall", skm.recall_score(y, p > 0.5)),
        ("f1", skm.f1_score(y, p > 0.5, zero_division=0)),
        ("mcc", skm.matthews_corrcoef(y, p > 0.5)),
        ("balanced_accuracy", skm.balanced_accuracy_score(y, p > 0.5)),
        ("accuracy", skm.accuracy_score(y, p > 0.5)),
        ("cohen_kappa", quiet(skm.cohen_kappa_score, y, (p > 0.5).astype(int))),
    ):
        assert kernel(text, "binary", "probability", y, p) == pytest.approx(ref, abs=TOL), text


def test_absent_class_matches_sklearn_or_is_undefined():
    # class 2 of 3 never occurs in the targets
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    p = rng.dirichlet([1, 1, 1], 300)
    pred = p.argmax(1)
    assert kernel("recall", "multiclass", "probability", y, p) == pytest.approx(
        quiet(skm.recall_score, y, pred, average="macro", labels=range(3), zero_division=0), abs=TOL
    )
    assert kernel("balanced_accuracy", "multiclass", "probability", y, p) == pytest.approx(
        quiet(skm.balanced_accuracy_score, y, pred), abs=TOL
    )
    assert kernel("log_loss", "multiclass", "probability", y, p) == pytest.approx(skm.log_loss(y, p, labels=range(3)), abs=TOL)
    # ROC AUC of an absent class is undefined, in scikit-learn and here (NaN)
    assert np.isnan(kernel("roc_auc", "multiclass", "probability", y, p))
    assert np.isnan(kernel("roc_auc:class=2", "multiclass", "probability", y, p))
    assert np.isnan(quiet(skm.roc_auc_score, y == 2, p[:, 2]))
    # binary with no positives: AUC undefined, recall 0 as sklearn's zero_division
    yb = np.zeros(50, dtype=int)
    pb = rng.random(50)
    assert np.isnan(kernel("roc_auc", "binary", "probability", yb, pb))
    assert kernel("recall", "binary", "probability", yb, pb) == quiet(skm.recall_score, yb, pb > 0.5, zero_division=0)


def test_logits_and_two_column_outputs_agree_with_probabilities():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 400)
    logit = rng.normal(size=400) + y
    prob = 1 / (1 + np.exp(-logit))
    two = np.c_[np.zeros(400), logit]  # softmax of (0, z) is sigmoid(z)
    for text in ("roc_auc", "log_loss", "recall", "brier"):
        a = kernel(text, "binary", "logit", y, logit)
        assert a == pytest.approx(kernel(text, "binary", "probability", y, prob), abs=TOL)
        assert a == pytest.approx(kernel(text, "binary", "logit", y, two), abs=TOL)


def test_positive_class_zero_recodes_targets():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 400)
    score0 = rng.random(400)  # the score of class 0, which is the positive class
    assert kernel("recall", "binary", "probability", y, score0, positive_class=0) == pytest.approx(
        skm.recall_score(y, np.where(score0 > 0.5, 0, 1), pos_label=0), abs=TOL
    )
    assert kernel("roc_auc", "binary", "probability", y, score0, positive_class=0) == pytest.approx(
        skm.roc_auc_score(y == 0, score0), abs=TOL
    )


def test_label_outputs_score_confusion_metrics():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 4, 300)
    pred = np.where(rng.random(300) < 0.7, y, rng.integers(0, 4, 300))
    assert kernel("f1", "multiclass", "label", y, pred, n_classes=4) == pytest.approx(
        skm.f1_score(y, pred, average="macro"), abs=TOL
    )
    assert kernel("cohen_kappa", "multiclass", "label", y, pred, n_classes=4) == pytest.approx(
        skm.cohen_kappa_score(y, pred), abs=TOL
    )
