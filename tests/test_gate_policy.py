"""The gate never passes what it did not check: nothing chosen, a checkpoint path, an
unscorable checkpoint, and nonsense policy values (on the shipped fixture runs)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ckptaudit.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def gate(*args) -> tuple[int, dict]:
    result = invoke("check", *args, "--format", "json", "--resamples", "200")
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def rules(doc: dict) -> dict[str, dict]:
    return {r["name"]: r for r in doc["rules"]}


def unchoose(run):
    raw = json.loads((run / "run.json").read_text())
    del raw["chosen"]
    (run / "run.json").write_text(json.dumps(raw))


# ---------------------------------------------------------------- nothing chosen


def test_a_gate_with_nothing_chosen_fails_with_the_reason(copy_run):
    run = copy_run("digits")  # passes every rule with its run.json 'chosen'
    assert gate(run, "-m", "val_loss")[0] == 0
    unchoose(run)
    code, doc = gate(run, "-m", "val_loss")
    best = rules(doc)["chosen-is-best"]
    assert code == 1 and not doc["passed"] and not best["passed"] and not best["skipped"]
    assert "no chosen checkpoint" in best["message"] and "--allow-unchosen" in best["message"]
    text = invoke("check", run, "-m", "val_loss")
    assert text.exit_code == 1 and "FAIL chosen-is-best: no chosen checkpoint" in text.stdout


def test_allow_unchosen_checks_the_run_alone(copy_run, tmp_path):
    run = copy_run("digits")
    unchoose(run)
    code, doc = gate(run, "-m", "val_loss", "--allow-unchosen")
    best = rules(doc)["chosen-is-best"]
    assert code == 0 and best["passed"] and best["skipped"] and doc["chosen"] is None
    cfg = tmp_path / "gate.toml"
    cfg.write_text('metric = "val_loss"\nallow_unchosen = true\n')
    assert gate(run, "--config", cfg)[0] == 0


# ---------------------------------------------------------------- a checkpoint path


@pytest.mark.parametrize("name", ["epoch-0011", "epoch-0009"])
def test_a_checkpoint_path_is_judged_within_its_whole_run(runs_dir, name):
    run = runs_dir / "fraud"
    _, as_path = gate(run / "checkpoints" / name, "-m", "recall")
    _, as_chosen = gate(run, "-m", "recall", "--chosen", name)
    assert as_path["chosen"] == name and as_path["run"] == as_chosen["run"]
    assert as_path["passed"] == as_chosen["passed"]
    assert [(r["name"], r["passed"], r["message"]) for r in as_path["rules"]] == [
        (r["name"], r["passed"], r["message"]) for r in as_chosen["rules"]
    ]
    if name == "epoch-0011":  # picked by accuracy: compared with the whole run, it fails
        assert not as_path["passed"] and rules(as_path)["chosen-is-best"]["details"]["best"] == "epoch-0009"


def test_a_checkpoint_path_with_another_chosen_is_a_usage_error(runs_dir):
    result = invoke("check", runs_dir / "fraud" / "checkpoints" / "epoch-0011", "-m", "recall", "--chosen", "epoch-0009")
    assert result.exit_code == 2 and "names checkpoint epoch-0011" in result.stderr


# ---------------------------------------------------------------- unscorable checkpoints


def test_an_unreadable_checkpoint_stops_the_gate_as_it_stops_rank(copy_run):
    run = copy_run("fraud")
    (run / "checkpoints" / "epoch-0005" / "val.npz").write_bytes(b"truncated")
    checked = invoke("check", run, "-m", "recall", "--chosen", "epoch-0009")
    ranked = invoke("rank", run, "-m", "recall")
    assert ranked.exit_code == 2 and checked.exit_code == 2
    assert "epoch-0005" in checked.stderr and "cannot be read" in checked.stderr
    assert len(checked.stderr.strip().splitlines()) == 1 and "Traceback" not in checked.output


def test_a_checkpoint_without_the_logged_metric_fails_chosen_is_best(copy_run):
    run = copy_run("digits")
    meta = run / "checkpoints" / "epoch-0003" / "meta.json"
    data = json.loads(meta.read_text())
    del data["logged"]["val_loss"]
    meta.write_text(json.dumps(data))
    code, doc = gate(run, "-m", "val_loss")
    best = rules(doc)["chosen-is-best"]
    assert code == 1 and not best["passed"] and "epoch-0003" in best["message"]
    assert "epoch-0003" in best["details"]["unscored"]


def test_a_diverged_checkpoint_is_named_not_silently_skipped(copy_run):
    import numpy as np

    run = copy_run("fraud")
    path = run / "checkpoints" / "epoch-0003" / "val.npz"
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["output"] = np.full_like(arrays["output"], np.nan)  # a diverged model's outputs
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    code, doc = gate(run, "-m", "recall", "--chosen", "epoch-0009")
    best = rules(doc)["chosen-is-best"]
    assert best["passed"] and "epoch-0003" in best["message"] and "non-finite" in best["details"]["unscored"]["epoch-0003"]


# ---------------------------------------------------------------- nonsense policy values


@pytest.mark.parametrize(
    "args,message",
    [
        (["--resamples", "0"], "--resamples must be an integer from 100 to 100,000"),
        (["--min-value", "nan"], "--min-value must be a finite number"),
        (["--max-value", "inf"], "--max-value must be a finite number"),
        (["--tolerance", "-0.1"], "--tolerance must be a number >= 0"),
        (["--tolerance", "nan"], "--tolerance must be a finite number"),
        (["--threshold", "1.5"], "--threshold must be a probability in [0, 1]"),
        (["--seed", "-1"], "--seed must be an integer >= 0"),
        (["--min-value", "0.9", "--max-value", "0.1"], "min_value 0.9 is above max_value 0.1"),
    ],
)
def test_nonsense_options_are_exit_2_with_one_line(runs_dir, args, message):
    result = invoke("check", runs_dir / "fraud", "-m", "recall", *args)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


@pytest.mark.parametrize("metric", ["fbeta:beta=nan", "fbeta:beta=0", "fbeta:beta=-2", "fbeta:beta=inf", "recall:threshold=nan"])
def test_nonsense_metric_options_are_exit_2(runs_dir, metric):
    result = invoke("check", runs_dir / "fraud", "-m", metric)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


@pytest.mark.parametrize(
    "content,message",
    [
        ("resamples = 0", "`resamples` must be an integer from 100 to 100,000"),
        ("min_value = nan", "`min_value` must be a finite number"),
        ("tolerance = -1", "`tolerance` must be a number >= 0"),
        ("threshold = -0.5", "`threshold` must be a probability in [0, 1]"),
        ('allow_unchosen = "yes"', "`allow_unchosen` must be true or false"),
        ("seed = -3", "`seed` must be an integer >= 0"),
        ('metric = ""', "`metric` must be a non-empty string"),
        ("min_value = 0.9\nmax_value = 0.5", "min_value 0.9 is above max_value 0.5"),
    ],
)
def test_nonsense_config_values_are_exit_2(runs_dir, tmp_path, content, message):
    cfg = tmp_path / "ckptaudit.toml"
    cfg.write_text(('metric = "recall"\n' if "metric" not in content else "") + content + "\n")
    result = invoke("check", runs_dir / "fraud", "--config", cfg)
    assert result.exit_code == 2 and message in result.stderr and str(cfg) in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_python_api_validates_too(runs_dir):
    import ckptaudit
    from ckptaudit.errors import ConfigError

    with pytest.raises(ConfigError, match="resamples"):
        ckptaudit.check(runs_dir / "fraud", "recall", resamples=0)


def test_an_unreadable_train_file_stops_the_gate_as_it_stops_audit(copy_run):
    run = copy_run("fraud")
    (run / "checkpoints" / "epoch-0004" / "train.npz").write_bytes(b"truncated")
    audited = invoke("audit", run)
    checked = invoke("check", run, "-m", "recall", "--chosen", "epoch-0009")
    assert audited.exit_code == 2 and checked.exit_code == 2
    assert "epoch-0004/train.npz" in checked.stderr and len(checked.stderr.strip().splitlines()) == 1


def test_a_config_that_is_a_fifo_is_refused_not_read(runs_dir, tmp_path):
    import os
    import subprocess
    import sys

    cfg = tmp_path / "ckptaudit.toml"
    os.mkfifo(cfg)
    done = subprocess.run(
        [sys.executable, "-m", "ckptaudit", "check", str(runs_dir / "fraud"), "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "not a regular file" in done.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--imbalance", "nan"], "--imbalance must be a number in [0, 1]"),
        (["--paradox-recall", "1.5"], "--paradox-recall must be a number in [0, 1]"),
        (["--margin", "-0.1"], "--margin must be a finite number >= 0"),
        (["--perfect", "inf"], "--perfect must be a number in [0, 1]"),
        (["--tie-fraction", "nan"], "--tie-fraction must be a number in [0, 1]"),
        (["--min-rows", "-1"], "--min-rows must be an integer >= 0"),
        (["--seed", "-1"], "--seed must be an integer >= 0"),
    ],
)
def test_nonsense_audit_thresholds_are_exit_2_with_one_line(runs_dir, args, message):
    result = invoke("audit", runs_dir / "fraud", *args)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1
