"""Per-slice metrics: worst_group(M) and M:group=NAME equal scikit-learn on each slice's
rows (differential), through the CLI's scoring path, the selection statistics and
`rank --by group`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from runfiles import values
from sklearn import metrics as skm
from typer.testing import CliRunner

from ckptaudit.cli import app
from ckptaudit.errors import MetricError
from ckptaudit.metrics.spec import parse_metric
from ckptaudit.stats import selection

GROUPS = np.array(["land", "water", "marsh", "city"])


def _grouped_run(path, task="binary", checkpoints=3, n=400, seed=0):
    rng = np.random.default_rng(seed)
    (path / "checkpoints").mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"format": "ckptaudit/1", "task": task, "output": "probability"}))
    g = GROUPS[rng.integers(0, 4, n)]
    site = rng.integers(0, 3, n)
    if task == "binary":
        y = rng.integers(0, 2, n)
    else:
        y = rng.integers(0, 3, n)
    outs = []
    for epoch in range(checkpoints):
        noise = rng.normal(size=(n, 3)) * (1 + (g == "water")[:, None] * (epoch + 1))
        if task == "binary":
            out = 1 / (1 + np.exp(-(2 * y - 1 + noise[:, 0])))
        else:
            z = np.eye(3)[y] * 1.5 + noise
            out = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        ckpt = path / "checkpoints" / f"epoch-{epoch:04d}"
        ckpt.mkdir()
        (ckpt / "meta.json").write_text(json.dumps({"epoch": epoch}))
        np.savez(ckpt / "val.npz", target=y, output=out, group=g, **{"group:site": site})
        outs.append(out)
    return path, y, g, site, outs


def _sk(metric, y, out, task):
    pred = (out >= 0.5).astype(int) if task == "binary" else out.argmax(axis=1)
    return {
        "accuracy": lambda: skm.accuracy_score(y, pred),
        "balanced_accuracy": lambda: skm.balanced_accuracy_score(y, pred),
        "f1:average=macro": lambda: skm.f1_score(y, pred, average="macro"),
        "recall": lambda: skm.recall_score(y, pred),
        "log_loss": lambda: skm.log_loss(y, out, labels=list(range(2 if task == "binary" else 3))),
        "roc_auc": lambda: skm.roc_auc_score(y, out),
        "brier": lambda: np.mean((out - y) ** 2),
    }[metric]()


@pytest.mark.parametrize(
    ("task", "metric"),
    [
        ("binary", "accuracy"),
        ("binary", "recall"),
        ("binary", "roc_auc"),
        ("binary", "log_loss"),
        ("binary", "brier"),
        ("multiclass", "balanced_accuracy"),
        ("multiclass", "f1:average=macro"),
        ("multiclass", "log_loss"),
    ],
)
def test_each_slice_and_the_worst_equal_sklearn(tmp_path, task, metric):
    path, y, g, site, outs = _grouped_run(tmp_path / "run", task)
    sep = "," if ":" in metric else ":"
    for name in GROUPS:
        got = values(path, f"{metric}{sep}group={name}")
        want = [_sk(metric, y[g == name], o[g == name], task) for o in outs]
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), name
    maximize = parse_metric(metric).maximize
    worst = [(min if maximize else max)(_sk(metric, y[g == n], o[g == n], task) for n in GROUPS) for o in outs]
    assert values(path, f"worst_group({metric})") == pytest.approx(worst, rel=1e-9, abs=1e-12)
    # another column, by name; integer groups match group=NAME by their text
    by_site = [(min if maximize else max)(_sk(metric, y[site == s], o[site == s], task) for s in range(3)) for o in outs]
    assert values(path, f"worst_group({metric}):by=site") == pytest.approx(by_site, rel=1e-9, abs=1e-12)
    assert values(path, f"{metric}{sep}group=2,by=site") == pytest.approx(
        [_sk(metric, y[site == 2], o[site == 2], task) for o in outs], rel=1e-9, abs=1e-12
    )


def test_the_water_slice_degrades_and_worst_group_sees_it(tmp_path):
    path, y, g, _, outs = _grouped_run(tmp_path / "run", checkpoints=4, n=2000)
    overall = values(path, "accuracy")
    worst = values(path, "worst_group(accuracy)")
    water = values(path, "accuracy:group=water")
    assert worst == water  # the noisiest slice is the worst one at every epoch
    assert water[0] - water[-1] > 0.05 and overall[0] - overall[-1] < water[0] - water[-1]


@pytest.mark.parametrize(
    "metric", ["worst_group(accuracy)", "accuracy:group=water", "worst_group(log_loss)", "recall:group=land"]
)
def test_unit_weights_reproduce_the_grouped_values_and_resampling_is_stratified_by_group(tmp_path, metric):
    _, y, g, _, outs = _grouped_run(tmp_path / "run", n=300)
    spec = parse_metric(metric)
    ev = selection.evaluate_arrays("binary", "probability", spec, y, outs, groups=g)
    assert ev.rows is not None and ev.rows.group_div >= 1
    ones = np.ones((1, y.shape[0]), dtype=np.float32)
    assert selection.weighted_values(ev.rows, ones, spec, "binary")[0] == pytest.approx(list(ev.values), rel=1e-5)
    codes = ev.rows.strata // ev.rows.group_div
    sizes = np.bincount(codes)
    for w in selection._weight_chunks(ev.rows.strata, 20, np.random.default_rng(0)):
        # every resample draws each group's rows from that group, as many as it has
        drawn = np.stack([np.bincount(codes, weights=row, minlength=4) for row in w])
        assert (drawn == sizes[None, :]).all()
    sel = selection.select(ev, resamples=300)
    assert sel.estimate is not None and sel.winner is not None
    for entry in sel.checkpoints:
        assert entry.interval[0] <= entry.value <= entry.interval[1]


def test_a_run_without_groups_is_a_one_line_exit_2(tmp_path):
    path = tmp_path / "run"
    path.mkdir()
    (path / "checkpoints" / "epoch-0000").mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"format": "ckptaudit/1", "task": "binary", "output": "probability"}))
    (path / "checkpoints" / "epoch-0000" / "meta.json").write_text('{"epoch": 0}')
    np.savez(path / "checkpoints" / "epoch-0000" / "val.npz", target=np.array([0, 1]), output=np.array([0.2, 0.7]))
    result = CliRunner().invoke(app, ["rank", str(path), "--metric", "worst_group(accuracy)"])
    assert result.exit_code == 2 and "no group column" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("worst_group(val_loss)", "unknown metric"),
        ("worst_group(accuracy):bins=3", "takes only :by=COLUMN"),
        ("worst_group(accuracy:group=a)", "already names a group"),
        ("worst_group accuracy", r"write worst_group\(METRIC\)"),
        ("accuracy:by=site", "goes with group=NAME"),
    ],
)
def test_malformed_grouped_metrics_are_clear_errors(text, message):
    with pytest.raises(MetricError, match=message):
        parse_metric(text)


def test_an_unknown_group_names_the_groups(tmp_path):
    path, *_ = _grouped_run(tmp_path / "run")
    result = CliRunner().invoke(app, ["rank", str(path), "--metric", "accuracy:group=desert"])
    assert result.exit_code == 2 and "no group 'desert'; the groups are city, land, marsh, water" in result.output


def test_rank_by_group_shows_every_slice_with_intervals_equal_to_sklearn(tmp_path):
    path, y, g, _, outs = _grouped_run(tmp_path / "run")
    result = CliRunner().invoke(
        app, ["rank", str(path), "--metric", "accuracy", "--by", "group", "--format", "json", "--resamples", "200"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 3 * (len(GROUPS) + 1)
    for row in rows:
        out = outs[row["epoch"]]
        if row["group"] == "(worst)":
            want = min(_sk("accuracy", y[g == n], out[g == n], "binary") for n in GROUPS)
        else:
            want = _sk("accuracy", y[g == row["group"]], out[g == row["group"]], "binary")
            assert row["rows"] == int((g == row["group"]).sum())
        assert row["value"] == pytest.approx(want)
        assert row["ci95"][0] <= row["value"] <= row["ci95"][1] and isinstance(row["tied_best"], bool)
    table = CliRunner().invoke(app, ["rank", str(path), "--metric", "accuracy", "--by", "group", "--resamples", "200"])
    assert table.exit_code == 0 and "(worst)" in table.stdout and "water" in table.stdout


def test_pick_by_worst_group_runs_through_the_verdict(tmp_path):
    path, y, g, _, outs = _grouped_run(tmp_path / "run", checkpoints=4, n=2000)
    result = CliRunner().invoke(app, ["pick", str(path), "--metric", "worst_group(accuracy)", "--format", "json"])
    assert result.exit_code == 0, result.output
    worst = values(path, "worst_group(accuracy)")
    doc = json.loads(result.stdout)
    assert doc[0]["metric"] == "worst_group(accuracy)" and doc[0]["value"] == pytest.approx(max(worst))
    assert doc[0]["checkpoint"] == f"epoch-{int(np.argmax(worst)):04d}" and doc[0]["expected_on_new_data"]["value"] is not None
