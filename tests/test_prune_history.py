"""Pruning never rewrites history (issue 17, point 3).

By default ``prune`` deletes a doomed checkpoint's weights only and keeps its predictions
and meta.json, so every statistic of the run (the tie set, each interval, the winner's
expected score on new data and its optimism) is the same before and after; ``--all``
deletes folders, records what they scored, and says that the statistics change. Each case
keeps the tree-hash oracle: after the prune the tree is the tree before minus exactly the
weights (or folders) of the doomed checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from ckptaudit.cli import app
from ckptaudit.pruning import LOG_FILE
from ckptaudit.store.pruned import PRUNED_FILE, read_pruned

runner = CliRunner()
KEPT_OF_DOOMED = {"meta.json", "val.npz", "train.npz"}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def as_json(*args):
    result = invoke(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def digest(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def tied_run(path: Path, n_ckpt: int = 40, n_tied: int = 28, rows: int = 300, seed: int = 3) -> Path:
    """A binary run of ``n_ckpt`` checkpoints, ``n_tied`` of them with the very same
    predictions (tied under any metric), the rest clearly worse; each has a weights file."""
    rng = np.random.default_rng(seed)
    target = (rng.random(rows) < 0.3).astype(np.int64)
    good = np.where(target == 1, rng.uniform(0.35, 1.0, rows), rng.uniform(0.0, 0.65, rows))
    (path / "checkpoints").mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"format": "ckptaudit/1", "task": "binary", "output": "probability"}))
    worse = [i for i in range(n_ckpt) if i % 10 in (1, 4, 7)][: n_ckpt - n_tied]
    for epoch in range(n_ckpt):
        ckpt = path / "checkpoints" / f"epoch-{epoch:04d}"
        ckpt.mkdir()
        (ckpt / "meta.json").write_text(json.dumps({"epoch": epoch, "logged": {"val_loss": 1.0 / (epoch + 1)}}))
        if epoch in worse:
            out = np.clip(good + rng.normal(0, 0.35, rows), 0, 1)
        else:
            out = good.copy()
        np.savez(ckpt / "val.npz", target=target, output=out)
        (ckpt / "model.pt").write_bytes(rng.bytes(4096))
        (ckpt / "optimizer.pt").write_bytes(rng.bytes(8192))
    return path


def statistics(run: Path, metric: str) -> tuple[dict, dict]:
    """`rank --ci` and `pick` as JSON, without the time stamp."""
    ranked = as_json("rank", run, "-m", metric, "--ci")
    picked = as_json("pick", run, "-m", metric)
    for item in picked if isinstance(picked, list) else [picked]:
        item.pop("time", None)
    return ranked, picked


def test_default_prune_keeps_every_statistic_and_deletes_only_weights(tmp_path):
    run = tied_run(tmp_path / "tied")
    before_stats = statistics(run, "balanced_accuracy")
    before = digest(run)
    dry = as_json("prune", run, "-m", "balanced_accuracy", "--keep", "2")[0]
    doomed = {e["checkpoint"] for e in dry["entries"] if e["action"] == "delete"}
    assert len(doomed) == 37  # top-2, last-1 kept
    done = as_json("prune", run, "-m", "balanced_accuracy", "--keep", "2", "--yes")[0]
    assert set(done["deleted"]) == doomed and done["mode"] == "weights"
    # the oracle: exactly the weights of the doomed checkpoints are gone, every other byte stays
    gone = {f"checkpoints/{n}/{f}" for n in doomed for f in ("model.pt", "optimizer.pt")}
    after = {k: v for k, v in digest(run).items() if k not in (LOG_FILE, PRUNED_FILE)}
    assert after == {k: v for k, v in before.items() if k not in gone}
    assert done["reclaimed_bytes"] == 37 * (4096 + 8192)
    # every statistic of every checkpoint, the tie set and the winner's optimism are unchanged
    assert statistics(run, "balanced_accuracy") == before_stats
    ranked, picked = before_stats
    assert picked[0]["tied_best"]["count"] >= 20  # the run really is mostly tied
    records = read_pruned(run)
    assert set(records) == doomed and {r.removed for r in records.values()} == {"weights"}
    # a second default prune has nothing left to delete and changes nothing
    again = as_json("prune", run, "-m", "balanced_accuracy", "--keep", "2", "--yes")[0]
    assert again["deleted"] == [] and again["reclaimed_bytes"] == 0
    assert statistics(run, "balanced_accuracy") == before_stats


def test_all_deletes_folders_records_scores_and_says_the_statistics_change(tmp_path):
    run = tied_run(tmp_path / "tied")
    _, picked = statistics(run, "balanced_accuracy")
    before = digest(run)
    result = invoke("prune", run, "-m", "balanced_accuracy", "--keep", "2", "--all", "--yes")
    assert result.exit_code == 0, result.output
    assert "CHANGE" in result.stdout and PRUNED_FILE in result.stdout
    records = read_pruned(run)
    doomed = set(records)
    assert len(doomed) == 37 and {r.removed for r in records.values()} == {"all"}
    assert all(r.scores["balanced_accuracy"] is not None for r in records.values())
    after = {k: v for k, v in digest(run).items() if k not in (LOG_FILE, PRUNED_FILE)}
    assert after == {
        k: v for k, v in before.items() if not any(k == f"checkpoints/{n}" or k.startswith(f"checkpoints/{n}/") for n in doomed)
    }
    # the statistics did change, and the audit says so
    _, now = statistics(run, "balanced_accuracy")
    assert now[0]["tied_best"]["count"] < picked[0]["tied_best"]["count"]
    audit = as_json("audit", run, "-m", "balanced_accuracy")
    codes = {f["code"] for f in (audit["findings"] if isinstance(audit, dict) else audit)}
    assert "candidates-deleted" in codes


def test_dry_run_shows_both_sizes_and_hard_links_free_nothing(tmp_path):
    run = tied_run(tmp_path / "tied", n_ckpt=6, n_tied=3)
    # epoch-0001's weights are hard links of the kept last checkpoint's: deleting them frees nothing
    ckpts = run / "checkpoints"
    for name in ("model.pt", "optimizer.pt"):
        os.unlink(ckpts / "epoch-0001" / name)
        os.link(ckpts / "epoch-0005" / name, ckpts / "epoch-0001" / name)
    result = invoke("prune", run, "-m", "balanced_accuracy", "--keep", "1", "--format", "json")
    plan = json.loads(result.stdout)[0]
    entries = {e["checkpoint"]: e for e in plan["entries"]}
    doomed = [n for n, e in entries.items() if e["action"] == "delete"]
    assert "epoch-0001" in doomed and entries["epoch-0001"]["size"] == 0
    weights = (4096 + 8192) * (len(doomed) - 1)
    assert plan["reclaimed_bytes"] == weights == plan["reclaimable_bytes"]["weights"]
    preds = sum((ckpts / n / f).stat().st_size for n in doomed for f in ("meta.json", "val.npz"))
    assert plan["reclaimable_bytes"]["all"] == weights + preds
    table = invoke("prune", run, "-m", "balanced_accuracy", "--keep", "1")
    assert "weights only (the default) frees" in table.stdout and "--all (whole folders) frees" in table.stdout


def test_pick_and_check_refuse_a_checkpoint_whose_weights_prune_deleted(tmp_path):
    run = tied_run(tmp_path / "tied", n_ckpt=8, n_tied=4)
    # keep the top-1 by val_loss (the last epoch): the balanced-accuracy winner loses its weights
    as_json("prune", run, "-m", "val_loss", "--keep", "1", "--yes")
    winner = as_json("pick", run, "-m", "balanced_accuracy")[0]["checkpoint"]
    assert not (run / "checkpoints" / winner / "model.pt").exists()
    placed = invoke("pick", run, "-m", "balanced_accuracy", "--link", tmp_path / "export")
    assert placed.exit_code == 2 and "deleted by `ckptaudit prune`" in placed.stderr
    assert not os.path.lexists(tmp_path / "export")
    checked = invoke("check", run, "-m", "balanced_accuracy", "--chosen", winner)
    assert checked.exit_code == 2 and "deleted by `ckptaudit prune`" in checked.stderr


def test_a_record_whose_weights_are_still_there_does_not_block_pick(tmp_path):
    # a prune killed after recording its intent but before moving anything
    run = tied_run(tmp_path / "tied", n_ckpt=4, n_tied=2)
    winner = as_json("pick", run, "-m", "balanced_accuracy")[0]["checkpoint"]
    record = {"format": "ckptaudit-pruned/1", "checkpoints": {winner: {"removed": "weights", "epoch": 0}}}
    (run / PRUNED_FILE).write_text(json.dumps(record))
    placed = invoke("pick", run, "-m", "balanced_accuracy", "--link", tmp_path / "export")
    assert placed.exit_code == 0, placed.output
    assert (tmp_path / "export" / "model.pt").is_file()


def test_a_killed_prunes_half_written_record_is_cleared_by_the_next_prune(tmp_path):
    """A prune --all killed while writing ckptaudit-pruned.json leaves its temporary in the
    run (seen in the kill -9 campaign); the next prune, under the same lock, removes exactly
    such files: not another file, not a link of that name."""
    run = tied_run(tmp_path / "run", n_ckpt=6, n_tied=3)
    stale = run / f".{PRUNED_FILE}.0123456789ab.tmp"
    stale.write_text('{"half": ')
    other = run / f".{PRUNED_FILE}.tmp"  # not the writer's name: someone else's
    other.write_text("keep")
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    link = run / f".{PRUNED_FILE}.ba9876543210.tmp"
    link.symlink_to(outside)
    result = invoke("prune", run, "--keep", "2", "-m", "balanced_accuracy", "--yes")
    assert result.exit_code == 0, result.output
    assert not stale.exists()
    assert other.read_text() == "keep" and link.is_symlink() and outside.read_text() == "keep"
