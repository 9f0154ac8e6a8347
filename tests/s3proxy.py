"""A fault-injecting HTTP proxy for the S3 tests (run as its own process by tests/s3server.py).

Forwards every request to the upstream server unchanged, except that every ``--fail-every``-th
request is answered with ``--fail-status`` (503 SlowDown by default, which S3 clients retry;
0 drops the connection instead) and every request is delayed by ``--latency`` seconds.
``GET /__proxy_health__`` answers 200 without counting, so the start-up probe is not a fault;
``GET /__proxy_stats__`` answers the requests forwarded so far as JSON (by method, and the
response bytes), so a test or bench can count what a command asked of the store.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers", "transfer-encoding", "upgrade"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fail-every", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--fail-status", type=int, default=503)
    args = parser.parse_args()
    upstream = urllib.parse.urlsplit(args.upstream)
    counter = itertools.count(1)
    lock = threading.Lock()
    stats: dict[str, int] = {"requests": 0, "bytes_out": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: object) -> None:  # quiet
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path == "/__proxy_health__":
                self._reply(200, [], b"ok")
                return
            if self.path == "/__proxy_stats__":
                with lock:
                    data = json.dumps(stats).encode()
                self._reply(200, [("Content-Type", "application/json")], data)
                return
            with lock:
                n = next(counter)
            if args.latency:
                time.sleep(args.latency)
            if args.fail_every and n % args.fail_every == 0:
                if args.fail_status == 0:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                xml = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code><Message>injected</Message></Error>"
                self._reply(args.fail_status, [("Content-Type", "application/xml")], xml)
                return
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            conn.request(self.command, self.path, body=body if body or self.command in ("PUT", "POST") else None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            with lock:
                stats["requests"] += 1
                stats[self.command] = stats.get(self.command, 0) + 1
                stats["bytes_out"] += len(data)
            out = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP and k.lower() != "content-length"]
            conn.close()
            self._reply(resp.status, out, data, head=self.command == "HEAD", length=resp.getheader("Content-Length"))

        def _reply(
            self, status: int, headers: list[tuple[str, str]], data: bytes, head: bool = False, length: str | None = None
        ) -> None:
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", length if head and length is not None else str(len(data)))
            self.end_headers()
            if not head:
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
