"""A sweep with broken runs: rank, audit, pick and check report each with its reason and
still serve the healthy runs, with the documented exit codes (README, "Sweeps")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm
from typer.testing import CliRunner

import ckptaudit
from ckptaudit.auditing import AuditOptions
from ckptaudit.audits import audit_paths
from ckptaudit.cli import app
from ckptaudit.picking import choose_report
from ckptaudit.ranking import rank_checkpoints
from ckptaudit.sweep import NothingLeftError

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "fixtures" / "runs"


def invoke(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Two healthy runs, one with folders under checkpoints/ that are not checkpoints, a
    run that crashed before its first save, a truncated run.json and a regression run."""
    root = tmp_path / "sweep"
    root.mkdir()
    shutil.copytree(RUNS / "fraud", root / "fraud")
    shutil.copytree(RUNS / "digits", root / "digits")
    # an HF checkpoint still being written and a TensorBoard folder: not checkpoints
    (root / "fraud" / "checkpoints" / "checkpoint-500").mkdir()
    (root / "fraud" / "checkpoints" / "checkpoint-500" / "model.safetensors").write_bytes(b"\0" * 64)
    (root / "fraud" / "checkpoints" / "tensorboard").mkdir()
    (root / "fraud" / "checkpoints" / "tensorboard" / "events.out.tfevents.1").write_bytes(b"\0" * 16)
    (root / "crashed").mkdir()
    shutil.copy(RUNS / "fraud" / "run.json", root / "crashed" / "run.json")
    shutil.copytree(RUNS / "tiny-val", root / "truncated")
    text = (root / "truncated" / "run.json").read_text()
    (root / "truncated" / "run.json").write_text(text[:25])
    shutil.copytree(RUNS / "friedman", root / "regression")
    return root


def stderr_lines(result, prefix: str) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith(prefix)]


def test_rank_ranks_the_healthy_runs_and_lists_each_broken_one_with_its_reason(sweep):
    result = invoke("rank", sweep, "-m", "recall", "--format", "json")
    assert result.exit_code == 2, result.output  # the truncated run.json is broken input
    rows = json.loads(result.stdout)
    ranked = [r for r in rows if r["rank"] is not None]
    assert {Path(r["run"]).name for r in ranked} == {"fraud", "digits"}
    assert len(ranked) == 20 + 12  # checkpoint-500 and tensorboard are not rows
    # the healthy runs rank exactly as they do alone, and the values are scikit-learn's
    alone = json.loads(invoke("rank", sweep / "fraud", "-m", "recall", "--format", "json").stdout)
    assert [(r["checkpoint"], r["recall"]) for r in ranked if r["run"].endswith("fraud")] == [
        (r["checkpoint"], r["recall"]) for r in alone
    ]
    best = ranked[0]
    with np.load(Path(best["run"]) / "checkpoints" / best["checkpoint"] / "val.npz") as z:
        pred = z["output"] > 0 if best["run"].endswith("fraud") else z["output"].argmax(axis=1)
        expected = skm.recall_score(z["target"], pred, average="binary" if best["run"].endswith("fraud") else "macro")
    assert best["recall"] == pytest.approx(expected, abs=1e-12)
    # one row per run left out, last, with the reason
    left_out = {Path(r["run"]).name: r["notes"][0] for r in rows if r["checkpoint"] is None}
    assert set(left_out) == {"crashed", "truncated", "regression"}
    assert "no checkpoints" in left_out["crashed"]
    assert "run.json" in left_out["truncated"] and "malformed JSON" in left_out["truncated"]
    assert "does not apply to regression runs" in left_out["regression"]
    assert all(r["rank"] is None for r in rows[len(ranked) :])
    errors, notes = stderr_lines(result, "ckptaudit: error:"), stderr_lines(result, "ckptaudit: skipped:")
    assert len(errors) == 1 and "truncated/run.json: malformed JSON" in errors[0]
    assert len(notes) == 4
    assert any("checkpoint-500: no meta.json" in n for n in notes) and any("tensorboard: no meta.json" in n for n in notes)
    assert "Traceback" not in result.output


def test_skipped_runs_exit_0_and_strict_turns_them_into_exit_2(sweep):
    shutil.rmtree(sweep / "truncated")
    result = invoke("rank", sweep, "-m", "recall")
    assert result.exit_code == 0, result.output
    assert len(stderr_lines(result, "ckptaudit: skipped:")) == 4 and not stderr_lines(result, "ckptaudit: error:")
    strict = invoke("rank", sweep, "-m", "recall", "--strict")
    assert strict.exit_code == 2 and strict.stdout == result.stdout  # the same results, then exit 2
    for verb in (["audit", sweep, "--resamples", "100"], ["pick", sweep, "-m", "recall", "--resamples", "100"]):
        assert invoke(*verb).exit_code in (0, 1)
        assert invoke(*verb, "--strict").exit_code == 2


def test_audit_audits_the_healthy_runs(sweep):
    result = invoke("audit", sweep, "-m", "recall", "--format", "json", "--resamples", "100")
    assert result.exit_code == 2, result.output
    findings = json.loads(result.stdout)
    assert {Path(f["run"]).name for f in findings} <= {"fraud", "digits"}
    assert any(Path(f["run"]).name == "fraud" for f in findings)
    errors = stderr_lines(result, "ckptaudit: error:")
    assert len(errors) == 1 and "malformed JSON" in errors[0]
    assert any("does not apply to regression runs" in n for n in stderr_lines(result, "ckptaudit: skipped:"))
    report = audit_paths([sweep], AuditOptions(resamples=100))
    assert {Path(ra.run.name).name for ra in report.runs} == {"fraud", "digits", "regression"}  # default metric per task
    by_run = {Path(s.run).name: s for s in report.skipped if s.checkpoint is None}
    assert set(by_run) == {"crashed", "truncated"} and by_run["truncated"].kind == "error"


def test_pick_picks_for_the_healthy_runs_and_places_nothing_while_input_is_broken(sweep, tmp_path):
    result = invoke("pick", sweep, "-m", "recall", "--format", "json", "--resamples", "100")
    assert result.exit_code == 2, result.output
    picks = json.loads(result.stdout)
    assert sorted(Path(p["run"]).name for p in picks) == ["digits", "fraud"]
    dest = tmp_path / "export" / "best"
    placed = invoke("pick", sweep, "-m", "recall", "--across", "--link", dest, "--resamples", "100")
    assert placed.exit_code == 2 and "nothing placed" in placed.stderr
    assert not dest.exists() and not dest.parent.exists() or not any(dest.parent.iterdir())
    shutil.rmtree(sweep / "truncated")
    placed = invoke("pick", sweep, "-m", "recall", "--across", "--link", dest, "--resamples", "100")
    assert placed.exit_code == 0, placed.output
    assert dest.is_symlink()
    report = choose_report([sweep], "recall", resamples=100, audit=False)
    assert {Path(s.run).name for s in report.skipped if s.checkpoint is None} == {"crashed", "regression"}


def test_check_notes_folders_that_are_not_checkpoints(sweep):
    result = invoke("check", sweep / "fraud", "-m", "recall", "--format", "json", "--resamples", "100")
    assert result.exit_code == 1, result.output  # the fraud run was chosen by accuracy: the gate fails as usual
    doc = json.loads(result.stdout)
    assert sorted(s["checkpoint"] for s in doc["skipped"]) == ["checkpoint-500", "tensorboard"]
    assert all(s["kind"] == "skipped" and "no meta.json" in s["reason"] for s in doc["skipped"])
    assert len(stderr_lines(result, "ckptaudit: skipped:")) == 2
    assert invoke("check", sweep / "fraud", "-m", "recall", "--resamples", "100", "--strict").exit_code == 2
    crashed = invoke("check", sweep / "crashed", "-m", "recall")
    assert crashed.exit_code == 2 and "no checkpoints" in crashed.stderr


def test_library_functions_return_what_was_left_out_as_data(sweep):
    ranking = rank_checkpoints([sweep], ["recall"])
    kinds = {(Path(s.run).name, s.checkpoint): s.kind for s in ranking.skipped}
    assert kinds == {
        ("fraud", "checkpoint-500"): "skipped",
        ("fraud", "tensorboard"): "skipped",
        ("crashed", None): "skipped",
        ("truncated", None): "error",
        ("regression", None): "skipped",
    }
    assert all(set(s.as_dict()) == {"run", "checkpoint", "path", "reason", "kind"} for s in ranking.skipped)
    assert len(ranking.problems) == 1
    df = ckptaudit.rank(sweep, "recall")
    assert df.attrs["skipped"] == [s.as_dict() for s in ranking.skipped] and len(df.attrs["problems"]) == 1
    assert df["checkpoint"].isna().sum() == 3 and df["rank"].iloc[0] == 1


def test_a_run_whose_validation_set_changed_is_left_out_of_a_sweep(sweep):
    shutil.rmtree(sweep / "truncated")
    path = sweep / "digits" / "checkpoints" / "epoch-0007" / "val.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["target"] = arrays["target"][::-1].copy()
    np.savez(path, **arrays)
    result = invoke("rank", sweep, "-m", "recall", "--format", "json")
    assert result.exit_code == 2
    rows = json.loads(result.stdout)
    assert {Path(r["run"]).name for r in rows if r["rank"] is not None} == {"fraud"}
    assert any("the validation set changed at epoch 7" in line for line in stderr_lines(result, "ckptaudit: error:"))


def test_nothing_left_is_an_error_with_every_reason(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(RUNS / "fraud" / "run.json", tmp_path / name / "run.json")
    result = invoke("rank", tmp_path, "-m", "recall")
    assert result.exit_code == 2 and result.stdout == ""
    errors = stderr_lines(result, "ckptaudit: error:")
    assert len(errors) == 3 and "none of the 2 runs could be used" in errors[-1]
    with pytest.raises(NothingLeftError):
        rank_checkpoints([tmp_path], ["recall"])
