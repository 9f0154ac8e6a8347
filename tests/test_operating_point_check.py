"""`check --threshold` verifies a shipped checkpoint/threshold pair (issue 20)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_operating_point_stats import _fraud_like
from typer.testing import CliRunner

from ckptaudit.cli import app
from ckptaudit.store.reader import discover, read_predictions

runner = CliRunner()
METRIC = "recall@precision>=0.6"


def _gate(run, chosen: str, threshold: float):
    result = runner.invoke(
        app,
        ["check", str(run), "--metric", METRIC, "--threshold", repr(threshold), "--chosen", chosen]
        + ["--resamples", "100", "--fail-code", "suspicious-perfect", "--format", "json"],
    )
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, {r["name"]: r for r in json.loads(result.stdout)["rules"]}


def _precision_at(run, chosen: str, t: float) -> float:
    r = discover([run])[0]
    preds = read_predictions(r, r.checkpoint(chosen), "val")
    flagged = preds.output >= t
    return float(np.count_nonzero(flagged & (preds.target == 1)) / max(np.count_nonzero(flagged), 1))


def test_the_tuned_pair_passes_and_a_loose_threshold_fails(tmp_path):
    run = _fraud_like(tmp_path)
    top = json.loads(runner.invoke(app, ["rank", str(run), "--metric", METRIC, "--format", "json"]).stdout)[0]
    tuned = float(next(n for n in top["notes"] if "at threshold" in n).rsplit(" ", 1)[1])
    code, rules = _gate(run, top["checkpoint"], tuned)
    assert rules["shipped-threshold"]["passed"] and code == 0, rules
    assert _precision_at(run, top["checkpoint"], tuned) >= 0.6
    loose = tuned * 0.5
    assert _precision_at(run, top["checkpoint"], loose) < 0.6  # the oracle: it does miss on val rows
    code, rules = _gate(run, top["checkpoint"], loose)
    assert code == 1 and not rules["shipped-threshold"]["passed"]
    assert "misses precision >= 0.6" in rules["shipped-threshold"]["message"]


def test_other_metrics_have_no_shipped_threshold_rule(tmp_path):
    run = _fraud_like(tmp_path)
    result = runner.invoke(
        app, ["check", str(run), "--metric", "recall", "--threshold", "0.3", "--chosen", "epoch-0001", "--format", "json"]
    )
    names = [r["name"] for r in json.loads(result.stdout)["rules"]]
    assert "shipped-threshold" not in names


@pytest.mark.parametrize("bad", ["1.5", "-0.1"])
def test_a_threshold_outside_0_1_is_a_usage_error(tmp_path, bad):
    run = _fraud_like(tmp_path)
    result = runner.invoke(app, ["check", str(run), "--metric", METRIC, "--threshold", bad, "--chosen", "epoch-0001"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_check_reads_the_threshold_pick_shipped_in_the_provenance(tmp_path):
    run = _fraud_like(tmp_path)
    for i, ckpt in enumerate(sorted((run / "checkpoints").iterdir())):
        (ckpt / "model.bin").write_bytes(bytes([i]) * 64)  # weights the provenance can vouch for
    dest = tmp_path / "best"
    picked = runner.invoke(app, ["pick", str(run), "--metric", METRIC, "--link", str(dest), "--resamples", "100"])
    assert picked.exit_code == 0, picked.output
    prov_path = tmp_path / "best.ckptaudit.json"
    prov = json.loads(prov_path.read_text())

    def gate() -> tuple[int, dict]:
        result = runner.invoke(
            app,
            ["check", str(run), "--metric", METRIC, "--chosen", str(prov_path), "--resamples", "100"]
            + ["--fail-code", "suspicious-perfect", "--format", "json"],
        )
        assert result.exit_code in (0, 1), result.output
        return result.exit_code, {r["name"]: r for r in json.loads(result.stdout)["rules"]}

    code, rules = gate()
    assert rules["shipped-threshold"]["passed"], rules
    assert rules["shipped-threshold"]["details"]["shipped_threshold"] == prov["threshold"]  # every digit
    # the oracle: half the shipped threshold misses the constraint on the validation rows
    loose = prov["threshold"] * 0.5
    assert _precision_at(run, prov["checkpoint"], loose) < 0.6
    prov_path.write_text(json.dumps({**prov, "threshold": loose}))
    code, rules = gate()
    assert code == 1 and not rules["shipped-threshold"]["passed"]
    assert rules["shipped-threshold"]["details"]["shipped_threshold"] == loose
