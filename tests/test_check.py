"""`ckptaudit check`: the CI gate, rule by rule, in every format, with config precedence."""

from __future__ import annotations

import json
import shutil
from xml.etree import ElementTree as ET

import pytest
from gate_cases import ONE_RULE_FAILURES  # noqa: E402  (tests/ is on sys.path under pytest)
from typer.testing import CliRunner

from ckptaudit.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def gate(*args) -> tuple[int, dict]:
    result = invoke("check", *args, "--format", "json", "--resamples", "200")
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def verdicts(doc: dict) -> dict[str, bool]:
    return {r["name"]: r["passed"] for r in doc["rules"]}


def test_fraud_chosen_by_accuracy_fails_a_recall_gate_naming_the_better_checkpoint(runs_dir):
    """epoch-0011 (recall 0.625) cannot be told apart from epoch-0009 (0.7125) on 80 fraud
    rows among 20 checkpoints, so chosen-is-best passes; --require-best requires the best and
    fails naming it. The gate fails either way on how the checkpoint was selected."""
    code, doc = gate(runs_dir / "fraud", "--metric", "recall")
    assert code == 1 and not doc["passed"]
    best = next(r for r in doc["rules"] if r["name"] == "chosen-is-best")
    assert best["passed"] and best["details"]["best"] == "epoch-0009" and doc["chosen"] == "epoch-0011"
    assert best["details"]["chosen_in_tied_best"] is True and "epoch-0011" in best["details"]["tied_best"]
    assert "cannot be told apart from the best" in best["message"]
    assert verdicts(doc)["selected-by-matches"] is False
    assert verdicts(doc)["no-audit-findings"] is False  # the accuracy paradox

    code, doc = gate(runs_dir / "fraud", "--metric", "recall", "--require-best")
    best = next(r for r in doc["rules"] if r["name"] == "chosen-is-best")
    assert code == 1 and not best["passed"] and "epoch-0009 should have been chosen" in best["message"]
    assert best["details"]["gap"] == pytest.approx(0.7125 - 0.625)
    assert "within the noise" not in best["message"]


def test_a_clearly_worse_chosen_fails_and_says_the_validation_set_tells_them_apart(runs_dir):
    code, doc = gate(runs_dir / "fraud", "--metric", "recall", "--chosen", "epoch-0004", "--fail-on", "never")
    best = next(r for r in doc["rules"] if r["name"] == "chosen-is-best")
    assert code == 1 and not best["passed"] and best["details"]["chosen_in_tied_best"] is False
    assert "tells them apart" in best["message"] and "within the noise" not in best["message"]


def test_the_right_checkpoint_passes(runs_dir):
    code, doc = gate(runs_dir / "fraud", "--metric", "recall", "--chosen", "epoch-0009")
    assert code == 0 and doc["passed"], doc


def test_a_clean_run_passes(runs_dir):
    code, doc = gate(runs_dir / "digits", "--metric", "val_loss")
    assert code == 0 and all(verdicts(doc).values())


@pytest.mark.parametrize(
    "run,args,failing",
    ONE_RULE_FAILURES,
)
def test_each_rule_fails_on_its_own(runs_dir, run, args, failing):
    code, doc = gate(runs_dir / run, *args)
    assert code == 1
    assert {name for name, ok in verdicts(doc).items() if not ok} == {failing}


def test_min_value_passes_and_fails_on_the_bound(runs_dir):
    _, doc = gate(runs_dir / "fraud", "--metric", "recall", "--chosen", "epoch-0009", "--min-value", "0.7")
    assert verdicts(doc)["min-value"]
    code, doc = gate(runs_dir / "fraud", "--metric", "recall", "--chosen", "epoch-0009", "--min-value", "0.9")
    assert code == 1 and not verdicts(doc)["min-value"]


def test_tolerance_accepts_a_near_best(runs_dir):
    # epoch-0010 recall 0.7000 vs best 0.7125 (--require-best: the confidence set does not count)
    _, doc = gate(runs_dir / "fraud", "--metric", "recall", "--chosen", "epoch-0010", "--require-best")
    assert not verdicts(doc)["chosen-is-best"]
    _, doc = gate(runs_dir / "fraud", "--metric", "recall", "--chosen", "epoch-0010", "--tolerance", "0.02", "--require-best")
    assert verdicts(doc)["chosen-is-best"]


def test_require_best_is_a_policy_key(runs_dir, tmp_path):
    config = tmp_path / "ckptaudit.toml"
    config.write_text('metric = "recall"\nrequire_best = true\n')
    _, doc = gate(runs_dir / "fraud", "--config", config, "--chosen", "epoch-0010")
    assert not verdicts(doc)["chosen-is-best"] and doc["rules"][0]["details"]["require_best"] is True
    config.write_text('metric = "recall"\nrequire_best = "yes"\n')
    result = invoke("check", runs_dir / "fraud", "--config", config)
    assert result.exit_code == 2 and "require_best" in result.stderr


def test_json_has_the_documented_keys(runs_dir):
    _, doc = gate(runs_dir / "fraud", "--metric", "recall")
    keys = {"run", "metric", "chosen", "chosen_how", "matches", "passed", "policy_source", "rules", "skipped"}
    assert set(doc) == keys | {"verdict"}
    assert [r["name"] for r in doc["rules"]] == [
        "chosen-is-best",
        "selected-by-matches",
        "min-value",
        "no-audit-findings",
        "churn",
    ]
    for rule in doc["rules"]:
        assert set(rule) == {"name", "passed", "skipped", "message", "details"}


@pytest.mark.parametrize("fmt", ["text", "json", "junit", "github", "markdown"])
def test_every_format(runs_dir, fmt):
    result = invoke("check", runs_dir / "fraud", "--metric", "recall", "--format", fmt, "--resamples", "200", "--require-best")
    assert result.exit_code == 1
    out = result.stdout
    if fmt == "junit":
        root = ET.fromstring(out.split("\n", 1)[1])
        cases = root.findall("./testsuite/testcase")
        assert [c.get("name") for c in cases] == [
            "chosen-is-best",
            "selected-by-matches",
            "min-value",
            "no-audit-findings",
            "churn",
        ]
        assert root.find("testsuite").get("failures") == "3"
        assert cases[0].find("failure") is not None and cases[2].find("failure") is None
    elif fmt == "github":
        lines = out.splitlines()
        assert sum(line.startswith("::error ") for line in lines) == 3
        assert any(line.startswith("::notice ") and "min-value" in line for line in lines)
    elif fmt == "text":
        assert out.splitlines()[0].startswith("FAIL chosen-is-best:") and "FAILED:" in out
    elif fmt == "markdown":
        assert out.startswith("### ckptaudit check: failed") and "| ❌ FAIL | chosen-is-best |" in out
    else:
        json.loads(out)


# ---------------------------------------------------------------- --chosen forms


def test_chosen_by_folder(runs_dir):
    _, doc = gate(runs_dir / "fraud", "-m", "recall", "--chosen", runs_dir / "fraud" / "checkpoints" / "epoch-0009")
    assert doc["chosen"] == "epoch-0009" and doc["chosen_how"] == "by folder"


def test_chosen_by_provenance_file(runs_dir, tmp_path):
    assert (
        invoke(
            "pick", runs_dir / "fraud", "-m", "recall", "--copy", tmp_path / "best", "--resamples", "200", "--no-pin"
        ).exit_code
        == 0
    )
    code, doc = gate(runs_dir / "fraud", "-m", "recall", "--chosen", tmp_path / "best.ckptaudit.json")
    assert code == 0 and doc["chosen"] == "epoch-0009" and doc["chosen_how"].startswith("provenance")
    rule = next(r for r in doc["rules"] if r["name"] == "selected-by-matches")
    assert rule["passed"] and rule["details"]["selected_by"] == "recall"
    # a provenance from a pick by accuracy fails a recall policy
    assert (
        invoke(
            "pick", runs_dir / "fraud", "-m", "accuracy", "--copy", tmp_path / "acc", "--resamples", "200", "--no-pin"
        ).exit_code
        == 0
    )
    code, doc = gate(runs_dir / "fraud", "-m", "recall", "--chosen", tmp_path / "acc.ckptaudit.json")
    assert code == 1 and not verdicts(doc)["selected-by-matches"]


def test_tampered_copy_does_not_verify(runs_dir, tmp_path):
    assert (
        invoke(
            "pick", runs_dir / "fraud", "-m", "recall", "--copy", tmp_path / "best", "--resamples", "200", "--no-pin"
        ).exit_code
        == 0
    )
    (tmp_path / "best" / "model.pt").write_bytes(b"tampered")
    result = invoke("check", runs_dir / "fraud", "-m", "recall", "--chosen", tmp_path / "best.ckptaudit.json")
    assert result.exit_code == 2 and "does not match its provenance hashes" in result.stderr


def test_chosen_by_copied_weights_file(runs_dir, tmp_path):
    shutil.copy(runs_dir / "fraud" / "checkpoints" / "epoch-0013" / "model.pt", tmp_path / "best_model.pth")
    _, doc = gate(runs_dir / "fraud", "-m", "recall", "--chosen", tmp_path / "best_model.pth")
    assert doc["chosen"] == "epoch-0013" and doc["chosen_how"] == "sha256 matches epoch-0013/model.pt"


def test_weights_matching_nothing_is_a_clear_error(runs_dir, tmp_path):
    (tmp_path / "other.pth").write_bytes(b"not from this run")
    result = invoke("check", runs_dir / "fraud", "-m", "recall", "--chosen", tmp_path / "other.pth")
    assert result.exit_code == 2 and "matches no weights file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_chosen_name(runs_dir):
    result = invoke("check", runs_dir / "fraud", "-m", "recall", "--chosen", "epoch-9999")
    assert result.exit_code == 2 and "neither a checkpoint of the run" in result.stderr


# ---------------------------------------------------------------- config


def test_config_file_sets_the_policy_and_options_override_it(runs_dir, tmp_path, monkeypatch):
    (tmp_path / "ckptaudit.toml").write_text('metric = "recall"\nmin_value = 0.9\nfail_on = "never"\n')
    sub = tmp_path / "deep" / "er"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)  # found from the working directory upward
    code, doc = gate(runs_dir / "fraud", "--chosen", "epoch-0009")
    assert doc["metric"] == "recall" and doc["policy_source"].endswith("ckptaudit.toml")
    assert code == 1 and not verdicts(doc)["min-value"]
    code, doc = gate(runs_dir / "fraud", "--chosen", "epoch-0009", "--min-value", "0.5")
    assert code == 0 and verdicts(doc)["min-value"]
    _, doc = gate(runs_dir / "fraud", "--chosen", "epoch-0009", "--metric", "accuracy")
    assert doc["metric"] == "accuracy"


def test_pyproject_table_and_explicit_config(runs_dir, tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.ckptaudit]\nmetric = "f1"\nthreshold = 0.3\n')
    monkeypatch.chdir(tmp_path)
    _, doc = gate(runs_dir / "fraud", "--chosen", "epoch-0009")
    assert doc["metric"] == "f1:threshold=0.3"
    other = tmp_path / "gate.toml"
    other.write_text('metric = "roc_auc"\n')
    _, doc = gate(runs_dir / "fraud", "--config", other)
    assert doc["metric"] == "roc_auc"


@pytest.mark.parametrize(
    "content,message",
    [
        ('metric = "recall"\nmin_valu = 0.9\n', "unknown key `min_valu`"),
        ('metric = "recall\n', "malformed TOML"),
        ('metric = "recall"\nfail_on = "sometimes"\n', "`fail_on` must be one of"),
        ('metric = "recall"\nfail_codes = ["leak"]\n', "unknown finding code leak"),
    ],
)
def test_malformed_config_is_exit_2(runs_dir, tmp_path, content, message):
    cfg = tmp_path / "ckptaudit.toml"
    cfg.write_text(content)
    result = invoke("check", runs_dir / "fraud", "--config", cfg)
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output


def test_missing_run_and_missing_metric_are_exit_2(runs_dir, tmp_path, monkeypatch):
    result = invoke("check", tmp_path / "no-run", "-m", "recall")
    assert result.exit_code == 2 and "no such file or folder" in result.stderr
    monkeypatch.chdir(tmp_path)
    result = invoke("check", runs_dir / "fraud")
    assert result.exit_code == 2 and "no metric" in result.stderr
    result = invoke("check", runs_dir, "-m", "val_loss")
    assert result.exit_code == 2 and "one run at a time" in result.stderr


def test_fail_codes_limit_what_fails_the_gate(runs_dir):
    code, doc = gate(runs_dir / "leak-ids", "-m", "val_loss", "--fail-code", "accuracy-paradox")
    assert code == 0 and verdicts(doc)["no-audit-findings"]
