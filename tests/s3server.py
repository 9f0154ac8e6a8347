"""A real S3 API server for the tests: moto's server mode in a child process on localhost.

The guide forbids in-process mocks of servers, so the tests talk HTTP to a separate process,
exactly as ckptaudit would talk to AWS, MinIO or any S3-compatible store. A fault-injecting
proxy (:mod:`tests.s3proxy`, also its own process) sits in front of it when a test wants a
server that fails every Nth request or answers slowly.

Credentials and the endpoint reach s3fs/botocore through the usual ``AWS_*`` variables
(``s3_env``), never through ckptaudit options, so the tests exercise what users configure.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(url: str, proc: subprocess.Popen, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not answer in {seconds} s")


@dataclass
class S3Server:
    """One running S3 API endpoint (moto, or the fault proxy in front of it)."""

    endpoint: str
    proc: subprocess.Popen

    def env(self) -> dict[str, str]:
        """The environment a client needs to reach this server (what a user would export)."""
        return s3_env(self.endpoint)

    def stats(self) -> dict[str, int]:
        """The fault proxy's counts of forwarded requests (``requests``, per method, ``bytes_out``)."""
        with urllib.request.urlopen(self.endpoint + "/__proxy_stats__", timeout=5) as resp:
            return dict(json.loads(resp.read()))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def s3_env(endpoint: str) -> dict[str, str]:
    """``AWS_*`` variables for a test endpoint: dummy keys, a region, the endpoint URL."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        # botocore would otherwise read ~/.aws and try the instance metadata service
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def start_moto() -> S3Server:
    """Start ``python -m moto.server`` on a free localhost port and wait until it answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    _wait_until_up(endpoint + "/moto-api/", proc)
    return S3Server(endpoint, proc)


def start_fault_proxy(upstream: str, fail_every: int = 0, latency: float = 0.0, fail_status: int = 503) -> S3Server:
    """Start tests/s3proxy.py in front of ``upstream``: every ``fail_every``-th request fails
    (HTTP ``fail_status``, or a dropped connection when ``fail_status`` is 0) and every request
    waits ``latency`` seconds first."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "s3proxy.py"),
            "--upstream",
            upstream,
            "--port",
            str(port),
            "--fail-every",
            str(fail_every),
            "--latency",
            str(latency),
            "--fail-status",
            str(fail_status),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    _wait_until_up(endpoint + "/__proxy_health__", proc)
    return S3Server(endpoint, proc)


def make_bucket(endpoint: str, name: str | None = None) -> str:
    """Create a bucket with a fresh name on the server and return the name."""
    import boto3

    name = name or f"b-{uuid.uuid4().hex[:12]}"
    env = s3_env(endpoint)
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    client.create_bucket(Bucket=name)
    return name


def upload_tree(endpoint: str, local: Path, url: str) -> None:
    """Copy a local folder to ``s3://bucket/prefix`` object by object (boto3, not ckptaudit)."""
    import boto3

    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    env = s3_env(endpoint)
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    for path in sorted(local.rglob("*")):
        if path.is_file():
            key = "/".join(p for p in (prefix.strip("/"), path.relative_to(local).as_posix()) if p)
            client.upload_file(str(path), bucket, key)


@contextmanager
def patched_environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block and restore them after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
