"""`prune` keeps the union of its rules and loses nothing they keep; `pick` records why."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ckptaudit.cli import app
from ckptaudit.picking import weight_hashes
from ckptaudit.pruning import LOCK_FILE, TRASH_DIR, RunLock
from ckptaudit.store.reader import read_run

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def plan_json(*args) -> dict:
    result = invoke("prune", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)[0]


def tree_digest(root: Path) -> dict[str, str]:
    """Every file and link under root with a hash of its content (or link target)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


def checkpoint_names(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def values(runs_dir: Path, metric: str) -> list[tuple[float, int, str]]:
    rows = json.loads(invoke("rank", runs_dir / "fraud", "-m", metric, "--format", "json").stdout)
    return [(r[metric], r["epoch"], r["checkpoint"]) for r in rows]


def kept(plan: dict) -> dict[str, list[str]]:
    return {e["checkpoint"]: e["kept_by"] for e in plan["entries"] if e["action"] == "keep"}


def test_top_k_for_max_and_min_metrics_with_ties_to_the_earlier_epoch(runs_dir, copy_run):
    run = copy_run("fraud")
    plan = plan_json(run, "-m", "recall", "-m", "log_loss", "--keep", "4", "--keep-last", "0")
    by_recall = sorted(values(runs_dir, "recall"), key=lambda v: (-v[0], v[1]))[:4]
    by_loss = sorted(values(runs_dir, "log_loss"), key=lambda v: (v[0], v[1]))[:4]
    k = kept(plan)
    assert {n for n, why in k.items() if "top-4 recall" in why} == {v[2] for v in by_recall}
    assert {n for n, why in k.items() if "top-4 log_loss" in why} == {v[2] for v in by_loss}
    # the fraud run has a tie at the 4th place by recall (epochs 12 and 16): the earlier wins
    assert by_recall[3][0] == by_recall[3][0] and "top-4 recall" in k["epoch-0012"]
    assert "top-4 recall" not in k.get("epoch-0016", [])


def test_union_of_protection_rules_names_each_rule(copy_run):
    run = copy_run("fraud")
    # unscorable: a corrupt val.npz and NaN outputs
    (run / "checkpoints" / "epoch-0002" / "val.npz").write_bytes(b"corrupt")
    path = run / "checkpoints" / "epoch-0003" / "val.npz"
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["output"][0] = np.nan
    np.savez(path, **arrays)
    # a provenance file inside the run pointing at epoch-0006
    (run / "exported.ckptaudit.json").write_text(json.dumps({"run": str(run), "checkpoint": "epoch-0006"}))
    k = kept(plan_json(run, "-m", "recall", "--keep", "1", "--keep-last", "2", "--keep-every", "7"))
    assert k["epoch-0009"] == ["top-1 recall"]
    assert k["epoch-0019"] == ["last-2"] and "last-2" in k["epoch-0020"]
    assert k["epoch-0007"] == ["every-7"] and k["epoch-0014"] == ["every-7"]
    assert k["epoch-0011"] == ["chosen"]
    assert k["epoch-0006"] == ["provenance:exported.ckptaudit.json"]
    assert k["epoch-0002"] == ["unscorable"] and k["epoch-0003"] == ["unscorable"]
    assert len(k) == 9


def test_dry_run_leaves_the_tree_byte_identical(copy_run):
    run = copy_run("fraud")
    before = tree_digest(run)
    result = invoke("prune", run, "-m", "recall", "--keep", "2")
    assert result.exit_code == 0 and "dry run: nothing was deleted" in result.stdout
    assert "DELETE" in result.stdout and "would reclaim" in result.stdout
    assert tree_digest(run) == before


def test_yes_deletes_exactly_the_plan_and_journals_it(copy_run):
    run = copy_run("fraud")
    plan = plan_json(run, "-m", "recall", "--keep", "2")
    doomed = {e["checkpoint"] for e in plan["entries"] if e["action"] == "delete"}
    keep = {e["checkpoint"] for e in plan["entries"] if e["action"] == "keep"}
    kept_before = {n: tree_digest(run / "checkpoints" / n) for n in keep}
    result = invoke("prune", run, "-m", "recall", "--keep", "2", "--all", "--yes", "--format", "json")
    assert result.exit_code == 0, result.output
    assert set(checkpoint_names(run)) == keep
    assert {n: tree_digest(run / "checkpoints" / n) for n in keep} == kept_before
    log = [json.loads(line) for line in (run / "prune-log.jsonl").read_text().splitlines()]
    assert log[0]["action"] == "plan" and set(log[0]["delete"]) == doomed
    assert {r["checkpoint"] for r in log[1:]} == doomed
    assert not (run / LOCK_FILE).exists()


def _prune_subprocess(run: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ckptaudit", "prune", str(run), "-m", "recall", "--keep", "2", "--all", "--yes", *extra]
    return subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_prune_killed_midway_loses_nothing_and_the_next_one_finishes(copy_run):
    run = copy_run("fraud")
    plan = plan_json(run, "-m", "recall", "--keep", "2")
    keep = {e["checkpoint"] for e in plan["entries"] if e["action"] == "keep"}
    kept_before = {n: tree_digest(run / "checkpoints" / n) for n in keep}
    proc = _prune_subprocess(run, env={"CKPTAUDIT_TEST_CRASH_AFTER": "4"})
    proc.communicate(timeout=60)
    assert proc.returncode == 99  # died between a rename and its removal
    names = [n for n in checkpoint_names(run) if n != TRASH_DIR]
    trash = sorted(p.name for p in (run / "checkpoints" / TRASH_DIR).iterdir())
    assert len(trash) == 1
    for name in names:  # only whole checkpoints or trash entries
        assert (run / "checkpoints" / name / "meta.json").is_file()
    assert {n: tree_digest(run / "checkpoints" / n) for n in keep} == kept_before
    # the dry run shows the unfinished trash, and the next prune finishes it
    pending = [e for e in plan_json(run, "-m", "recall", "--keep", "2")["entries"] if e["action"] == "finish"]
    assert [e["checkpoint"] for e in pending] == trash
    result = invoke("prune", run, "-m", "recall", "--keep", "2", "--all", "--yes")
    assert result.exit_code == 0, result.output
    assert set(checkpoint_names(run)) == keep
    assert {n: tree_digest(run / "checkpoints" / n) for n in keep} == kept_before


def test_resume_only_finishes_trash(copy_run):
    run = copy_run("fraud")
    proc = _prune_subprocess(run, env={"CKPTAUDIT_TEST_CRASH_AFTER": "1"})
    proc.communicate(timeout=60)
    before = set(checkpoint_names(run))
    result = invoke("prune", run, "--resume")
    assert result.exit_code == 0, result.output
    assert set(checkpoint_names(run)) == before - {TRASH_DIR}


def test_a_symlink_to_outside_is_never_followed_and_its_target_untouched(copy_run, tmp_path):
    run = copy_run("fraud")
    outside = tmp_path / "outside"
    (outside / "ckpt").mkdir(parents=True)
    (outside / "ckpt" / "meta.json").write_text('{"epoch": 0, "logged": {"val_loss": 9.9}}')
    (outside / "precious.bin").write_bytes(b"do not delete")
    # a whole checkpoint that is a symlink to a folder outside the run
    os.symlink(outside / "ckpt", run / "checkpoints" / "epoch-0000")
    # and a file inside a doomed checkpoint that links outside
    os.symlink(outside / "precious.bin", run / "checkpoints" / "epoch-0001" / "weights.bin")
    before = tree_digest(outside)
    result = invoke("prune", run, "-m", "val_loss", "--keep", "1", "--yes", "--format", "json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)[0]
    # the link to outside the run is an alias, never a checkpoint: untouched, never followed
    alias = next(e for e in plan["entries"] if e["checkpoint"] == "epoch-0000")
    assert alias["action"] == "alias" and "never followed" in alias["note"]
    assert "epoch-0001" in plan["deleted"] and "epoch-0000" not in plan["deleted"]
    assert os.readlink(run / "checkpoints" / "epoch-0000") == str(outside / "ckpt")
    assert tree_digest(outside) == before


def test_two_concurrent_prunes_one_acts_one_refuses(copy_run):
    run = copy_run("fraud")
    first = _prune_subprocess(run, env={"CKPTAUDIT_TEST_PAUSE": "3"})
    deadline = time.time() + 20
    while not (run / LOCK_FILE).exists() and time.time() < deadline:
        time.sleep(0.05)
    second = _prune_subprocess(run)
    out2, err2 = second.communicate(timeout=60)
    out1, err1 = first.communicate(timeout=60)
    assert first.returncode == 0, err1
    assert second.returncode == 2 and "another prune holds this run's lock" in err2
    assert len(err2.strip().splitlines()) == 1


def test_a_held_lock_refuses_in_process(copy_run):
    run = copy_run("fraud")
    with RunLock(read_run(run)):
        result = invoke("prune", run, "-m", "recall", "--yes")
    assert result.exit_code == 2 and "another prune holds" in result.stderr


def test_refusals(copy_run):
    run = copy_run("fraud")
    result = invoke("prune", run, "--keep", "2")
    assert result.exit_code == 2 and "needs at least one --metric" in result.stderr
    meta = run / "checkpoints" / "epoch-0005" / "meta.json"
    data = json.loads(meta.read_text())
    del data["logged"]["val_loss"]
    meta.write_text(json.dumps(data))
    result = invoke("prune", run, "-m", "val_loss", "--yes")
    assert result.exit_code == 2 and "missing on epoch-0005" in result.stderr
    assert len(checkpoint_names(run)) == 20


def test_trash_dir_moves_instead_of_deleting(copy_run, tmp_path):
    run = copy_run("fraud")
    digest = tree_digest(run / "checkpoints" / "epoch-0001")
    result = invoke("prune", run, "-m", "recall", "--keep", "2", "--all", "--yes", "--trash", tmp_path / "bin")
    assert result.exit_code == 0, result.output
    assert tree_digest(tmp_path / "bin" / "fraud" / "epoch-0001") == digest


def test_in_progress_checkpoints_are_left_alone(copy_run):
    run = copy_run("fraud")
    (run / "checkpoints" / ".epoch-0021.abcd.tmp").mkdir()
    (run / "checkpoints" / "epoch-0022.tmp").mkdir()
    assert invoke("prune", run, "-m", "recall", "--keep", "1", "--yes").exit_code == 0
    assert {".epoch-0021.abcd.tmp", "epoch-0022.tmp"} <= set(checkpoint_names(run))


# ---------------------------------------------------------------- pick


def test_pick_copy_verifies_against_its_provenance(copy_run, tmp_path):
    run = copy_run("fraud")
    dest = tmp_path / "export" / "best"
    result = invoke("pick", run, "-m", "recall", "--copy", dest, "--resamples", "200")
    assert result.exit_code == 0, result.output
    prov = json.loads((tmp_path / "export" / "best.ckptaudit.json").read_text())
    assert prov["checkpoint"] == "epoch-0009" and prov["metric"] == "recall" and prov["value"] == pytest.approx(0.7125)
    assert prov["ci95"][0] <= prov["value"] <= prov["ci95"][1]
    assert prov["files"] == weight_hashes(dest) and "model.pt" in prov["files"]
    assert {f["code"] for f in prov["findings"]} >= {"accuracy-paradox"}
    assert all(f["severity"] in ("warning", "error") for f in prov["findings"])
    assert Path(prov["run"]) == run.resolve() and prov["ckptaudit"]


def test_pick_link_is_relative_and_refuses_to_overwrite(copy_run):
    run = copy_run("fraud")
    dest = run.parent / "best"
    assert invoke("pick", run, "-m", "recall", "--link", dest, "--resamples", "200").exit_code == 0
    assert not os.path.isabs(os.readlink(dest)) and (dest / "meta.json").is_file()
    again = invoke("pick", run, "-m", "recall", "--link", dest)
    assert again.exit_code == 2 and "already exists" in again.stderr


def test_pick_per_run_and_across_a_sweep(runs_dir):
    result = invoke("pick", runs_dir, "-m", "val_loss", "--format", "json", "--resamples", "200")
    assert result.exit_code == 0, result.output
    per_run = json.loads(result.stdout)
    assert len(per_run) == 10
    across = json.loads(
        invoke(
            "pick",
            runs_dir / "leak-ids",
            runs_dir / "fraud",
            "-m",
            "roc_auc",
            "--across",
            "--format",
            "json",
            "--resamples",
            "200",
        ).stdout
    )
    assert len(across) == 1 and across[0]["run"].endswith("leak-ids")


def test_prune_refuses_to_act_through_a_symlinked_run_or_checkpoints_folder(copy_run, tmp_path):
    run = copy_run("fraud")
    link = tmp_path / "linked-run"
    os.symlink(run, link)
    result = invoke("prune", link, "-m", "recall", "--yes")
    assert result.exit_code == 2 and "is a symbolic link" in result.stderr
    elsewhere = tmp_path / "elsewhere"
    (run / "checkpoints").rename(elsewhere)
    os.symlink(elsewhere, run / "checkpoints")
    before = tree_digest(elsewhere)
    result = invoke("prune", run, "-m", "recall", "--yes")
    assert result.exit_code == 2 and "is a symbolic link" in result.stderr
    assert tree_digest(elsewhere) == before


def test_a_lock_from_another_host_is_never_taken_over(copy_run):
    run = copy_run("fraud")
    (run / LOCK_FILE).write_text("some-other-host 999999")
    result = invoke("prune", run, "-m", "recall", "--yes")
    assert result.exit_code == 2 and "some-other-host 999999" in result.stderr
    assert len(checkpoint_names(run)) == 20
