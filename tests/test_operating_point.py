"""Operating-point metrics (issue 20) against scikit-learn's curves, through `ckptaudit rank`.

The reference reads ``sklearn.metrics.precision_recall_curve`` / ``roc_curve`` on the stored
arrays and applies the conventions docs/metrics.md documents: a row is flagged at scores
>= the threshold, flagging nothing never meets a precision constraint (the curve's
appended (precision 1, recall 0) point has no threshold), ties on the optimised rate go to
the better constraint value, then to the higher threshold; nothing meeting the constraint
is null, with a note, listed last.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from runfiles import write_run
from scipy.special import expit
from sklearn import metrics as skm
from typer.testing import CliRunner

from ckptaudit.cli import app
from ckptaudit.errors import MetricError
from ckptaudit.metrics.spec import parse_metric

runner = CliRunner()

SPECS = (
    "recall@precision>=0.5",
    "precision@recall>=0.7",
    "specificity@recall>=0.9",
    "recall@specificity>=0.8",
    "tpr@fpr<=0.2",
    "cost:fn=10,fp=1",
)


def reference(y: np.ndarray, s: np.ndarray, text: str) -> tuple[float | None, float | None]:
    """(value, threshold) from scikit-learn's curves (None, None: nothing meets it)."""
    y = np.asarray(y, dtype=int)
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    fpr, tpr, thr = skm.roc_curve(y, s, drop_intermediate=False)  # descending, first inf
    if text.startswith("cost"):
        fn_c, fp_c = (float(v) for v in re.findall(r"=([0-9.]+)", text))
        cost = (fn_c * n_pos * (1 - tpr) + fp_c * n_neg * fpr) / len(y)
        best = cost.min()
        i = max(np.flatnonzero(np.isclose(cost, best, rtol=0, atol=1e-12)), key=lambda j: thr[j])
        return float(cost[i]), float(thr[i])
    m = re.match(r"(\w+)@(\w+)(>=|<=)([0-9.]+)", text)
    assert m
    target, constraint, _, bound_s = m.groups()
    bound = float(bound_s)
    if target == "tpr":
        target = "recall"
    if constraint == "fpr":
        constraint, bound = "specificity", 1 - bound
    if "precision" in (target, constraint):
        prec, rec, pthr = skm.precision_recall_curve(y, s, drop_intermediate=False)
        prec, rec = prec[:-1], rec[:-1]  # the appended point flags nothing: no threshold
        rates = {"precision": prec, "recall": rec}
        thresholds = pthr
    else:
        rates = {"recall": tpr, "specificity": 1 - fpr}
        thresholds = thr
    t_rate, c_rate = rates[target], rates[constraint]
    ok = np.flatnonzero(c_rate >= bound - 1e-12)
    if ok.size == 0:
        return None, None
    key = lambda j: (t_rate[j], c_rate[j], thresholds[j])  # noqa: E731
    i = max(ok, key=key)
    return float(t_rate[i]), float(thresholds[i])


def rank(run, metric: str) -> list[dict]:
    result = runner.invoke(app, ["rank", str(run), "--metric", metric, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def threshold_of(row: dict, metric: str) -> float | None:
    prefix = f"{metric}: at threshold "
    found = [n[len(prefix) :] for n in row["notes"] if n.startswith(prefix)]
    return float(found[0]) if found else None


def datasets() -> dict[str, tuple[np.ndarray, list[np.ndarray]]]:
    rng = np.random.default_rng(7)
    n = 300
    y = (rng.random(n) < 0.2).astype(int)
    signal = [rng.normal(size=n) + k * 0.6 * y for k in range(4)]
    random_scores = [expit(x) for x in signal]
    tied = [np.round(p, 1) for p in random_scores]
    equal = [np.full(n, 0.3), np.full(n, 0.7)]
    return {"random": (y, random_scores), "ties": (y, tied), "all-equal": (y, equal)}


@pytest.mark.parametrize("case", ["random", "ties", "all-equal"])
@pytest.mark.parametrize("metric", SPECS)
def test_values_and_thresholds_equal_sklearn_curves(tmp_path, case, metric):
    y, outputs = datasets()[case]
    run = write_run(tmp_path / "run", "binary", "probability", y, outputs)
    rows = {r["checkpoint"]: r for r in rank(run, metric)}
    for k, s in enumerate(outputs):
        row = rows[f"epoch-{k:04d}"]
        want, want_t = reference(y, s, metric)
        if want is None:
            assert row[metric] is None
            assert any("no threshold meets" in n for n in row["notes"]), row["notes"]
            continue
        assert row[metric] == pytest.approx(want, abs=1e-12), (k, row)
        assert threshold_of(row, metric) == pytest.approx(want_t, abs=0), (k, row)


def test_unmeetable_constraint_is_null_with_a_note_and_listed_last(tmp_path):
    y, outputs = datasets()["random"]
    # epoch 0 ranks every negative above every positive: its precision never passes 0.2
    outputs = [expit(-3.0 * y + 0.1 * np.arange(len(y)) / len(y))] + outputs[1:]
    run = write_run(tmp_path / "run", "binary", "probability", y, outputs)
    metric = "recall@precision>=0.9"
    rows = rank(run, metric)
    refs = [reference(y, s, metric)[0] for s in outputs]
    assert any(r is None for r in refs) and any(r is not None for r in refs)
    nulls = [i for i, r in enumerate(rows) if r[metric] is None]
    assert nulls and nulls == list(range(len(rows) - len(nulls), len(rows)))
    note = [n for n in rows[-1]["notes"] if "no threshold meets precision >= 0.9" in n]
    assert note and "the best is" in note[0]


def test_logit_run_reports_the_threshold_as_a_probability(tmp_path):
    rng = np.random.default_rng(3)
    y = (rng.random(200) < 0.3).astype(int)
    logits = [rng.normal(size=200) + 1.5 * y]
    run = write_run(tmp_path / "run", "binary", "logit", y, logits)
    metric = "recall@precision>=0.6"
    row = rank(run, metric)[0]
    want, want_t = reference(y, logits[0], metric)
    assert row[metric] == pytest.approx(want, abs=1e-12)
    assert threshold_of(row, metric) == pytest.approx(float(expit(want_t)), rel=1e-12)


def test_one_class_of_a_multiclass_run_equals_one_vs_rest(tmp_path):
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, size=240)
    p = rng.dirichlet([1, 1, 1], size=240) + np.eye(3)[y] * 0.5
    p /= p.sum(axis=1, keepdims=True)
    run = write_run(tmp_path / "run", "multiclass", "probability", y, [p], classes=["a", "b", "c"])
    metric = "precision@recall>=0.8:class=b"
    row = rank(run, metric)[0]
    want, want_t = reference((y == 1).astype(int), p[:, 1], metric)
    assert row[metric] == pytest.approx(want, abs=1e-12)
    assert threshold_of(row, metric) == pytest.approx(want_t, abs=0)


def test_multiclass_without_a_class_is_a_one_line_usage_error(tmp_path):
    y = np.array([0, 1, 2, 1])
    run = write_run(tmp_path / "run", "multiclass", "probability", y, [np.eye(3)[y]], classes=["a", "b", "c"])
    result = runner.invoke(app, ["rank", str(run), "--metric", "recall@precision>=0.8"])
    assert result.exit_code == 2
    assert "needs :class=NAME" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "text",
    ["recall@precision>=1.5", "recall@precision<=0.8", "recall@fpr>=0.1", "cost:fn=1", "f1@precision>=0.5", "recall@precision"],
)
def test_malformed_operating_points_are_metric_errors(text):
    with pytest.raises(MetricError):
        parse_metric(text)


def test_spec_directions_and_alias():
    assert parse_metric("recall@precision>=0.8").maximize
    assert not parse_metric("cost:fn=5,fp=1").maximize
    alias = parse_metric("tpr@fpr<=0.01").operating
    assert (alias.target, alias.constraint) == ("recall", "specificity") and math.isclose(alias.bound, 0.99)


def test_the_threshold_note_carries_its_numbers_typed_and_survives_the_pool():
    # the pick and the gate read the threshold from the note's fields, never its text; the
    # pool's workers send notes to the parent by pickle
    import pickle

    from ckptaudit.metrics import operating as op

    note = op.OperatingNote("recall@precision>=0.8: at threshold 0.37", "recall@precision>=0.8", op.TUNED, 0.37)
    shipped = op.OperatingNote("x: at the shipped threshold 0.5: misses", "x", op.SHIPPED, 0.5, False)
    notes = tuple(pickle.loads(pickle.dumps((note, shipped, "a plain note"))))
    assert notes[0] == note and isinstance(notes[0], op.OperatingNote)
    assert op.tuned_threshold(notes, "recall@precision>=0.8") == 0.37
    assert op.tuned_threshold(notes, "recall@precision>=0.9") is None
    found = op.operating_note(notes, "x", op.SHIPPED)
    assert found is not None and found.threshold == 0.5 and found.meets is False
