"""The S3 test harness itself: a real moto server process, and the fault proxy in front of it."""

from __future__ import annotations

import time

import pytest
from s3server import make_bucket, start_fault_proxy

s3fs = pytest.importorskip("s3fs")


def test_server_round_trip(s3_env):
    bucket = make_bucket(s3_env)
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.pipe(f"{bucket}/a/b.bin", b"0123456789")
    assert fs.cat(f"{bucket}/a/b.bin") == b"0123456789"
    with fs.open(f"{bucket}/a/b.bin", "rb") as fh:  # a ranged GET
        fh.seek(3)
        assert fh.read(4) == b"3456"
    assert fs.info(f"{bucket}/a/b.bin")["ETag"]


def test_proxy_fails_every_nth_request_and_clients_retry(s3_server, monkeypatch):
    proxy = start_fault_proxy(s3_server.endpoint, fail_every=5)
    try:
        for key, value in proxy.env().items():
            monkeypatch.setenv(key, value)
        bucket = make_bucket(proxy.endpoint)
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        for i in range(10):
            fs.pipe(f"{bucket}/k{i}", bytes([i]) * 3)
        assert [fs.cat(f"{bucket}/k{i}") for i in range(10)] == [bytes([i]) * 3 for i in range(10)]
        counts = proxy.stats()
        assert counts["PUT"] >= 11 and counts["GET"] >= 10  # the bucket, 10 objects; retries on top
    finally:
        proxy.stop()


def test_proxy_adds_latency(s3_server, monkeypatch):
    proxy = start_fault_proxy(s3_server.endpoint, latency=0.3)
    try:
        for key, value in proxy.env().items():
            monkeypatch.setenv(key, value)
        start = time.monotonic()
        make_bucket(proxy.endpoint)
        assert time.monotonic() - start >= 0.3
    finally:
        proxy.stop()
