"""`ckptaudit audit` reports exactly the expected finding codes on each real fixture run."""

from __future__ import annotations

import json
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from typer.testing import CliRunner

from ckptaudit.auditing import AuditOptions
from ckptaudit.auditing.rules import CODES
from ckptaudit.audits import audit_paths
from ckptaudit.cli import app
from ckptaudit.metrics import kernels as metrics
from ckptaudit.metrics.spec import parse_metric
from ckptaudit.stats import bootstrap
from ckptaudit.store.reader import read_predictions, read_run

runner = CliRunner()

EXPECTED = {
    "fraud": {"accuracy-paradox", "winner-within-noise", "overfitting"},
    "digits": {"best-is-last", "winner-within-noise", "stopped-too-early"},
    "friedman": {"best-is-last", "stopped-too-early"},
    "leak-ids": {"train-val-overlap", "winner-within-noise", "best-is-last", "stopped-too-early"},
    "leak-hashes": {"train-val-overlap", "winner-within-noise", "best-is-last", "stopped-too-early"},
    "overfit": {"winner-within-noise", "overfitting"},
    "train-loss": {"selected-by-train-metric", "winner-within-noise", "overfitting", "stopped-too-early"},
    "noisy-train": {"val-beats-train", "winner-within-noise"},
    "target-leak": {"suspicious-perfect", "winner-within-noise"},
    "tiny-val": {"winner-within-noise", "small-val-set"},
}
CLEAN = ("digits", "friedman")


def audit_json(*args):
    result = runner.invoke(app, ["audit", *map(str, args), "--format", "json", "--fail-on", "never"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def findings(runs_dir):
    return {name: audit_json(runs_dir / name) for name in EXPECTED}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_fixture_raises_exactly_the_expected_codes(findings, name):
    assert {f["code"] for f in findings[name]} == EXPECTED[name]


@pytest.mark.parametrize("name", CLEAN)
def test_clean_fixtures_report_nothing_at_warning_or_above(runs_dir, findings, name):
    assert all(f["severity"] == "info" for f in findings[name])
    result = runner.invoke(app, ["audit", str(runs_dir / name), "--fail-on", "warning"])
    assert result.exit_code == 0, result.output


def test_every_code_is_raised_by_some_fixture_or_test(findings):
    # NOTE: candidates-deleted needs a run pruned with --all: raised in tests/test_prune_history.py
    # (issue 20) the operating-point findings need an operating-point metric: raised in
    # tests/test_operating_point_stats.py
    operating = {"fragile-operating-point", "operating-point-paradox"}
    raised = {f["code"] for fs in findings.values() for f in fs} | {"val-set-changed", "candidates-deleted"} | operating
    # the slice findings need a run with groups: raised in tests/test_slices_training.py
    raised |= {"slice-regression", "small-slice"}
    raised |= {"logged-metric-mismatch"}  # real Lightning runs: tests/test_logged_metric_mismatch.py
    raised |= {"non-finite-outputs"}  # a diverged checkpoint: tests/test_live_audit.py
    assert raised == set(CODES)


def test_json_findings_have_the_documented_keys(findings):
    for fs in findings.values():
        for f in fs:
            assert set(f) == {"code", "severity", "run", "checkpoint", "message", "evidence"}
            assert f["severity"] in ("info", "warning", "error")


def test_accuracy_paradox_is_an_error_when_the_run_picks_by_accuracy(findings):
    f = next(f for f in findings["fraud"] if f["code"] == "accuracy-paradox")
    assert f["severity"] == "error" and f["checkpoint"] == "epoch-0011"
    ev = f["evidence"]
    assert ev["baseline_accuracy"] == pytest.approx(0.9556, abs=1e-4)
    assert ev["accuracy"] > ev["baseline_accuracy"] and ev["error_reduction"] < 0.5
    assert ev["recall"]["fraud"] < ev["accuracy"]


def test_accuracy_paradox_is_a_warning_when_selection_is_not_by_accuracy(copy_run):
    run = copy_run("fraud")
    data = json.loads((run / "run.json").read_text())
    data["selected_by"] = {"metric": "val_loss", "mode": "min"}
    (run / "run.json").write_text(json.dumps(data))
    f = next(f for f in audit_json(run) if f["code"] == "accuracy-paradox")
    assert f["severity"] == "warning"


def test_leaks_are_found_by_ids_and_by_input_hashes(findings):
    by_id = next(f for f in findings["leak-ids"] if f["code"] == "train-val-overlap")
    by_hash = next(f for f in findings["leak-hashes"] if f["code"] == "train-val-overlap")
    assert by_id["evidence"]["count"] == by_hash["evidence"]["count"] == 60
    assert by_id["evidence"]["matched_by"] == ["id"]
    assert by_hash["evidence"]["matched_by"] == ["input_hash"]
    assert by_id["evidence"]["fraction"] == pytest.approx(60 / 229, abs=1e-4)


def test_val_set_changed_is_an_error_finding(copy_run):
    run = copy_run("digits")
    path = run / "checkpoints" / "epoch-0006" / "val.npz"
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["target"] = np.roll(arrays["target"], 1)
    np.savez(path, **arrays)
    found = audit_json(run)
    f = next(f for f in found if f["code"] == "val-set-changed")
    assert f["severity"] == "error" and f["checkpoint"] == "epoch-0006"
    assert "winner-within-noise" not in {x["code"] for x in found}  # no comparisons on a changed set
    assert runner.invoke(app, ["audit", str(run)]).exit_code == 1


def test_exit_codes_follow_fail_on(runs_dir):
    assert runner.invoke(app, ["audit", str(runs_dir / "fraud")]).exit_code == 1
    assert runner.invoke(app, ["audit", str(runs_dir / "digits")]).exit_code == 0
    assert runner.invoke(app, ["audit", str(runs_dir / "digits"), "--fail-on", "info"]).exit_code == 1
    assert runner.invoke(app, ["audit", str(runs_dir / "fraud"), "--ignore", "accuracy-paradox"]).exit_code == 0


def test_select_and_ignore(runs_dir):
    only = audit_json(runs_dir / "fraud", "--select", "overfitting,accuracy-paradox")
    assert {f["code"] for f in only} == {"overfitting", "accuracy-paradox"}
    rest = audit_json(runs_dir / "fraud", "--ignore", "overfitting")
    assert "overfitting" not in {f["code"] for f in rest}
    bad = runner.invoke(app, ["audit", str(runs_dir / "fraud"), "--select", "overfit"])
    assert bad.exit_code == 2 and "unknown finding code overfit" in bad.stderr


def test_unreadable_input_exits_2(copy_run):
    run = copy_run("fraud")
    (run / "checkpoints" / "epoch-0004" / "val.npz").write_bytes(b"not a zip")
    result = runner.invoke(app, ["audit", str(run)])
    assert result.exit_code == 2 and "epoch-0004/val.npz" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "markdown", "github", "junit"])
def test_every_audit_format_renders(runs_dir, fmt):
    result = runner.invoke(app, ["audit", str(runs_dir / "fraud"), "--format", fmt, "--fail-on", "never"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    if fmt == "junit":
        # --fail-on never: nothing fails the command, so nothing is a junit failure
        root = ET.fromstring(out.split("\n", 1)[1])
        assert root.find("testsuite").get("failures") == "0" and len(root.findall("./testsuite/testcase")) == 3
    elif fmt == "github":
        assert out.startswith("::warning ") and "title=ERROR accuracy-paradox" in out and "::error" not in out
    elif fmt != "json":
        assert "accuracy-paradox" in out


@pytest.mark.parametrize("code", sorted(CODES))
def test_explain_covers_every_code(code):
    result = runner.invoke(app, ["explain", code])
    assert result.exit_code == 0
    for heading in ("What it means", "Why it matters", "Benign causes", "What to do"):
        assert heading in result.stdout


def test_explain_unknown_code_suggests():
    result = runner.invoke(app, ["explain", "paradox"])
    assert result.exit_code == 2 and "accuracy-paradox" in result.stderr


def test_library_audit_returns_dataclasses(runs_dir):
    report = audit_paths([runs_dir / "fraud"], AuditOptions(resamples=200))
    assert report.failed("error") and not report.failed("never")
    assert report.findings[0].code == "accuracy-paradox"


# ---------------------------------------------------------------- bootstrap


def _prep(runs_dir, run_name, ckpt_name):
    run = read_run(runs_dir / run_name)
    preds = read_predictions(run, run.checkpoint(ckpt_name))
    return metrics.prepare(run.task, run.output, preds.target, preds.output, run.positive_class)


@pytest.mark.parametrize("text", ["recall", "roc_auc", "log_loss"])
def test_identical_checkpoints_are_always_tied(runs_dir, text):
    a = _prep(runs_dir, "fraud", "epoch-0009")
    cmp = bootstrap.compare(parse_metric(text), a, a, resamples=200)
    assert cmp.diff == 0 and cmp.low == 0 and cmp.high == 0 and cmp.tied


@pytest.mark.parametrize("text", ["recall", "roc_auc"])
def test_a_clearly_better_checkpoint_is_not_tied(runs_dir, text):
    good = _prep(runs_dir, "fraud", "epoch-0009")
    bad = _prep(runs_dir, "fraud", "epoch-0002")
    cmp = bootstrap.compare(parse_metric(text), good, bad, resamples=300)
    assert cmp.diff > 0 and not cmp.tied
    # and the comparison is oriented: the other way round the difference is negative
    assert bootstrap.compare(parse_metric(text), bad, good, resamples=300).high < 0


def test_bootstrap_is_reproducible(runs_dir):
    a, b = _prep(runs_dir, "fraud", "epoch-0009"), _prep(runs_dir, "fraud", "epoch-0010")
    spec = parse_metric("f1")
    assert bootstrap.compare(spec, a, b, seed=3) == bootstrap.compare(spec, a, b, seed=3)


def test_bootstrap_coverage_on_a_known_answer():
    """Two classifiers with the same true accuracy are called different about 5% of the
    time; one that is 15 points better is found nearly always."""
    rng = np.random.default_rng(0)
    n, trials = 400, 200
    spec = parse_metric("accuracy")
    false_alarms = found = 0
    for t in range(trials):
        y = rng.integers(0, 2, n)
        same_a = np.where(rng.random(n) < 0.8, y, 1 - y)
        same_b = np.where(rng.random(n) < 0.8, y, 1 - y)
        better = np.where(rng.random(n) < 0.95, y, 1 - y)
        pa, pb, pc = (metrics.prepare("binary", "label", y, p) for p in (same_a, same_b, better))
        false_alarms += not bootstrap.compare(spec, pa, pb, resamples=300, seed=t).tied
        found += not bootstrap.compare(spec, pc, pa, resamples=300, seed=t).tied
    assert false_alarms / trials <= 0.10
    assert found / trials >= 0.95


def test_rank_ci_and_flags(runs_dir):
    result = runner.invoke(app, ["rank", str(runs_dir / "fraud"), "-m", "recall", "--ci", "--flags", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    for row in rows:
        low, high = row["ci95"]
        assert low <= row["recall"] <= high
    flagged = {r["checkpoint"]: r["flags"] for r in rows}
    assert "accuracy-paradox" in flagged["epoch-0011"]


def test_each_finding_is_one_rule_module_and_the_code_order_is_stable():
    import pkgutil

    import ckptaudit.findings as compat
    from ckptaudit.auditing import rules
    from ckptaudit.auditing.finding import Finding, explain

    modules = [m.name for m in pkgutil.iter_modules(rules.__path__) if not m.name.startswith("_")]
    assert sorted(modules) == sorted(code.replace("-", "_") for code in CODES)
    # the order is a contract: `explain`'s list and the sort of findings of one severity
    assert list(CODES) == [
        "accuracy-paradox",
        "train-val-overlap",
        "val-set-changed",
        "val-beats-train",
        "suspicious-perfect",
        "selected-by-train-metric",
        "overfitting",
        "best-is-last",
        "stopped-too-early",
        "winner-within-noise",
        "candidates-deleted",
        "small-val-set",
        "operating-point-paradox",  # issue 20: appended, the order above unchanged
        "fragile-operating-point",
        "logged-metric-mismatch",
        "non-finite-outputs",
        "slice-regression",
        "small-slice",
    ]
    assert [r.detect is None for r in rules.RULES].count(True) == 1  # val-set-changed: raised by the engine's read
    assert compat.CODES is CODES and compat.Finding is Finding and compat.explain is explain


@pytest.mark.parametrize(("metrics_given", "audited"), [(["accuracy", "recall"], "recall"), (["accuracy"], "recall")])
def test_the_audit_reads_its_metric_from_the_pass_where_the_pass_scores_it(runs_dir, metrics_given, audited):
    """The audit's per-checkpoint values are its own metric's, scored once: read from the
    pass where that metric is one of the pass's (at any place), scored by the audit where it
    is not; equal to scikit-learn either way."""
    from sklearn.metrics import recall_score

    from ckptaudit.verdict.build import Options, evaluate_paths

    options = Options(statistics=False, audit=True, audit_options=AuditOptions(metric=audited, noise=False))
    (verdict,) = evaluate_paths([runs_dir / "fraud"], metrics_given, options, jobs=1).verdicts
    run = read_run(runs_dir / "fraud")
    for st in verdict.audit.stats:
        preds = read_predictions(run, st.checkpoint)
        want = recall_score(preds.target, (preds.output.reshape(-1) > 0).astype(int))
        assert st.value == pytest.approx(want, abs=1e-12), st.checkpoint.name
