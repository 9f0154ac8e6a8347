"""`ckptaudit rank` on the real fixture runs: ordering, formats, sweeps, and bad input."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm
from typer.testing import CliRunner

import ckptaudit
from ckptaudit.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def rank_json(*args: str) -> list[dict]:
    result = invoke("rank", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_line_error(result, *fragments: str) -> None:
    """Exit 2, no traceback, and an error line naming the problem."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("ckptaudit: error:")]
    assert errors, result.stderr
    for fragment in fragments:
        assert any(fragment in line for line in errors), (fragment, result.stderr)


def test_fraud_winner_differs_between_accuracy_and_recall(runs_dir):
    by_acc = rank_json(runs_dir / "fraud", "--metric", "accuracy")
    by_recall = rank_json(runs_dir / "fraud", "--metric", "recall")
    assert by_acc[0]["checkpoint"] != by_recall[0]["checkpoint"]
    # and the recall winner really has the highest recall, computed independently
    best = max(by_recall, key=lambda r: (r["recall"], -r["epoch"]))
    assert by_recall[0]["checkpoint"] == best["checkpoint"]
    npz = np.load(runs_dir / "fraud" / "checkpoints" / best["checkpoint"] / "val.npz")
    assert best["recall"] == pytest.approx(skm.recall_score(npz["target"], npz["output"] > 0), abs=1e-12)


def test_rows_are_ordered_best_first_with_ties_to_the_earlier_epoch(runs_dir):
    rows = rank_json(runs_dir / "fraud", "--metric", "recall")
    keys = [(-r["recall"], r["epoch"]) for r in rows]
    assert keys == sorted(keys)
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    # min metrics order ascending
    rows = rank_json(runs_dir / "fraud", "--metric", "log_loss")
    assert [r["log_loss"] for r in rows] == sorted(r["log_loss"] for r in rows)


def test_json_rows_have_the_documented_keys(runs_dir):
    rows = rank_json(runs_dir / "digits", "-m", "accuracy", "-m", "val_loss", "-m", "f1:average=micro")
    assert len(rows) == 12
    for row in rows:
        assert {"rank", "run", "checkpoint", "epoch", "accuracy", "val_loss", "f1:average=micro", "notes"} <= set(row)
        assert isinstance(row["accuracy"], float)
    # the logged metric is read from meta.json
    meta = json.loads((runs_dir / "digits" / "checkpoints" / rows[0]["checkpoint"] / "meta.json").read_text())
    assert rows[0]["val_loss"] == meta["logged"]["val_loss"]


def test_top_and_per_run_over_a_sweep(runs_dir):
    rows = rank_json(runs_dir, "--metric", "val_loss", "--per-run")
    runs = {r["run"] for r in rows}
    assert len(rows) == len(runs) == 10
    assert all(r["run"].startswith(str(runs_dir)) for r in rows)
    top = rank_json(runs_dir / "fraud", "-m", "recall", "--top", "3")
    assert len(top) == 3


def test_a_sweep_ranks_the_runs_the_metric_applies_to(runs_dir):
    result = invoke("rank", runs_dir, "--metric", "recall", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    left_out = [r for r in rows if r["checkpoint"] is None]
    assert {Path(r["run"]).name for r in left_out} == {"friedman", "overfit"}  # the regression runs
    assert all(r["rank"] is None and "does not apply to regression runs" in r["notes"][0] for r in left_out)
    assert rows[0]["rank"] == 1 and rows[0]["recall"] is not None
    assert "ckptaudit: skipped:" in result.stderr and "does not apply to regression runs" in result.stderr
    strict = invoke("rank", runs_dir, "--metric", "recall", "--strict")
    assert strict.exit_code == 2 and "epoch-0001" in strict.stdout
    one_line_error(invoke("rank", runs_dir / "friedman", "--metric", "recall"), "does not apply to regression runs")


def test_checkpoint_folder_ranks_just_that_checkpoint(runs_dir):
    rows = rank_json(runs_dir / "fraud" / "checkpoints" / "epoch-0003", "-m", "recall")
    assert [r["checkpoint"] for r in rows] == ["epoch-0003"]


@pytest.mark.parametrize("fmt", ["table", "csv", "markdown", "json"])
def test_every_format_renders_every_row(runs_dir, fmt):
    result = invoke("rank", runs_dir / "fraud", "-m", "recall", "-m", "accuracy", "--format", fmt)
    assert result.exit_code == 0, result.output
    out = result.stdout
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        assert len(rows) == 20 and "recall" in rows[0]
    elif fmt == "json":
        assert len(json.loads(out)) == 20
    else:
        assert out.count("epoch-00") == 20


def test_library_rank_returns_a_dataframe(runs_dir):
    df = ckptaudit.rank(runs_dir / "fraud", "recall")
    assert list(df["rank"][:3]) == [1, 2, 3]
    assert df.iloc[0]["checkpoint"] == rank_json(runs_dir / "fraud", "-m", "recall")[0]["checkpoint"]


def test_custom_metric_by_import_path(runs_dir, tmp_path, monkeypatch):
    (tmp_path / "mymetrics.py").write_text(
        "import numpy as np\ndef caught(y, p):\n    return float(((p > 0.5) & (y == 1)).sum())\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    rows = rank_json(runs_dir / "fraud", "-m", "mymetrics:caught:mode=max", "-m", "recall")
    assert rows[0]["recall"] == max(r["recall"] for r in rows)
    one_line_error(invoke("rank", runs_dir / "fraud", "-m", "mymetrics:caught"), "needs a direction")
    one_line_error(invoke("rank", runs_dir / "fraud", "-m", "nosuchmodule:f", "--mode", "max"), "cannot import")


# ---------------------------------------------------------------- bad input


def test_unknown_metric_suggests_the_closest(runs_dir):
    result = invoke("rank", runs_dir / "fraud", "--metric", "recal")
    one_line_error(result, "unknown metric 'recal'", "recall")
    one_line_error(invoke("rank", runs_dir / "fraud", "--metric", "val_los"), "val_loss")


def test_no_metric_is_a_usage_error(runs_dir):
    one_line_error(invoke("rank", runs_dir / "fraud"), "no metric given")


def test_logged_metric_direction_comes_from_its_base_name(runs_dir):
    rows = rank_json(runs_dir / "fraud", "-m", "val_accuracy")  # no --mode: accuracy is maximised
    assert rows[0]["val_accuracy"] == max(r["val_accuracy"] for r in rows)
    assert rank_json(runs_dir / "fraud", "-m", "val_accuracy", "--mode", "max") == rows


def test_missing_path_and_folder_without_runs(tmp_path):
    one_line_error(invoke("rank", tmp_path / "nope", "-m", "recall"), "no such file")
    one_line_error(invoke("rank", tmp_path, "-m", "recall"), "no run.json found")


def test_malformed_run_json(copy_run):
    run = copy_run("fraud")
    (run / "run.json").write_text('{"format": "ckptaudit/1", "task": ')
    one_line_error(invoke("rank", run, "-m", "recall"), "run.json", "malformed JSON")


def test_unknown_format_version(copy_run):
    run = copy_run("fraud")
    data = json.loads((run / "run.json").read_text())
    data["format"] = "ckptaudit/9"
    (run / "run.json").write_text(json.dumps(data))
    one_line_error(invoke("rank", run, "-m", "recall"), "unknown format 'ckptaudit/9'")


def test_empty_run(copy_run):
    run = copy_run("fraud")
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").mkdir()
    one_line_error(invoke("rank", run, "-m", "recall"), "the run has no checkpoints")


def test_meta_without_epoch(copy_run):
    run = copy_run("fraud")
    (run / "checkpoints" / "epoch-0004" / "meta.json").write_text('{"step": 3}')
    one_line_error(invoke("rank", run, "-m", "recall"), "meta.json", "'epoch' is required")


def _rewrite(npz_path: Path, **changes) -> None:
    with np.load(npz_path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays.update(changes)
    np.savez(npz_path, **arrays)


def test_missing_val_npz_is_listed_last_and_exits_2(copy_run):
    run = copy_run("fraud")
    (run / "checkpoints" / "epoch-0009" / "val.npz").unlink()
    result = invoke("rank", run, "-m", "recall", "--format", "json")
    one_line_error(result, "epoch-0009", "no val.npz")
    rows = json.loads(result.stdout)
    assert rows[-1]["checkpoint"] == "epoch-0009" and rows[-1]["recall"] is None and rows[-1]["rank"] is None
    assert "no val.npz" in rows[-1]["notes"][0]
    assert [r["rank"] for r in rows[:-1]] == list(range(1, 20))


def test_truncated_val_npz(copy_run):
    run = copy_run("fraud")
    path = run / "checkpoints" / "epoch-0005" / "val.npz"
    path.write_bytes(path.read_bytes()[:300])
    result = invoke("rank", run, "-m", "recall", "--format", "json")
    one_line_error(result, "epoch-0005/val.npz", "truncated or corrupt")
    assert json.loads(result.stdout)[-1]["checkpoint"] == "epoch-0005"


def test_length_mismatch(copy_run):
    run = copy_run("fraud")
    path = run / "checkpoints" / "epoch-0005" / "val.npz"
    with np.load(path) as npz:
        out = npz["output"][:-7]
    _rewrite(path, output=out)
    one_line_error(invoke("rank", run, "-m", "recall"), "epoch-0005/val.npz", "'target' has 1800 rows but 'output' has 1793")


def test_shape_mismatch(copy_run):
    run = copy_run("digits")
    path = run / "checkpoints" / "epoch-0005" / "val.npz"
    with np.load(path) as npz:
        out = npz["output"][:, :7]
    _rewrite(path, output=out)
    one_line_error(invoke("rank", run, "-m", "accuracy"), "epoch-0005/val.npz", "7 columns but run.json names 10")


def test_validation_set_changed_between_checkpoints(copy_run):
    run = copy_run("fraud")
    path = run / "checkpoints" / "epoch-0007" / "val.npz"
    with np.load(path) as npz:
        target = npz["target"].copy()
    target[:5] = 1 - target[:5]
    _rewrite(path, target=target)
    one_line_error(invoke("rank", run, "-m", "recall"), "the validation set changed at epoch 7", "5 of 1800 targets")


def test_validation_ids_changed_between_checkpoints(copy_run):
    run = copy_run("fraud")
    path = run / "checkpoints" / "epoch-0012" / "val.npz"
    with np.load(path) as npz:
        ids = npz["id"][::-1].copy()
    _rewrite(path, id=ids)
    one_line_error(invoke("rank", run, "-m", "recall"), "the validation set changed at epoch 12", "sample ids differ")


def test_nan_outputs_rank_last_with_a_note_and_exit_0(copy_run):
    run = copy_run("fraud")
    path = run / "checkpoints" / "epoch-0009" / "val.npz"
    with np.load(path) as npz:
        out = npz["output"].copy()
    out[3] = np.nan
    out[4] = np.inf
    _rewrite(path, output=out)
    result = invoke("rank", run, "-m", "recall", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[-1]["checkpoint"] == "epoch-0009" and rows[-1]["recall"] is None
    assert "2 non-finite outputs" in rows[-1]["notes"][0]


def test_in_progress_checkpoints_are_ignored(copy_run):
    run = copy_run("fraud")
    shutil.copytree(run / "checkpoints" / "epoch-0001", run / "checkpoints" / ".epoch-0099.tmp")
    shutil.copytree(run / "checkpoints" / "epoch-0001", run / "checkpoints" / "epoch-0100.tmp")
    rows = rank_json(run, "-m", "recall")
    assert len(rows) == 20


def test_bad_metric_options_are_one_line_errors(runs_dir):
    one_line_error(invoke("rank", runs_dir / "fraud", "-m", "recall:class=cat"), "no class named 'cat'", "legit, fraud")
    one_line_error(invoke("rank", runs_dir / "fraud", "-m", "recall:average=mean"), "average must be one of")
    one_line_error(invoke("rank", runs_dir / "fraud", "-m", "recall:thresh=0.3"), "has no option thresh")
    one_line_error(invoke("rank", runs_dir / "fraud", "-m", "mse"), "does not apply to binary runs")
    one_line_error(invoke("rank", runs_dir / "digits", "-m", "recall:threshold=0.3"), "threshold applies to binary")
