"""prune on object storage (a real moto server): dry run by default, the same plan as on disk,
journaled deletes that never leave the run prefix, kill -9 at any moment and recovery, faults."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from s3server import make_bucket, start_fault_proxy, upload_tree
from s3write_checks import assert_committed_whole, child_env, ckptaudit_cmd, client, etags, run_and_kill

pytest.importorskip("s3fs")

RUN = "fraud"
PRUNE = ("--metric", "auroc", "--keep", "3")


def _prune(endpoint: str, url: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ckptaudit_cmd("prune", url, *PRUNE, *args, "--format", "json"),
        env=child_env(endpoint, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(autouse=True)
def _fresh_s3_clients():
    """fsspec caches one S3FileSystem per set of options, not per environment."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    yield
    s3fs.S3FileSystem.clear_instance_cache()


def _dry(target: str, mode: str) -> dict:
    """The dry run's plan, in process (the CLI is exercised by the acting prunes)."""
    from ckptaudit.pruning import prune

    return prune([target], ["auroc"], keep=3, whole=mode == "all")[0].as_dict()


def _prepared(runs_dir: Path, tmp_path: Path) -> Path:
    """The fixture run with something referring to three checkpoints: a pin, a provenance file
    beside the checkpoints and one inside a checkpoint (prune must keep each)."""
    from ckptaudit.store.pins import add_pin

    run = tmp_path / "prepared" / RUN
    shutil.copytree(runs_dir / RUN, run)
    add_pin(run, "epoch-0003")
    (run / "exports").mkdir()
    (run / "exports" / "served.ckptaudit.json").write_text(json.dumps({"run": "s3://elsewhere/run", "checkpoint": "epoch-0005"}))
    (run / "checkpoints" / "epoch-0008" / "kept.ckptaudit.json").write_text(
        json.dumps({"run": "s3://elsewhere/run", "checkpoint": "epoch-0008"})
    )
    return run


def _seed(endpoint: str, runs_dir: Path, tmp_path: Path) -> str:
    """A bucket with the run at runs/run-a, a sibling prefix runs/run-ab (a copy) and keys
    beside them: what prune must never touch."""
    bucket = make_bucket(endpoint)
    prepared = tmp_path / "prepared" / RUN
    if not prepared.is_dir():
        _prepared(runs_dir, tmp_path)
    upload_tree(endpoint, prepared, f"s3://{bucket}/runs/run-a")
    upload_tree(endpoint, prepared, f"s3://{bucket}/runs/run-ab")
    c = client(endpoint)
    c.put_object(Bucket=bucket, Key="runs/run-a.txt", Body=b"beside the run")
    c.put_object(Bucket=bucket, Key="outside/model.pt", Body=b"not ours")
    return bucket


def _expected_after(before: dict[str, str], plan: dict, mode: str) -> set[str]:
    """The keys a prune of runs/run-a deletes, from the plan it printed."""
    doomed = {e["checkpoint"] for e in plan["entries"] if e["action"] in ("delete", "deleted")}
    gone = set()
    for key in before:
        parts = key.split("/")
        if key.startswith("runs/run-a/checkpoints/") and parts[3] in doomed:
            if mode == "all" or len(parts) > 5 or parts[4] not in ("meta.json", "val.npz", "train.npz"):
                gone.add(key)
    return gone


@pytest.mark.parametrize("mode", ["weights", "all"])
def test_prune_deletes_exactly_the_plan_and_nothing_outside_the_run(s3_env, runs_dir, mode, tmp_path):
    bucket = _seed(s3_env, runs_dir, tmp_path)
    url = f"s3://{bucket}/runs/run-a"
    extra = ("--all",) if mode == "all" else ()
    before = etags(s3_env, bucket)
    dry = _dry(url, mode)
    assert etags(s3_env, bucket) == before  # the dry run changes nothing
    # the same plan as the same run on disk (what is kept, and why)
    local = _dry(str(shutil.copytree(tmp_path / "prepared" / RUN, tmp_path / "local")), mode)
    rows = lambda plan: [(e["checkpoint"], e["action"], e["kept_by"]) for e in plan["entries"]]  # noqa: E731
    assert rows(dry) == rows(local)
    kept = {e[0]: e[2] for e in rows(dry)}
    assert "pinned" in kept["epoch-0003"] and "provenance:exports/served.ckptaudit.json" in kept["epoch-0005"]
    assert "provenance:checkpoints/epoch-0008/kept.ckptaudit.json" in kept["epoch-0008"] and "chosen" in kept["epoch-0011"]
    done = _prune(s3_env, url, *extra, "--yes")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)[0]
    gone = _expected_after(before, plan, mode)
    assert gone and len({k.split("/")[3] for k in gone}) == len(plan["deleted"]) == 13
    after = etags(s3_env, bucket)
    # the oracle: every key and ETag as before, less exactly the doomed keys, plus the pruned record
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert changed == gone | {"runs/run-a/ckptaudit-pruned.json"}
    record = json.loads(client(s3_env).get_object(Bucket=bucket, Key="runs/run-a/ckptaudit-pruned.json")["Body"].read())
    assert set(record["checkpoints"]) == set(plan["deleted"])
    assert {r["removed"] for r in record["checkpoints"].values()} == {mode}
    assert_committed_whole(s3_env, bucket, "runs/run-a")


def test_kill_during_prune_leaves_nothing_half_visible_and_the_next_prune_finishes(s3_env, runs_dir, tmp_path):
    rng = random.Random(25)
    # NOTE: --all only: the mode that un-commits checkpoints (the weights-only mode never deletes
    # meta.json or predictions; its journal and deletes are checked by the oracle test)
    for mode, extra in (("all", ("--all",)),):
        bucket = _seed(s3_env, runs_dir, tmp_path)
        url = f"s3://{bucket}/runs/run-a"
        plan = _dry(f"s3://{bucket}/runs/run-ab", mode)  # the same run, planned
        before = etags(s3_env, bucket)
        outside = {k: v for k, v in before.items() if not k.startswith("runs/run-a/")}
        code = run_and_kill(
            ckptaudit_cmd("prune", url, *PRUNE, *extra, "--yes"),
            child_env(s3_env, CKPTAUDIT_TEST_STEP_DELAY="0.1"),
            after=rng.uniform(0.05, 1.4),
            wait_for=(s3_env, bucket, "runs/run-a/.ckptaudit-prune-journal.json"),
        )
        assert code == -9
        assert_committed_whole(s3_env, bucket, "runs/run-a")
        assert {k: v for k, v in etags(s3_env, bucket).items() if not k.startswith("runs/run-a/")} == outside
        # the dry run names what is left; --resume finishes the journal, deleting nothing else
        dry = _dry(url, mode)
        assert any("interrupted prune" in e["note"] for e in dry["entries"]), dry
        resumed = subprocess.run(
            ckptaudit_cmd("prune", url, "--resume"), env=child_env(s3_env), capture_output=True, text=True, timeout=300
        )
        assert resumed.returncode == 0, resumed.stderr
        after = etags(s3_env, bucket)
        gone = _expected_after(before, plan, mode)
        assert {k for k in set(before) | set(after) if before.get(k) != after.get(k)} == gone | {
            "runs/run-a/ckptaudit-pruned.json"
        }


def test_a_journal_naming_keys_outside_the_run_is_refused(s3_env, runs_dir, tmp_path):
    import s3fs

    from ckptaudit.errors import UsageError
    from ckptaudit.pruning import resume

    s3fs.S3FileSystem.clear_instance_cache()  # a client for this test's server
    bucket = _seed(s3_env, runs_dir, tmp_path)
    url = f"s3://{bucket}/runs/run-a"
    before = etags(s3_env, bucket)
    bad = [
        ("all", "epoch-0001", ["../run-ab/checkpoints/epoch-0001/model.pt"]),
        ("all", "epoch-0001", ["checkpoints/epoch-0001/../../../run-ab/run.json"]),
        ("all", "epoch-0001", ["checkpoints/epoch-0002/model.pt"]),  # another checkpoint than the entry's
        ("weights", "epoch-0001", ["checkpoints/epoch-0001/meta.json"]),  # weights-only never un-commits
    ]
    for mode, name, keys in bad:
        journal = {"format": "ckptaudit-remote-prune/1", "mode": mode, "checkpoints": {name: keys}}
        client(s3_env).put_object(Bucket=bucket, Key="runs/run-a/.ckptaudit-prune-journal.json", Body=json.dumps(journal))
        with pytest.raises(UsageError, match="refusing"):
            resume([url])
    out = subprocess.run(ckptaudit_cmd("prune", url, "--resume"), env=child_env(s3_env), capture_output=True, text=True)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "refusing" in out.stderr, out.stderr
    after = etags(s3_env, bucket)
    del after["runs/run-a/.ckptaudit-prune-journal.json"]
    assert after == before


def test_prune_through_a_faulty_server(s3_server, runs_dir, tmp_path):
    bucket = _seed(s3_server.endpoint, runs_dir, tmp_path)
    before = etags(s3_server.endpoint, bucket)
    flaky = start_fault_proxy(s3_server.endpoint, fail_every=5)
    try:
        done = _prune(flaky.endpoint, f"s3://{bucket}/runs/run-a", "--all", "--yes")
        assert done.returncode == 0, done.stderr
    finally:
        flaky.stop()
    after = etags(s3_server.endpoint, bucket)
    gone = _expected_after(before, json.loads(done.stdout)[0], "all")
    assert {k for k in set(before) | set(after) if before.get(k) != after.get(k)} == gone | {"runs/run-a/ckptaudit-pruned.json"}
    dead = start_fault_proxy(s3_server.endpoint, fail_every=1)
    try:
        # bounded by the shared retry settings of store.remote (no AWS_MAX_ATTEMPTS needed)
        out = _prune(dead.endpoint, f"s3://{bucket}/runs/run-ab", "--all", "--yes")
    finally:
        dead.stop()
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert etags(s3_server.endpoint, bucket) == after


def test_trash_is_refused_for_urls_and_a_prefix_of_runs_is_planned_per_run(s3_env, runs_dir, tmp_path):
    from ckptaudit.errors import UsageError
    from ckptaudit.pruning import prune

    bucket = _seed(s3_env, runs_dir, tmp_path)
    plans = prune([f"s3://{bucket}/runs"], ["auroc"], keep=3)
    assert [p.run.name for p in plans] == [f"s3://{bucket}/runs/run-a", f"s3://{bucket}/runs/run-ab"]
    before = etags(s3_env, bucket)
    with pytest.raises(UsageError, match="--trash"):
        prune([f"s3://{bucket}/runs/run-a"], ["auroc"], keep=3, yes=True, trash_dir=tmp_path)
    assert etags(s3_env, bucket) == before


def test_the_plan_through_a_slow_flaky_server_is_the_plan(s3_server, tmp_path):
    """Every 5th request failing and 2 s of latency on each: the same plan, only slower."""
    import numpy as np
    import s3fs
    from s3server import patched_environ

    from ckptaudit.pruning import prune
    from ckptaudit.store.recorder import Recorder

    bucket = make_bucket(s3_server.endpoint)
    url = f"s3://{bucket}/runs/small"
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 40)

    def rows():
        s3fs.S3FileSystem.clear_instance_cache()  # a client for the server the environment names now
        return [(e.checkpoint, e.action, e.kept_by) for e in prune([url], ["auroc"], keep=1)[0].entries]

    with patched_environ(s3_server.env()):
        s3fs.S3FileSystem.clear_instance_cache()
        rec = Recorder(url, task="binary", output="logit", live_audit=False)
        for e in range(4):
            rec.save(e, {"w": np.ones(3) * e}, val_target=y, val_output=rng.normal(size=40) + y * e)
        direct = rows()
    proxy = start_fault_proxy(s3_server.endpoint, fail_every=5, latency=2.0)
    try:
        with patched_environ(proxy.env()):
            slow = rows()
    finally:
        proxy.stop()
        s3fs.S3FileSystem.clear_instance_cache()
    assert slow == direct and "delete" in [a for _, a, _ in direct]
