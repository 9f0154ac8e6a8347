"""combine: prediction ensembles from saved predictions (means of last-k/top-k, Caruana greedy),
checked against hand-written numpy, scikit-learn and the run's own rank."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ckptaudit.combining import combine_run
from ckptaudit.combining.adoption import Searcher
from ckptaudit.combining.ensembles import ensemble_mean, load_members
from ckptaudit.combining.greedy import greedy_select
from ckptaudit.combining.rows import row_values
from ckptaudit.metrics.evaluation import parse_metrics
from ckptaudit.store.reader import read_run
from tests.runfiles import values, write_run


def _binary(tmp_path, k=6, n=400, seed=0, output="probability"):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    z = (2 * y - 1) * 1.0
    logits = [z + rng.normal(0, 2.0, n) for _ in range(k)]
    outs = [1 / (1 + np.exp(-lg)) for lg in logits] if output == "probability" else logits
    return write_run(tmp_path / "run", "binary", output, y, outs), y, outs


def _multiclass(tmp_path, k=5, n=300, c=4, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    outs = []
    for _ in range(k):
        lg = rng.normal(0, 1.5, (n, c))
        lg[np.arange(n), y] += 1.0
        p = np.exp(lg - lg.max(axis=1, keepdims=True))
        outs.append(p / p.sum(axis=1, keepdims=True))
    return write_run(tmp_path / "run", "multiclass", "probability", y, outs), y, outs


def accuracy_score(y, pred):
    return float(np.mean(np.asarray(y) == np.asarray(pred)))


def brier_score_loss(y, p):
    return float(np.mean((np.asarray(y) - p) ** 2))


def log_loss(y, p, labels=None):
    """scikit-learn's log_loss, written out (probabilities clipped at float64 epsilon)."""
    p = np.clip(np.asarray(p, dtype=np.float64), np.finfo(np.float64).eps, 1 - np.finfo(np.float64).eps)
    y = np.asarray(y)
    if p.ndim == 1:
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))


def _spec(run, text):
    return parse_metrics([text], [run])[0]


@pytest.mark.parametrize("metric", ["accuracy", "log_loss", "brier"])
def test_row_values_match_hand_written_and_rank_binary_and_multiclass(tmp_path, metric):
    path, y, outs = _binary(tmp_path)
    run = read_run(path)
    m = load_members(run)
    vals = row_values("binary", _spec(run, metric), m.y, m.probs, m.eps).mean(axis=1)
    ref = {
        "accuracy": [accuracy_score(y, o > 0.5) for o in outs],
        "log_loss": [log_loss(y, o) for o in outs],
        "brier": [brier_score_loss(y, o) for o in outs],
    }[metric]
    np.testing.assert_allclose(vals, ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(vals, values(path, metric), rtol=1e-9, atol=1e-12)
    path2, y2, outs2 = _multiclass(tmp_path / "mc")
    run2 = read_run(path2)
    m2 = load_members(run2)
    vals2 = row_values("multiclass", _spec(run2, metric), m2.y, m2.probs, m2.eps).mean(axis=1)
    np.testing.assert_allclose(vals2, values(path2, metric), rtol=1e-9, atol=1e-12)


def test_greedy_matches_a_plain_loop_and_repeats_members(tmp_path):
    path, y, outs = _binary(tmp_path, k=8)
    run = read_run(path)
    m = load_members(run)
    spec = _spec(run, "log_loss")
    w = np.ones(len(y))
    members, value = greedy_select(m.probs, lambda p: row_values("binary", spec, m.y, p, m.eps), w, maximize=False)
    # the same search, one candidate at a time with scikit-learn's log_loss
    chosen: list[int] = []
    current = np.inf
    while True:
        trials = [log_loss(y, np.mean([outs[i] for i in chosen + [j]], axis=0)) for j in range(len(outs))]
        j = int(np.argmin(trials))
        if np.isfinite(current) and not trials[j] < current - 1e-12 * current:
            break
        chosen.append(j)
        current = trials[j]
    assert members == chosen
    assert value == pytest.approx(current, rel=1e-9)
    assert len(members) > 1


def test_written_ensemble_is_the_numpy_mean_of_its_members(tmp_path):
    path, y, outs = _binary(tmp_path, k=6)
    result = combine_run(read_run(path), "log_loss", resamples=100, write=True)
    assert result.written is not None and result.written.name == f"combined-{result.chosen}"
    meta = json.loads((result.written / "meta.json").read_text())
    assert meta["kind"] == "ensemble"
    names = [f"epoch-{i:04d}" for i in range(6)]
    idx = [names.index(r["checkpoint"]) for r in meta["members"] for _ in range(r["count"])]
    hand = np.mean([outs[i] for i in idx], axis=0)
    stored = np.load(result.written / "val.npz")["output"]
    np.testing.assert_allclose(stored, hand, rtol=0, atol=1e-9)
    # rank sees it as an ordinary checkpoint with the value the search chose it by
    run = read_run(path)
    assert result.written.name in [c.name for c in run.checkpoints]
    scored = dict(zip([c.name for c in run.checkpoints], values(path, "log_loss"), strict=True))
    chosen = next(c for c in result.candidates if c.label == result.chosen)
    assert scored[result.written.name] == pytest.approx(chosen.value, rel=1e-9)
    assert scored[result.written.name] == pytest.approx(log_loss(y, hand), rel=1e-9)


def test_logit_run_ensemble_averages_probabilities_not_logits(tmp_path):
    path, y, logits = _binary(tmp_path, k=4, output="logit")
    run = read_run(path)
    m = load_members(run)
    p = ensemble_mean(m.probs, [0, 1, 1, 3])
    hand = np.mean([1 / (1 + np.exp(-logits[i])) for i in (0, 1, 1, 3)], axis=0)
    np.testing.assert_allclose(p, hand, rtol=0, atol=1e-12)


def test_last_k_and_top_k_are_means_of_the_named_checkpoints(tmp_path):
    path, y, outs = _multiclass(tmp_path, k=5)
    run = read_run(path)
    m = load_members(run)
    searcher = Searcher(m, _spec(run, "log_loss"))
    res = searcher.search(np.ones(len(y)))
    last = res.found["last-k"]
    k = len(last.members)
    assert last.members == list(range(5 - k, 5))
    assert last.value == pytest.approx(log_loss(y, np.mean(outs[5 - k :], axis=0), labels=range(4)), rel=1e-9)
    top = res.found["top-k"]
    singles = [log_loss(y, o, labels=range(4)) for o in outs]
    assert sorted(top.members) == sorted(np.argsort(singles)[: len(top.members)].tolist())


def test_combine_refuses_metrics_that_are_not_row_means(tmp_path):
    from ckptaudit.errors import MetricError

    path, _, _ = _binary(tmp_path)
    with pytest.raises(MetricError, match="mean over rows"):
        combine_run(read_run(path), "roc_auc", resamples=100)


def test_prune_keeps_the_members_an_ensemble_needs_and_rank_pick_see_it(tmp_path):
    import ckptaudit
    from ckptaudit.pruning import prune

    path, y, outs = _binary(tmp_path, k=6)
    for folder in (path / "checkpoints").iterdir():
        (folder / "model.pt").write_bytes(b"w" * 100)
    result = combine_run(read_run(path), "log_loss", resamples=100)
    assert result.adopt and result.written is not None
    members = {r["checkpoint"] for r in json.loads((result.written / "meta.json").read_text())["members"]}
    assert members - {"epoch-0005"}  # more than the newest one, which keep_last keeps anyway
    plan = prune([path], ["log_loss"], keep=1, keep_last=1)[0]
    action = {e.checkpoint: e for e in plan.entries}
    for name in members:
        assert action[name].action == "keep"
        assert f"member of {result.written.name}" in action[name].kept_by
    others = {f"epoch-{i:04d}" for i in range(5)} - members
    assert all(action[n].action == "delete" for n in others if not action[n].kept_by)
    # the combination is the run's best checkpoint under the metric it was adopted on
    assert ckptaudit.rank(path, "log_loss").iloc[0]["checkpoint"] == result.written.name
    assert ckptaudit.pick(path, "log_loss", resamples=200)[0].checkpoint.name == result.written.name


def test_nothing_is_written_when_no_combination_helps_unless_asked(tmp_path):
    # every checkpoint the same predictions: no combination can differ from the best single
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.5 + 0.3 * (2 * y - 1) + rng.normal(0, 0.2, 300), 0.01, 0.99)
    path = write_run(tmp_path / "same", "binary", "probability", y, [p] * 5)
    result = combine_run(read_run(path), "log_loss", resamples=100)
    assert not result.adopt and result.written is None
    assert result.decision.startswith("no combination helps")
    assert sorted(c.name for c in (path / "checkpoints").iterdir()) == [f"epoch-{i:04d}" for i in range(5)]
    forced = combine_run(read_run(path), "log_loss", resamples=100, write=True)
    assert forced.written is not None
    assert json.loads((forced.written / "meta.json").read_text())["combine"]["adopted"] is False


def test_cli_combine_exit_codes_and_json(tmp_path):
    from typer.testing import CliRunner

    from ckptaudit.cli import app

    path, _, _ = _binary(tmp_path)
    res = CliRunner().invoke(app, ["combine", str(path), "-m", "log_loss", "--dry-run", "--resamples", "50", "-f", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["runs"][0]["adopt"] in (True, False) and doc["runs"][0]["written"] is None
    bad = CliRunner().invoke(app, ["combine", str(path), "-m", "roc_auc"])
    assert bad.exit_code == 2 and "mean over rows" in bad.output
    missing = CliRunner().invoke(app, ["combine", str(tmp_path / "nope"), "-m", "accuracy"])
    assert missing.exit_code == 2


def test_rank_marks_combined_checkpoints_and_their_members(tmp_path):
    from typer.testing import CliRunner

    from ckptaudit.cli import app

    path, _, _ = _binary(tmp_path, k=6)
    plain = CliRunner().invoke(app, ["rank", str(path), "-m", "log_loss", "-f", "json"])
    assert all("combined" not in r for r in json.loads(plain.stdout))  # nothing to mark: no column
    result = combine_run(read_run(path), "log_loss", resamples=100)
    members = {r["checkpoint"] for r in json.loads((result.written / "meta.json").read_text())["members"]}
    res = CliRunner().invoke(app, ["rank", str(path), "-m", "log_loss", "-f", "json"])
    assert res.exit_code == 0, res.output
    rows = {r["checkpoint"]: r["combined"] for r in json.loads(res.stdout)}
    assert rows[result.written.name] == f"ensemble of {len(members)}"
    for name in rows:
        if name in members:
            assert rows[name] == f"member of {result.written.name}"
        elif name != result.written.name:
            assert rows[name] is None


@pytest.mark.parametrize("metric", ["log_loss", "brier", "accuracy"])
def test_the_searchs_greedy_equals_the_plain_greedy_on_probabilities(tmp_path, metric):
    # the search works on true-class probabilities (log_loss, binary brier) and on sums
    # (log_loss): the same members as the plain search on probabilities
    path, y, outs = _binary(tmp_path, k=10, n=500, seed=7)
    run = read_run(path)
    m = load_members(run)
    spec = _spec(run, metric)
    w = np.random.default_rng(0).poisson(1.0, len(y)).astype(np.float64)
    plain, _ = greedy_select(m.probs, lambda p: row_values("binary", spec, m.y, p, m.eps), w, spec.maximize)
    found = Searcher(m, spec).search(w).found["greedy"]
    assert found.members == plain


def test_across_pools_a_sweeps_runs_and_writes_a_combined_run(tmp_path):
    from typer.testing import CliRunner

    import ckptaudit
    from ckptaudit.cli import app

    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 600)
    for r in range(3):  # three fine-tunes, two checkpoints each, on the same validation rows
        outs = [1 / (1 + np.exp(-((2 * y - 1) * 1.0 + rng.normal(0, 2.0, 600)))) for _ in range(2)]
        write_run(tmp_path / "sweep" / f"ft{r}", "binary", "probability", y, outs)
    res = CliRunner().invoke(
        app, ["combine", str(tmp_path / "sweep"), "--across", "-m", "log_loss", "--resamples", "50", "-f", "json"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)["runs"][0]
    assert doc["adopt"] and "across 3 runs" in doc["run"]
    names = {m["checkpoint"] for c in doc["candidates"] for m in c["members"]}
    assert names <= {f"ft{r}/epoch-{e:04d}" for r in range(3) for e in range(2)}
    assert len({n.split("/")[0] for n in names}) > 1  # members come from several runs
    written = Path(doc["written"])
    assert written.parent.parent == tmp_path / "sweep" / "combined-across"
    ranked = ckptaudit.rank(tmp_path / "sweep", "log_loss")
    assert ranked.iloc[0]["checkpoint"] == written.name
    # per-run combine of the same sweep leaves the --across run alone
    again = CliRunner().invoke(app, ["combine", str(tmp_path / "sweep"), "-m", "log_loss", "--resamples", "20", "--dry-run"])
    assert again.exit_code == 0, again.output
    # runs validated on other rows are refused
    write_run(tmp_path / "sweep" / "other", "binary", "probability", 1 - y, [np.full(600, 0.5)] * 2)
    bad = CliRunner().invoke(app, ["combine", str(tmp_path / "sweep"), "--across", "-m", "log_loss", "--dry-run"])
    assert bad.exit_code == 2 and "other rows" in bad.output


def test_report_shows_the_combination_panel_from_what_combine_recorded(tmp_path):
    from typer.testing import CliRunner

    from ckptaudit.cli import app

    path, _, _ = _binary(tmp_path, k=6)
    out = tmp_path / "r.html"
    assert CliRunner().invoke(app, ["report", str(path), "-m", "log_loss", "-o", str(out)]).exit_code == 0
    assert "<h3>Combinations</h3>" not in out.read_text()
    result = combine_run(read_run(path), "log_loss", resamples=100)
    assert CliRunner().invoke(app, ["report", str(path), "-m", "log_loss", "-o", str(out)]).exit_code == 0
    html = out.read_text()
    assert "<h3>Combinations</h3>" in html and f"<b>{result.written.name}</b> (ensemble, adopted)" in html
    for c in result.candidates:
        assert f"<td>{c.corrected_gain:+.4g}</td><td>[{c.interval[0]:+.4g}, {c.interval[1]:+.4g}]</td>" in html
    assert result.decision in html
