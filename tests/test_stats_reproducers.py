"""Issue 17 point 5: the statistics describe the displayed number.

One regression test per reproducer of the issue (M1, S1-S9). Each failed on the code
before the fix: the per-row data the bootstrap resamples were a parallel re-implementation
of the kernels, and drifted from the displayed value.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from ckptaudit.metrics import kernels
from ckptaudit.metrics.spec import parse_metric
from ckptaudit.stats import selection


def _ones(ev) -> np.ndarray:
    """The value every checkpoint gets under resampling weights all equal to one."""
    n = ev.rows.data.shape[1]
    return selection.weighted_values(ev.rows, np.ones((1, n), dtype=np.float32), ev.spec, ev.run.task)[0]


def _select(task, output, text, y, outputs, **kw):
    spec = parse_metric(text)
    ev = selection.evaluate_arrays(task, output, spec, np.asarray(y), [np.asarray(o) for o in outputs], **kw)
    return ev, selection.select(ev, resamples=400, seed=0)


def _select_run(tmp_path, task, output, text, y, outputs, **run_json):
    """The path `rank --ci` / `check` take: a run folder, the spec bound to the run."""
    from runfiles import write_run

    from ckptaudit.metrics.evaluation import RunScorer
    from ckptaudit.store.reader import discover

    path = write_run(tmp_path / "run", task, output, np.asarray(y), [np.asarray(o) for o in outputs], **run_json)
    (run,) = discover([path])
    spec = RunScorer(run, [parse_metric(text)]).specs[0]
    ev = selection.evaluate_run(run, spec)
    return ev, selection.select(ev, resamples=400, seed=0)


# ---------------------------------------------------------------- M1


@pytest.mark.parametrize("name", ["roc_auc", "average_precision"])
def test_m1_binary_micro_pools_one_minus_p(name):
    """Binary probability runs pool 1 - p with p under average=micro, as scikit-learn reads
    the two columns [1 - p, p] (before: -p, giving 0.889 / 0.917)."""
    y, p = np.array([0, 1, 1]), np.array([0.2, 0.6, 0.9])
    fn = skm.roc_auc_score if name == "roc_auc" else skm.average_precision_score
    expected = fn(np.eye(2)[y], np.c_[1 - p, p], average="micro")
    assert expected == pytest.approx(1.0)
    prep = kernels.prepare("binary", "probability", y, p)
    assert kernels.KERNELS[name](prep, parse_metric(f"{name}:average=micro")) == pytest.approx(expected, abs=1e-12)
    ev, _ = _select("binary", "probability", f"{name}:average=micro", y, [p])
    assert _ones(ev)[0] == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------- S1


def _three_class(rng, n, strength):
    y = rng.integers(0, 3, n)
    scores = rng.normal(size=(n, 3))
    scores[np.arange(n), y] += strength
    return y, scores


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_s1_class_zero_is_not_flipped(task, tmp_path):
    rng = np.random.default_rng(1)
    y, s = _three_class(rng, 300, 3.0)
    target = y if task == "multiclass" else np.eye(3, dtype=np.int64)[y]
    ev, sel = _select_run(tmp_path, task, "logit", "roc_auc:class=0", target, [s])
    value = ev.values[0]
    assert value > 0.95
    assert _ones(ev)[0] == pytest.approx(value, abs=1e-12)
    low, high = sel.checkpoints[0].interval
    assert low <= value <= high


def test_s1_check_does_not_tie_a_clearly_worse_checkpoint(tmp_path):
    """AUC 0.81 against 0.99 on 300 rows is told apart (before: 'cannot be told apart')."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 300)
    good = rng.normal(size=(300, 3))
    good[:, 0] += 3.5 * (y == 0)
    weak = good.copy()
    weak[:, 0] = rng.normal(size=300) + 1.2 * (y == 0)
    ev, sel = _select_run(tmp_path, "multiclass", "logit", "roc_auc:class=0", y, [weak, good])
    assert ev.values[0] < 0.9 < 0.97 < ev.values[1]
    assert sel.winner == ev.checkpoints[1].name
    assert not sel.is_tied_best(ev.checkpoints[0].name)


# ---------------------------------------------------------------- S2, S3, S6, S7: per-row data = the displayed value


def test_s2_log_loss_uses_the_kernels_clipping():
    """float32 probabilities are clipped at float32's eps, as the kernel (and scikit-learn) do."""
    y = np.array([0, 1, 1, 0, 1, 0])
    p = np.array([0.0, 1.0, 0.0, 0.3, 0.8, 1.0], dtype=np.float32)
    ev, sel = _select("binary", "probability", "log_loss", y, [p])
    value = ev.values[0]
    assert _ones(ev)[0] == pytest.approx(value, rel=1e-6)
    low, high = sel.checkpoints[0].interval
    assert low <= value <= high


def test_s2_log_loss_of_logits_is_not_clipped():
    y = np.array([0, 1, 1, 0])
    z = np.array([-3.0, 60.0, -60.0, 2.0])
    ev, _ = _select("binary", "logit", "log_loss", y, [z])
    assert _ones(ev)[0] == pytest.approx(ev.values[0], rel=1e-6)


def test_s3_top_k_uses_the_kernels_tie_rule():
    """Ties rank the lower class index first (before: the reversed rule)."""
    y = np.array([0, 0, 0, 1, 2, 2])
    p = np.full((6, 3), 1 / 3)
    ev, _ = _select("multiclass", "probability", "top_k_accuracy:k=1", y, [p])
    assert ev.values[0] == pytest.approx(3 / 6)
    assert _ones(ev)[0] == pytest.approx(ev.values[0], abs=1e-7)


def test_s4_saturated_binary_logits_keep_their_order():
    """The docs' example: logits whose float32 sigmoids are all 1.0 still rank (AUC 0.833,
    before: 'expected on new data' 0.500 [0.5, 0.5])."""
    y = np.array([0, 0, 1, 1, 0, 1])
    z = np.array([20.0, 30.0, 25.0, 40.0, 21.0, 35.0])
    ev, sel = _select("binary", "logit", "roc_auc", y, [z])
    assert ev.values[0] == pytest.approx(skm.roc_auc_score(y, z))
    assert _ones(ev)[0] == pytest.approx(ev.values[0], abs=1e-12)
    assert sel.estimate.interval != (0.5, 0.5)
    low, high = sel.checkpoints[0].interval
    assert low <= ev.values[0] <= high and high > 0.5


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("name", ["roc_auc", "average_precision"])
def test_s5_micro_average_inside_the_statistics(task, name):
    rng = np.random.default_rng(5)
    n = 40
    if task == "binary":
        y, out, output = rng.integers(0, 2, n), rng.random(n), "probability"
    elif task == "multiclass":
        y, out, output = _three_class(rng, n, 1.0) + ("logit",)
    else:
        y, out, output = rng.integers(0, 2, (n, 3)), rng.normal(size=(n, 3)), "logit"
    ev, _ = _select(task, output, f"{name}:average=micro", y, [out])
    assert _ones(ev)[0] == pytest.approx(ev.values[0], abs=1e-12)


def test_s6_float64_scores_are_not_cast_into_ties():
    y = np.array([0, 1, 0, 1, 1, 0])
    p = 0.5 + 1e-10 * np.array([1, 2, 3, 4, 5, 0], dtype=np.float64)
    ev, _ = _select("binary", "probability", "roc_auc", y, [p])
    assert ev.values[0] == pytest.approx(skm.roc_auc_score(y, p))
    assert _ones(ev)[0] == pytest.approx(ev.values[0], abs=1e-12)


def test_s7_two_class_multiclass_brier_is_halved():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 50)
    p1 = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2, 50), 0.01, 0.99)
    proba = np.c_[1 - p1, p1]
    ev, sel = _select("multiclass", "probability", "brier", y, [proba])
    assert ev.values[0] == pytest.approx(skm.brier_score_loss(y, p1))
    assert _ones(ev)[0] == pytest.approx(ev.values[0], rel=1e-6)
    low, high = sel.checkpoints[0].interval
    assert low <= ev.values[0] <= high


# ---------------------------------------------------------------- S8, S9: few positives


def _two_positives(checkpoints=5, n=60):
    y = np.zeros(n, dtype=np.int64)
    y[[3, 40]] = 1
    rng = np.random.default_rng(8)
    preds = []
    for _ in range(checkpoints):
        pred = (rng.random(n) < 0.2).astype(np.int64)
        pred[[3, 40]] = 1  # every checkpoint catches both positives
        preds.append(pred)
    return y, preds


def test_s8_out_of_bag_draws_without_positives_are_skipped():
    """Every checkpoint catches both positives: the expected recall is 1, not ~0.5 (before,
    an out-of-bag draw without positives scored 0); the draws skipped are counted."""
    y, preds = _two_positives()
    ev, sel = _select("binary", "label", "recall", y, preds)
    est = sel.estimate
    assert est.raw == 1.0
    assert est.expected > 0.95
    assert est.skipped_draws > 0
    assert est.too_few_positives and est.positives_needed and est.positives_needed > 2


def test_s9_recall_of_two_of_two_gets_a_wilson_interval():
    y, preds = _two_positives(checkpoints=1)
    _, sel = _select("binary", "label", "recall", y, preds)
    low, high = sel.checkpoints[0].interval
    assert high == 1.0
    assert low == pytest.approx(0.3424, abs=0.01)


# ---------------------------------------------------------------- power


def test_selection_reports_the_smallest_detectable_difference():
    """'Cannot be told apart' is not 'equal': every member of the tie set is within the
    reported detectable difference of the best, every other checkpoint beyond it."""
    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, 400)
    preds = [np.where(rng.random(400) < acc, y, 1 - y) for acc in (0.8, 0.78, 0.75, 0.7, 0.6)]
    ev, sel = _select("binary", "label", "accuracy", y, preds)
    q = sel.detectable_difference
    assert q is not None and 0 < q < 0.2
    assert sel.as_dict()["detectable_difference"] == q
    best = max(v for v in ev.values)
    for entry in sel.checkpoints:
        gap = best - entry.value
        assert (gap <= q) == entry.tied_best, (entry.checkpoint, gap, q)
