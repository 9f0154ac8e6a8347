"""Regression tests of issue 9 section 1: inputs on which metrics were silently wrong.

Each test writes a tiny run, scores it through the path `ckptaudit rank` uses, and checks
the value against scikit-learn (or, for bad input, the CLI's one-line error and exit 2).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from runfiles import score, values, write_run
from scipy.special import log_softmax
from sklearn import metrics as skm
from typer.testing import CliRunner

from ckptaudit.cli import app

TOL = 1e-9


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def cli_error(*args) -> str:
    """Run the CLI, expect exit 2 without a traceback, return stderr."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.stderr


# ---------------------------------------------------------------- classes from run.json


def test_label_run_counts_classes_from_run_json(tmp_path):
    y, pred = np.array([0, 1, 0, 1]), np.array([0, 1, 1, 1])
    ref = skm.f1_score(y, pred, average="macro", labels=[0, 1, 2], zero_division=0)
    assert ref == pytest.approx(0.48888888, abs=1e-6)
    named = write_run(tmp_path / "named", "multiclass", "label", y, [pred], classes=["a", "b", "c"])
    counted = write_run(tmp_path / "counted", "multiclass", "label", y, [pred], num_classes=3)
    onehot = write_run(tmp_path / "onehot", "multiclass", "probability", y, [np.eye(3)[pred]], classes=["a", "b", "c"])
    for run in (named, counted, onehot):
        assert values(run, "f1") == [pytest.approx(ref, abs=TOL)]
    # a class with no rows works as in scikit-learn (0 by zero_division), not "does not exist"
    for text, index in (("recall:class=c", 2), ("precision:class=c", 2), ("recall:class=1", 1)):
        expected = quiet(skm.recall_score if "recall" in text else skm.precision_score, y, pred, labels=[index], average="macro")
        assert values(named, text) == [pytest.approx(expected, abs=TOL)]
    assert values(counted, "recall:class=2") == [0.0]


def test_class_of_a_two_class_run_that_never_occurs(tmp_path):
    y = pred = np.zeros(5, dtype=np.int64)  # only class 0 appears, in targets and predictions
    run = write_run(tmp_path / "r", "multiclass", "label", y, [pred], classes=["a", "b"])
    assert values(run, "recall:class=1") == [quiet(skm.recall_score, y, pred, labels=[1], average="macro")]
    assert values(run, "f1") == [pytest.approx(quiet(skm.f1_score, y, pred, labels=[0, 1], average="macro"), abs=TOL)]


def test_label_run_without_class_count_is_refused(tmp_path):
    run = write_run(tmp_path / "r", "multiclass", "label", [0, 1], [[0, 1]])
    err = cli_error("rank", run, "--metric", "f1")
    assert "run.json" in err and "num_classes" in err


def test_class_beyond_the_declared_count_is_refused(tmp_path):
    run = write_run(tmp_path / "r", "multiclass", "label", [0, 1], [[0, 1]], num_classes=3)
    assert "class 3 does not exist" in cli_error("rank", run, "--metric", "recall:class=3")


# ---------------------------------------------------------------- range checks


@pytest.mark.parametrize(
    "task,output,target,out,extra,fragment",
    [
        ("multiclass", "label", [0, 1, 2], [0, -1, 2], {"num_classes": 3}, "label -1"),
        ("multiclass", "label", [0, 1, 2], [0, 7, 2], {"classes": ["a", "b", "c"]}, "label 7"),
        ("multiclass", "label", [0, 5, 2], [0, 1, 2], {"num_classes": 3}, "'target' holds class 5"),
        ("multiclass", "label", [0, 1, 2], [0, 1.5, 2], {"num_classes": 3}, "label 1.5"),
        ("binary", "label", [0, 1, 1], [0, 2, 1], {}, "label 2"),
        ("multilabel", "label", [[0, 1], [1, 0]], [[0, 2], [1, 0]], {}, "label 2"),
        ("binary", "probability", [0, 1, 1], [0.2, 1.2, 0.9], {}, "probability 1.2"),
        ("multilabel", "probability", [[0, 1], [1, 0]], [[0.1, 0.9], [-0.5, 0.2]], {}, "probability -0.5"),
        ("multiclass", "probability", [0, 1], [[0.7, 0.3, 0.0], [0.5, 0.5, 0.3]], {}, "row 1 sums to 1.3"),
        ("binary", "probability", [0, 1], [[0.7, 0.3], [0.9, 0.9]], {}, "row 1 sums to 1.8"),
    ],
)
def test_out_of_range_values_are_an_error_naming_the_file(tmp_path, task, output, target, out, extra, fragment):
    run = write_run(tmp_path / "r", task, output, target, [out], **extra)
    err = cli_error("rank", run, "--metric", "accuracy")
    assert fragment in err
    assert str(run / "checkpoints" / "epoch-0000" / "val.npz") in err


def test_probability_rows_within_tolerance_are_accepted(tmp_path):
    # a float16 softmax of 10 classes: each row sums to 1 only within float16 rounding
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 10)) * 3
    p16 = (np.exp(z) / np.exp(z).sum(1, keepdims=True)).astype(np.float16)
    assert np.abs(p16.astype(np.float64).sum(1) - 1).max() > 1e-4
    y = rng.integers(0, 10, 200)
    run = write_run(tmp_path / "r", "multiclass", "probability", y, [p16])
    assert values(run, "accuracy") == [pytest.approx(skm.accuracy_score(y, p16.argmax(1)), abs=TOL)]


def test_non_finite_outputs_stay_a_note(tmp_path):
    run = write_run(tmp_path / "r", "binary", "probability", [0, 1, 1], [[0.2, np.nan, 0.9]])
    (s,) = score(run, ["accuracy"])
    assert s.values == (None,) and "non-finite" in s.notes[0]


# ---------------------------------------------------------------- saturated scores


SATURATED = np.array([60.0, 50.0, 40.0, 45.0, 38.0])
Y5 = np.array([1, 1, 1, 0, 0])


def test_ranking_metrics_on_saturated_logits(tmp_path):
    assert 1 / (1 + np.exp(-38.0)) == 1.0  # every probability rounds to exactly 1
    single = write_run(tmp_path / "single", "binary", "logit", Y5, [SATURATED])
    two = write_run(tmp_path / "two", "binary", "logit", Y5, [np.c_[np.zeros(5), SATURATED]])
    for run in (single, two):
        assert values(run, "roc_auc") == [pytest.approx(skm.roc_auc_score(Y5, SATURATED), abs=TOL)]
        assert values(run, "roc_auc") == [pytest.approx(0.8333333333, abs=1e-9)]
        assert values(run, "average_precision") == [pytest.approx(skm.average_precision_score(Y5, SATURATED), abs=TOL)]
        assert values(run, "average_precision") == [pytest.approx(0.9166666667, abs=1e-9)]
        # the negative class ranks by the reversed order, not by 1 - p
        assert values(run, "roc_auc:class=0") == [pytest.approx(skm.roc_auc_score(1 - Y5, -SATURATED), abs=TOL)]
        assert values(run, "average_precision:class=0") == [
            pytest.approx(skm.average_precision_score(1 - Y5, -SATURATED), abs=TOL)
        ]
        assert values(run, "average_precision:average=macro") == [
            pytest.approx(skm.average_precision_score(np.eye(2)[Y5], np.c_[-SATURATED, SATURATED], average="macro"), abs=TOL)
        ]


def test_negative_class_of_tiny_probabilities(tmp_path):
    # 1 - p rounds these distinct probabilities to the same 1.0; -p keeps their order
    p = np.array([1e-20, 2e-20, 3e-20, 4e-20])
    y = np.array([1, 0, 1, 0])
    run = write_run(tmp_path / "r", "binary", "probability", y, [p])
    assert values(run, "roc_auc:class=0") == [pytest.approx(skm.roc_auc_score(1 - y, -p), abs=TOL)]
    assert skm.roc_auc_score(1 - y, 1 - p) == 0.5  # what 1 - p gave


def test_multiclass_ranking_metrics_on_saturated_logits(tmp_path):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(60, 3)) * 400  # softmax underflows to exact 0 and 1 in most rows
    y = rng.integers(0, 3, 60)
    run = write_run(tmp_path / "r", "multiclass", "logit", y, [z])
    logp = log_softmax(z, axis=1)
    onehot = np.eye(3)[y]
    for avg in ("macro", "weighted", "micro"):
        assert values(run, f"roc_auc:average={avg}") == [pytest.approx(skm.roc_auc_score(onehot, logp, average=avg), abs=TOL)]
        assert values(run, f"average_precision:average={avg}") == [
            pytest.approx(skm.average_precision_score(onehot, logp, average=avg), abs=TOL)
        ]
    for k in (1, 2):
        # the reference breaks ties towards the lower index, like accuracy (see the tie test)
        ref = skm.top_k_accuracy_score(2 - y, z[:, ::-1], k=k, labels=range(3))
        assert values(run, f"top_k_accuracy:k={k}") == [pytest.approx(ref, abs=TOL)]


def test_top_k_on_underflowing_softmax(tmp_path):
    # softmax gives (1, 0, 0) for each row: classes 1 and 2 would tie, but their logits do not
    z = np.array([[0.0, -800.0, -900.0], [0.0, -900.0, -800.0]])
    y = np.array([2, 2])
    run = write_run(tmp_path / "r", "multiclass", "logit", y, [z])
    assert values(run, "top_k_accuracy:k=2") == [skm.top_k_accuracy_score(y, z, k=2, labels=range(3))] == [0.5]


def test_log_loss_from_logits_is_exact(tmp_path):
    exact = float(np.mean(np.where(Y5 == 1, np.logaddexp(0, -SATURATED), np.logaddexp(0, SATURATED))))
    assert exact == pytest.approx((45 + 38) / 5, rel=1e-12)
    run = write_run(tmp_path / "b", "binary", "logit", Y5, [SATURATED])
    assert values(run, "log_loss") == [pytest.approx(exact, rel=1e-12)]
    z = np.array([[1000.0, 0.0, -5.0], [3.0, 2.0, 1.0]])
    y = np.array([1, 0])
    run = write_run(tmp_path / "m", "multiclass", "logit", y, [z])
    assert values(run, "log_loss") == [pytest.approx(-np.mean(log_softmax(z, axis=1)[[0, 1], y]), rel=1e-12)]
    # moderate logits: the same value as scikit-learn on the probabilities
    rng = np.random.default_rng(2)
    zm = rng.normal(size=(300, 4)) * 3
    ym = rng.integers(0, 4, 300)
    run = write_run(tmp_path / "mod", "multiclass", "logit", ym, [zm])
    pm = np.exp(log_softmax(zm, axis=1))
    assert values(run, "log_loss") == [pytest.approx(skm.log_loss(ym, pm, labels=range(4)), abs=TOL)]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_log_loss_from_probabilities_clips_as_sklearn_for_the_dtype(tmp_path, dtype):
    p = np.array([1.0, 0.0, 0.5, 1e-30, 0.999], dtype=np.float64).astype(dtype)
    y = np.array([0, 1, 1, 1, 0])
    run = write_run(tmp_path / "r", "binary", "probability", y, [p])
    eps = np.finfo(dtype).eps
    expected = skm.log_loss(y, np.clip(p.astype(np.float64), eps, 1 - eps))
    assert values(run, "log_loss") == [pytest.approx(expected, rel=1e-12)]
    # scikit-learn on the stored array itself (it computes in that dtype)
    assert values(run, "log_loss") == [pytest.approx(skm.log_loss(y, p), rel=2e-3 if dtype == np.float16 else 1e-6)]


# ---------------------------------------------------------------- multilabel balanced accuracy


def test_multilabel_balanced_accuracy_with_one_class_in_a_label(tmp_path):
    y = np.array([[0, 1], [0, 0]])
    p = np.array([[0.1, 0.9], [0.2, 0.1]])
    run = write_run(tmp_path / "r", "multilabel", "probability", y, [p])
    per_label = [quiet(skm.balanced_accuracy_score, y[:, i], p[:, i] > 0.5) for i in range(2)]
    assert values(run, "balanced_accuracy") == [pytest.approx(np.mean(per_label), abs=TOL)] == [1.0]
    # a label whose targets are all 0 while some predictions are 1 scores its TNR alone
    p2 = np.array([[0.9, 0.9], [0.2, 0.1]])
    run2 = write_run(tmp_path / "r2", "multilabel", "probability", y, [p2])
    per_label = [quiet(skm.balanced_accuracy_score, y[:, i], p2[:, i] > 0.5) for i in range(2)]
    assert values(run2, "balanced_accuracy") == [pytest.approx(np.mean(per_label), abs=TOL)] == [0.75]


# ---------------------------------------------------------------- smaller ones


def test_top1_and_accuracy_agree_on_tied_rows(tmp_path):
    p = np.array([[0.5, 0.5, 0.0], [0.4, 0.2, 0.4], [0.2, 0.4, 0.4], [1 / 3, 1 / 3, 1 / 3]])
    y = np.array([1, 2, 1, 2])
    run = write_run(tmp_path / "r", "multiclass", "probability", y, [p])
    acc = values(run, "accuracy")
    assert acc == values(run, "top_k_accuracy:k=1")
    # the documented rule: ties go to the lower class index (numpy's argmax)
    assert acc == [pytest.approx(skm.accuracy_score(y, p.argmax(1)), abs=TOL)] == [0.25]
    zrun = write_run(tmp_path / "z", "multiclass", "logit", y, [np.log(p + 1e-300)])
    assert values(zrun, "accuracy") == values(zrun, "top_k_accuracy:k=1") == acc


def test_weighted_ranking_averages_skip_an_absent_class(tmp_path):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 100)  # class 2 of 3 has no rows
    p = rng.dirichlet([1, 1, 1], 100)
    run = write_run(tmp_path / "r", "multiclass", "probability", y, [p])
    onehot = np.eye(3)[y]
    for name in ("roc_auc", "average_precision"):
        expected = quiet(getattr(skm, f"{name}_score"), onehot, p, average="weighted")
        assert np.isfinite(expected)
        assert values(run, f"{name}:average=weighted") == [pytest.approx(expected, abs=TOL)]
    # macro average precision counts the absent class as 0, as scikit-learn
    expected = quiet(skm.average_precision_score, onehot, p, average="macro")
    assert values(run, "average_precision") == [pytest.approx(expected, abs=TOL)]


def test_r2_of_one_row_is_null_with_a_note(tmp_path):
    run = write_run(tmp_path / "r", "regression", "value", [1.0], [[2.0], [1.0]])
    scores = score(run, ["r2"])
    assert [s.values for s in scores] == [(None,), (None,)]
    assert np.isnan(quiet(skm.r2_score, [1.0], [2.0]))
    assert all("fewer than 2 rows" in s.notes[0] for s in scores)
    two = write_run(tmp_path / "two", "regression", "value", [1.0, 3.0], [[2.0, 2.0]])
    assert values(two, "r2") == [pytest.approx(skm.r2_score([1.0, 3.0], [2.0, 2.0]), abs=TOL)]


def test_recorder_writes_the_class_count_of_a_label_run(tmp_path):
    from ckptaudit import Recorder
    from ckptaudit.errors import UsageError

    with pytest.raises(UsageError, match="num_classes"):
        Recorder(tmp_path / "bad", task="multiclass", output="label")
    assert not (tmp_path / "bad").exists()
    rec = Recorder(tmp_path / "run", task="multiclass", output="label", num_classes=3)
    y, pred = np.array([0, 1, 0, 1]), np.array([0, 1, 1, 1])
    rec.save(0, val_target=y, val_output=pred)
    assert values(tmp_path / "run", "f1") == [
        pytest.approx(skm.f1_score(y, pred, average="macro", labels=[0, 1, 2], zero_division=0), abs=TOL)
    ]


@pytest.mark.parametrize(
    "extra,fragment",
    [
        ({"num_classes": 4, "classes": ["a", "b", "c"]}, "'num_classes' is 4 but 'classes' names 3"),
        ({"num_classes": "3"}, "positive integer"),
        ({"num_classes": 1}, "at least 2 classes"),
    ],
)
def test_num_classes_is_validated(tmp_path, extra, fragment):
    run = write_run(tmp_path / "r", "multiclass", "label", [0, 1], [[0, 1]], **extra)
    err = cli_error("rank", run, "--metric", "f1")
    assert fragment in err and "run.json" in err
