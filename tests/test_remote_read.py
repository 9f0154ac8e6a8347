"""Runs on object storage, the read side (issue 25 §1): every verb that reads runs takes a URL
and prints what it prints for the same run on disk, byte for byte, but for the location.

The S3 server is moto's server mode in a child process (tests/s3server.py), reached through
the usual AWS_* variables; a fault-injecting proxy process stands in front of it for the
failure tests. The local run is copied to a folder whose name is as long as the URL, so that
even the padded tables are identical once the one location string is swapped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from s3server import make_bucket, patched_environ, start_fault_proxy, upload_tree
from typer.testing import CliRunner

from ckptaudit.cli import app

pytest.importorskip("s3fs")

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "fixtures" / "runs"
runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def twin(tmp_path: Path, monkeypatch, fixture: str, url: str) -> str:
    """A local copy of ``fixture`` at a relative path as long as ``url`` (cwd: tmp_path)."""
    monkeypatch.chdir(tmp_path)
    name = "L" * len(url)
    shutil.copytree(RUNS / fixture, tmp_path / name)
    return name


def untimed(text: str) -> str:
    return re.sub(r'"time": "[^"]*"', '"time": "T"', text)


def same(local: str, url: str, args: list[str]) -> str:
    """Run a verb on the local run and on the URL; assert equal exit codes and output."""
    a = invoke(*args, local)
    b = invoke(*args, url)
    assert a.exit_code == b.exit_code, (a.output, b.output)
    # NOTE: pick's JSON names the run folder resolved (absolute) on disk, where the URL is
    # already absolute, and the time of the pick (which may tick between the two commands)
    full = os.path.abspath(local)
    assert untimed(b.stdout.replace(url, "LOC")) == untimed(a.stdout.replace(full, "LOC").replace(local, "LOC"))
    assert b.stderr.replace(url, "LOC") == a.stderr.replace(full, "LOC").replace(local, "LOC")
    assert "ckptaudit-remote-" not in b.stdout + b.stderr
    return b.stdout


@pytest.fixture
def fraud_url(s3_env) -> str:
    bucket = make_bucket(s3_env)
    url = f"s3://{bucket}/fraud"
    upload_tree(s3_env, RUNS / "fraud", url)
    return url


def test_verbs_on_s3_equal_the_run_on_disk(fraud_url, tmp_path, monkeypatch):
    local = twin(tmp_path, monkeypatch, "fraud", fraud_url)
    ranked = same(local, fraud_url, ["rank", "-m", "recall", "-m", "precision", "-f", "json"])
    assert json.loads(ranked)[0]["run"] == fraud_url
    same(local, fraud_url, ["rank", "-m", "recall"])
    same(local, fraud_url, ["pick", "-m", "recall", "--resamples", "100"])
    same(local, fraud_url, ["check", "-m", "recall", "--resamples", "100", "-f", "json"])
    same(local, fraud_url, ["audit", "-f", "json"])
    for suffix in ("json", "html"):
        a, b = tmp_path / f"a.{suffix}", tmp_path / f"b.{suffix}"
        ra = invoke("report", "-m", "recall", "--resamples", "100", "-o", a, local)
        rb = invoke("report", "-m", "recall", "--resamples", "100", "-o", b, fraud_url)
        assert ra.exit_code == rb.exit_code == 0, (ra.output, rb.output)
        text = b.read_text(encoding="utf-8")
        assert "ckptaudit-remote-" not in text and fraud_url in text
        assert text.replace(fraud_url, "LOC") == a.read_text(encoding="utf-8").replace(local, "LOC")


def test_multiclass_run_and_checkpoint_folder_urls(s3_env, tmp_path, monkeypatch):
    url = f"s3://{make_bucket(s3_env)}/digits"
    upload_tree(s3_env, RUNS / "digits", url)
    local = twin(tmp_path, monkeypatch, "digits", url)
    same(local, url, ["rank", "-m", "accuracy", "-m", "f1:average=macro", "-f", "json"])
    same(local, url, ["check", "-m", "accuracy", "--resamples", "100"])
    # one checkpoint folder of the run, as a URL: judged within its whole run, as on disk
    a = invoke("check", "-m", "accuracy", "--resamples", "100", f"{local}/checkpoints/epoch-0003")
    b = invoke("check", "-m", "accuracy", "--resamples", "100", f"{url}/checkpoints/epoch-0003")
    assert a.exit_code == b.exit_code and b.stdout.replace(url, "LOC") == a.stdout.replace(local, "LOC")


def test_sweep_with_a_broken_run_and_a_checkpoint_in_progress(s3_env, tmp_path, monkeypatch):
    bucket = make_bucket(s3_env)
    url = f"s3://{bucket}/sweep"
    monkeypatch.chdir(tmp_path)
    local = "L" * len(url)
    for name in ("fraud", "overfit"):
        shutil.copytree(RUNS / name, tmp_path / local / name)
    (tmp_path / local / "broken" / "checkpoints" / "epoch-0001").mkdir(parents=True)
    (tmp_path / local / "broken" / "run.json").write_text("{not json", encoding="utf-8")
    (tmp_path / local / "broken" / "checkpoints" / "epoch-0001" / "meta.json").write_text('{"epoch": 1}', encoding="utf-8")
    upload_tree(s3_env, tmp_path / local, url)
    # a writer's checkpoint not yet committed (no meta.json): skipped on S3, as an empty folder on disk
    upload_tree(s3_env, RUNS / "fraud" / "checkpoints" / "epoch-0001", f"{url}/fraud/checkpoints/epoch-0099")
    import boto3

    boto3.client("s3", endpoint_url=s3_env).delete_object(Bucket=bucket, Key="sweep/fraud/checkpoints/epoch-0099/meta.json")
    (tmp_path / local / "fraud" / "checkpoints" / "epoch-0099").mkdir()
    out = same(local, url, ["rank", "-m", "accuracy", "-f", "json", "--per-run"])
    assert {f"{url}/fraud", f"{url}/overfit"} <= {row["run"] for row in json.loads(out)}
    b = invoke("rank", "-m", "accuracy", url)
    assert b.exit_code == 2 and f"{url}/broken/run.json" in b.stderr and "epoch-0099" in b.stderr


def test_every_fifth_request_failing_gives_the_same_result(s3_server, tmp_path, monkeypatch):
    proxy = start_fault_proxy(s3_server.endpoint, fail_every=5)
    try:
        for key, value in proxy.env().items():
            monkeypatch.setenv(key, value)
        url = f"s3://{make_bucket(s3_server.endpoint)}/fraud"
        upload_tree(s3_server.endpoint, RUNS / "fraud", url)
        local = twin(tmp_path, monkeypatch, "fraud", url)
        same(local, url, ["rank", "-m", "recall", "-f", "json"])
        # objects above the batch size stream to disk one by one: the same result
        from ckptaudit.store import remotelist

        monkeypatch.setattr(remotelist, "BATCH_BYTES", 4096)
        same(local, url, ["rank", "-m", "recall", "-f", "json"])
        assert proxy.stats()["requests"] >= 5  # the faults were met (and retried)
    finally:
        proxy.stop()


def test_a_slow_server_still_gives_the_result(s3_server, tmp_path, monkeypatch):
    url = f"s3://{make_bucket(s3_server.endpoint)}/tiny"
    upload_tree(s3_server.endpoint, RUNS / "tiny-val", url)
    proxy = start_fault_proxy(s3_server.endpoint, latency=2.0)
    try:
        for key, value in proxy.env().items():
            monkeypatch.setenv(key, value)
        local = twin(tmp_path, monkeypatch, "tiny-val", url)
        start = time.monotonic()
        same(local, url, ["rank", "-m", "accuracy", "-f", "json"])
        assert time.monotonic() - start < 30  # listing, then every object fetched concurrently
    finally:
        proxy.stop()


def test_a_server_failing_every_request_ends_in_one_line(s3_server, tmp_path):
    proxy = start_fault_proxy(s3_server.endpoint, fail_every=1)
    try:
        env = {**os.environ, **proxy.env(), "PYTHONPATH": str(ROOT)}
        env.pop("CKPTAUDIT_DEBUG", None)
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "ckptaudit", "rank", "-m", "accuracy", "s3://no-such-bucket/run"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        took = time.monotonic() - start
    finally:
        proxy.stop()
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ckptaudit: error: s3://no-such-bucket/run: "), proc.stderr
    assert took < 60, took


def test_missing_bucket_and_prefix_are_one_line_errors(s3_env):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CKPTAUDIT_DEBUG", None)
    bucket = make_bucket(s3_env)
    for url in (f"s3://{bucket}/nothing-here", "s3://no-such-bucket-x/run"):
        proc = subprocess.run(
            [sys.executable, "-m", "ckptaudit", "pick", "-m", "accuracy", url],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.startswith(f"ckptaudit: error: {url}: "), proc.stderr
        assert "Traceback" not in proc.stderr


def test_the_installed_command_reads_s3(fraud_url, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "ckptaudit", "rank", "-m", "recall", "--top", "1", "-f", "json", fraud_url + "/"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["run"] == fraud_url


def test_cache_refetches_only_what_changed(s3_server, tmp_path, monkeypatch):
    proxy = start_fault_proxy(s3_server.endpoint)
    try:
        for key, value in proxy.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("CKPTAUDIT_REMOTE_CACHE", str(tmp_path / "cache"))
        url = f"s3://{make_bucket(s3_server.endpoint)}/tiny"
        upload_tree(s3_server.endpoint, RUNS / "tiny-val", url)
        first = invoke("rank", "--cache", "-m", "accuracy", "-f", "json", url)
        n1 = proxy.stats()["requests"]
        second = invoke("rank", "--cache", "-m", "accuracy", "-f", "json", url)
        n2 = proxy.stats()["requests"] - n1
        assert first.exit_code == second.exit_code == 0 and first.stdout == second.stdout
        assert n2 < n1 and n2 <= 2, (n1, n2)  # the listing only: every ETag unchanged
        # another val.npz under one checkpoint (other bytes, new ETag): noticed and read
        ckpts = sorted(p.name for p in (RUNS / "tiny-val" / "checkpoints").iterdir())
        with patched_environ({}):
            upload_tree(s3_server.endpoint, RUNS / "tiny-val" / "checkpoints" / ckpts[-1], f"{url}/checkpoints/{ckpts[0]}")
        third = invoke("rank", "--cache", "-m", "accuracy", "-f", "json", url)
        n3 = proxy.stats()["requests"] - n1 - n2  # (the upload went to the server, not through the proxy)
        assert third.exit_code == 0 and third.stdout != second.stdout
        rows = {r["checkpoint"]: r["accuracy"] for r in json.loads(third.stdout)}
        assert rows[ckpts[0]] == rows[ckpts[-1]]
        assert n3 < n1
        # a checkpoint whose meta.json is gone (a prune at work) is no longer read from the copy
        import boto3

        bucket = url.split("/")[2]
        boto3.client("s3", endpoint_url=s3_server.endpoint).delete_object(
            Bucket=bucket, Key=f"tiny/checkpoints/{ckpts[1]}/meta.json"
        )
        fourth = invoke("rank", "--cache", "-m", "accuracy", "-f", "json", url)
        assert fourth.exit_code == 0 and ckpts[1] not in {r["checkpoint"] for r in json.loads(fourth.stdout)}
        assert f"skipped: {url}/checkpoints/{ckpts[1]}: no meta.json" in fourth.stderr
    finally:
        proxy.stop()


def test_memory_urls(tmp_path, monkeypatch):
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    upload = RUNS / "tiny-val"
    for p in sorted(upload.rglob("*")):
        if p.is_file():
            fs.pipe(f"/ckptaudit-tests/tiny/{p.relative_to(upload).as_posix()}", p.read_bytes())
    url = "memory://ckptaudit-tests/tiny"
    local = twin(tmp_path, monkeypatch, "tiny-val", url)
    try:
        same(local, url, ["rank", "-m", "accuracy", "-f", "json"])
        same(local, url, ["pick", "-m", "accuracy", "--resamples", "100", "-f", "json"])
        missing = invoke("rank", "-m", "accuracy", "memory://ckptaudit-tests/none")
        assert (
            missing.exit_code == 2
            and missing.stderr == "ckptaudit: error: memory://ckptaudit-tests/none: no such file or folder\n"
        )
        as_file = invoke("rank", "-m", "accuracy", "-f", "json", f"file://{tmp_path / local}")
        assert as_file.exit_code == 0
        # --baseline as a URL: a checkpoint folder, or one val.npz
        for baseline in ("checkpoints/epoch-0003", "checkpoints/epoch-0003/val.npz"):
            opts = ["check", "-m", "accuracy", "--resamples", "100", "-f", "json", "--baseline"]
            a = invoke(*opts, f"{local}/{baseline}", local)
            b = invoke(*opts, f"{url}/{baseline}", url)
            assert a.exit_code == b.exit_code and f"{url}/{baseline}" in b.stdout, b.output
            assert b.stdout.replace(url, "LOC") == a.stdout.replace(local, "LOC")
    finally:
        fs.rm("/ckptaudit-tests", recursive=True)


def test_pick_copy_from_s3_and_check_the_provenance(fraud_url, tmp_path):
    # NOTE: only the winner's weights are fetched, to hash and copy them
    out = tmp_path / "shipped"
    placed = invoke("pick", "-m", "recall", "--resamples", "100", "--copy", out, "--no-pin", "-f", "json", fraud_url)
    assert placed.exit_code == 0, placed.output
    prov = json.loads((tmp_path / "shipped.ckptaudit.json").read_text(encoding="utf-8"))
    assert prov["run"] == fraud_url and prov["files"] and (out / "model.pt").is_file()
    linked = invoke("pick", "-m", "recall", "--resamples", "100", "--link", tmp_path / "l", fraud_url)
    assert linked.exit_code == 2 and "--link needs a run on disk" in linked.stderr
    pinned = invoke("pick", "-m", "recall", "--resamples", "100", "--copy", tmp_path / "p", fraud_url)
    assert pinned.exit_code == 2 and "--no-pin" in pinned.stderr
    # the gate identifies the shipped checkpoint by its provenance file (a local one, then a URL)
    checked = invoke(
        "check", "-m", "recall", "--resamples", "100", "-f", "json", "--chosen", tmp_path / "shipped.ckptaudit.json", fraud_url
    )
    assert json.loads(checked.stdout)["chosen"] == prov["checkpoint"], checked.output
    bucket = fraud_url.split("/")[2]
    upload_tree_file = tmp_path / "up"
    upload_tree_file.mkdir()
    shutil.copy(tmp_path / "shipped.ckptaudit.json", upload_tree_file / "shipped.ckptaudit.json")
    upload_tree(os.environ["AWS_ENDPOINT_URL"], upload_tree_file, f"s3://{bucket}/exports")
    by_url = invoke(
        "check",
        "-m",
        "recall",
        "--resamples",
        "200",
        "-f",
        "json",
        "--chosen",
        f"s3://{bucket}/exports/shipped.ckptaudit.json",
        fraud_url,
    )
    assert json.loads(by_url.stdout)["chosen"] == prov["checkpoint"], by_url.output
    # and by the weights file shipped (the run's weights are fetched to compare)
    by_weights = invoke("check", "-m", "recall", "--resamples", "100", "-f", "json", "--chosen", out / "model.pt", fraud_url)
    assert json.loads(by_weights.stdout)["chosen"] == prov["checkpoint"], by_weights.output


@pytest.mark.parametrize(
    "verb",
    [
        ["pick", "-m", "accuracy"],
        ["audit"],
        ["check", "-m", "accuracy", "--resamples", "100"],
        ["report", "-m", "accuracy", "-o", "r.json"],
    ],
)
def test_cache_option_of_the_other_verbs_keeps_the_copy(s3_server, tmp_path, monkeypatch, verb):
    proxy = start_fault_proxy(s3_server.endpoint)
    try:
        for key, value in proxy.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("CKPTAUDIT_REMOTE_CACHE", raising=False)
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        url = f"s3://{make_bucket(s3_server.endpoint)}/tiny"
        upload_tree(s3_server.endpoint, RUNS / "tiny-val", url)
        plain = invoke(*verb, url)
        assert not (tmp_path / "xdg").exists()  # without --cache: a temporary copy, nothing kept
        n0 = proxy.stats()["requests"]
        first = invoke(*verb, "--cache", url)
        n1 = proxy.stats()["requests"] - n0
        second = invoke(*verb, "--cache", url)
        n2 = proxy.stats()["requests"] - n0 - n1
        assert plain.exit_code == first.exit_code == second.exit_code != 2, plain.output
        assert untimed(first.stdout) == untimed(second.stdout)
        assert any((tmp_path / "xdg" / "ckptaudit" / "remote").iterdir())
        assert n2 < n1 and n2 <= 2, (n1, n2)  # the listing only: every ETag unchanged
    finally:
        proxy.stop()
