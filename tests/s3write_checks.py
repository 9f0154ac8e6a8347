"""Checks the object-storage write tests share: a bucket's listing with ETags (read with
boto3, not ckptaudit), the commit-rule invariant, and a child process killed at a moment."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
from s3server import s3_env


def client(endpoint: str):
    import boto3

    env = s3_env(endpoint)
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )


def etags(endpoint: str, bucket: str, prefix: str = "") -> dict[str, str]:
    """Every key of the bucket (under ``prefix``) with its ETag."""
    out = {}
    for page in client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.update({o["Key"]: o["ETag"] for o in page.get("Contents", [])})
    return out


def assert_committed_whole(endpoint: str, bucket: str, run: str) -> tuple[list[str], list[str]]:
    """The commit rule: every checkpoint with a meta.json has its predictions (loadable) and
    every weights file its meta.json lists, at the listed size. Returns (committed names,
    names of folders without meta.json)."""
    c = client(endpoint)
    keys = etags(endpoint, bucket, run + "/checkpoints/")
    folders: dict[str, set[str]] = {}
    for key in keys:
        name, _, rest = key[len(run) + len("/checkpoints/") :].partition("/")
        folders.setdefault(name, set()).add(rest)
    committed = sorted(n for n, files in folders.items() if "meta.json" in files)
    try:  # a prune that removed a checkpoint's weights records it: its meta.json still lists them
        record = json.loads(c.get_object(Bucket=bucket, Key=f"{run}/ckptaudit-pruned.json")["Body"].read())
        pruned = set(record["checkpoints"])
    except c.exceptions.NoSuchKey:
        pruned = set()
    for name in committed:
        meta = json.loads(c.get_object(Bucket=bucket, Key=f"{run}/checkpoints/{name}/meta.json")["Body"].read())
        assert "val.npz" in folders[name], f"{name} visible without val.npz"
        body = c.get_object(Bucket=bucket, Key=f"{run}/checkpoints/{name}/val.npz")["Body"].read()
        with np.load(io.BytesIO(body), allow_pickle=False) as z:
            assert {"target", "output"} <= set(z.files)
        for file_name, info in (meta.get("weights") or {}).items():
            if name in pruned and file_name not in folders[name]:
                continue
            head = c.head_object(Bucket=bucket, Key=f"{run}/checkpoints/{name}/{file_name}")
            assert head["ContentLength"] == info["size"], f"{name}/{file_name} visible but not whole"
    return committed, sorted(n for n in folders if n not in committed)


def run_and_kill(args: list[str], env: dict[str, str], after: float, wait_for: tuple[str, str, str] | None = None) -> int:
    """Start ``args``; once ``wait_for`` (endpoint, bucket, key) exists (or at once), wait
    ``after`` seconds and kill -9 it. Returns its exit status (-9 when killed)."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        if wait_for is not None:
            endpoint, bucket, key = wait_for
            c = client(endpoint)
            while time.monotonic() < deadline and proc.poll() is None:
                if c.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount"):
                    break
                time.sleep(0.05)
        else:
            line = proc.stdout.readline() if proc.stdout else ""  # the child says when it is ready
            assert line.startswith("ready"), line
        time.sleep(after)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(60)
        return proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def ckptaudit_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ckptaudit", *args]


def child_env(endpoint: str, **extra: str) -> dict[str, str]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, **s3_env(endpoint), "PYTHONPATH": path, **extra}
