"""One verdict per run, read by every view: `rank --ci`, `pick`, `check`, the report (JSON and
the HTML page's data block) and the Python API show the identical interval, tie set and
winner estimate for every checkpoint of every fixture run (issue 17: the report used to
build intervals of its own, [0.5147, 0.7297] for fraud's epoch-0011 against the CLI's
[0.525, 0.725])."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

import ckptaudit
from ckptaudit.cli import app
from tests.conftest import RUNS

METRIC = {"binary": "recall", "multiclass": "accuracy", "regression": "mse"}
RESAMPLES = "120"


def _runs() -> list[str]:
    return sorted(p.name for p in RUNS.iterdir() if (p / "run.json").is_file())


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code in (0, 1), (args, result.output)
    return result.stdout


def _tuple(v):
    return None if v is None else tuple(v)


@pytest.mark.parametrize("name", _runs())
def test_every_view_shows_the_verdicts_numbers(name, tmp_path):
    path = RUNS / name
    task = json.loads((path / "run.json").read_text())["task"]
    metric = METRIC[task]

    api = ckptaudit.evaluate(path, metric, resamples=int(RESAMPLES), seed=0)
    m = api.primary
    truth = {
        c.name: (_tuple(m.interval_of(i)), m.tied_of(c.name)) for i, c in enumerate(api.checkpoints) if m.values[i] is not None
    }
    assert truth, "a fixture run without a scorable checkpoint proves nothing"
    estimate = None if m.estimate is None else (m.estimate.expected, tuple(m.estimate.interval), m.estimate.optimism)
    tied = m.tied_best

    # rank --ci --format json: every row
    rows = json.loads(_invoke("rank", str(path), "-m", metric, "--ci", "--resamples", RESAMPLES, "-f", "json"))
    seen = {r["checkpoint"]: (_tuple(r.get("ci95")), r.get("tied_best")) for r in rows if r["checkpoint"] in truth}
    assert seen == truth
    winners = [r for r in rows if r.get("expected_on_new_data")]
    if estimate is not None:
        (w,) = winners
        e = w["expected_on_new_data"]
        assert (e["expected_on_new_data"], tuple(e["ci95"]), e["optimism"]) == estimate

    # pick --format json: the winner's interval, the tie set and the estimate
    (picked,) = json.loads(_invoke("pick", str(path), "-m", metric, "--resamples", RESAMPLES, "-f", "json"))
    assert _tuple(picked["ci95"]) == truth[picked["checkpoint"]][0]
    if estimate is not None:
        e = picked["expected_on_new_data"]
        assert (e["value"], tuple(e["ci95"]), e["optimism"]) == estimate
        assert tuple(picked["tied_best"]["checkpoints"]) == tied

    # check --format json: the verdict the rules read, and the chosen checkpoint's interval
    checked = json.loads(_invoke("check", str(path), "-m", metric, "--resamples", RESAMPLES, "--allow-unchosen", "-f", "json"))
    _same_verdict(checked["verdict"], truth, tied, estimate)
    best = checked["rules"][0]["details"]
    if "chosen_ci95" in best:
        assert tuple(best["chosen_ci95"]) == truth[best["chosen"]][0]

    # the report: JSON, and the HTML page's data block
    out = tmp_path / "report.json"
    _invoke("report", str(path), "-m", metric, "--resamples", RESAMPLES, "-o", str(out))
    (run,) = json.loads(out.read_text())["runs"]
    _same_verdict(run["verdict"], truth, tied, estimate)
    page = tmp_path / "report.html"
    _invoke("report", str(path), "-m", metric, "--resamples", RESAMPLES, "-o", str(page))
    block = re.search(r'<script type="application/json" id="ckpt-data">(.*?)</script>', page.read_text(), re.DOTALL)
    data = json.loads(block.group(1).replace("<\\/", "</"))
    (html_run,) = data["runs"]
    stats = html_run["stats"][metric]
    shown = {n: (_tuple(ci), n in (stats["tied_best"] or ())) for n, ci in zip(html_run["names"], stats["ci95"], strict=True)}
    assert {n: shown[n] for n in truth} == {n: (ci, bool(t)) for n, (ci, t) in truth.items()}
    if estimate is not None:
        e = stats["expected_on_new_data"]
        assert (e["expected_on_new_data"], tuple(e["ci95"]), e["optimism"]) == estimate


def _same_verdict(verdict: dict, truth: dict, tied, estimate) -> None:
    (m,) = verdict["metrics"]
    seen = {c["checkpoint"]: (_tuple(c["ci95"]), c["tied_best"]) for c in m["checkpoints"] if c["checkpoint"] in truth}
    assert seen == truth
    assert _tuple(m["tied_best"]) == tied
    e = m["expected_on_new_data"]
    assert (None if e is None else (e["expected_on_new_data"], tuple(e["ci95"]), e["optimism"])) == estimate


def test_the_report_shows_the_clis_interval_for_fraud_epoch_11(tmp_path):
    """The reproducer of the issue: the decision table's interval of the chosen checkpoint
    is the one `check` reports for it."""
    from ckptaudit.reporting import build_report

    report = build_report([RUNS / "fraud"], ["recall"])
    row = report.runs[0].decision[0]
    checked = json.loads(_invoke("check", str(RUNS / "fraud"), "-m", "recall", "-f", "json"))
    assert checked["chosen"] == "epoch-0011"
    assert row.chosen_interval == tuple(checked["rules"][0]["details"]["chosen_ci95"])


def test_a_verdict_is_computed_in_one_pass_for_every_metric(monkeypatch):
    """Every metric's statistics and the audit come from one read of each val.npz."""
    from collections import Counter
    from pathlib import Path

    import ckptaudit.store.reader as reader

    counts: Counter = Counter()
    real = reader.read_npz

    def counting(path, *args, **kwargs):
        counts[Path(path).name] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(reader, "read_npz", counting)
    verdict = ckptaudit.evaluate(RUNS / "fraud", ["recall", "roc_auc", "accuracy"], resamples=100)
    n = len(verdict.checkpoints)
    assert counts["val.npz"] == n
    assert [m.text for m in verdict.metrics] == ["recall", "roc_auc", "accuracy"]
    assert all(m.available and len(m.intervals) == n for m in verdict.metrics)
    assert verdict.findings and verdict.chosen.checkpoint.name == "epoch-0011"


def test_a_verdict_is_frozen_and_serialises(tmp_path):
    import dataclasses

    verdict = ckptaudit.evaluate(RUNS / "digits", ["accuracy", "log_loss"], resamples=100)
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.resamples = 5  # type: ignore[misc]
    assert json.loads(verdict.to_json()) == json.loads(json.dumps(verdict.as_dict()))
    frame = verdict.to_frame()
    assert len(frame) == 2 * len(verdict.checkpoints)
    assert set(frame.columns) >= {"checkpoint", "metric", "value", "ci95_low", "ci95_high", "tied_best"}
    assert verdict.passed is None and verdict.rules == ()


def test_the_gate_is_its_rules_over_the_verdict():
    from ckptaudit.config import Policy
    from ckptaudit.gate import GateResult, check
    from ckptaudit.gate.rules import NAMES

    result = check(RUNS / "fraud", Policy(metric="recall", resamples=100), "epoch-0004")
    assert isinstance(result, GateResult) and not result.passed
    assert tuple(r.name for r in result.rules) == NAMES
    assert result.rules == result.verdict.rules
    best = result.rules[0]
    i = result.verdict.index("epoch-0004")
    assert tuple(best.details["chosen_ci95"]) == result.verdict.primary.interval_of(i)
    api = ckptaudit.evaluate(RUNS / "fraud", "recall", policy={"metric": "recall", "resamples": 100}, chosen="epoch-0004")
    assert [r.as_dict() for r in api.rules] == [r.as_dict() for r in result.rules]


def test_the_tie_sets_power_is_read_in_one_place_when_the_statistics_give_it():
    """The statistics may add the smallest detectable difference to a selection; every view
    reads it through verdict.model.detectable_difference (absent today: None, nothing shown)."""
    from types import SimpleNamespace

    from ckptaudit.verdict.model import detectable_difference
    from ckptaudit.views import _power

    assert detectable_difference(SimpleNamespace(detectable_difference=0.031)) == 0.031
    assert "0.0310" in _power(SimpleNamespace(detectable_difference=0.031))
    verdict = ckptaudit.evaluate(RUNS / "fraud", "recall", resamples=100, audit=False)
    assert verdict.as_dict()["metrics"][0]["detectable_difference"] == detectable_difference(verdict.primary.selection)
