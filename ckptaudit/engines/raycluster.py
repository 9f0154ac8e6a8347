"""Reaching a Ray cluster, or starting a local one: one error line, at once, when it fails.

Shared by ``predict --engine ray`` (:mod:`ckptaudit.inference.engines`) and the read-heavy
verbs' Ray engine (:mod:`.ray_pool`). Ray itself is imported only by :func:`connect`.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from ..errors import UsageError

#: the environment variable that bounds how long reaching a Ray cluster may take (seconds)
RAY_CONNECT_ENV = "CKPTAUDIT_RAY_CONNECT_TIMEOUT"
_RAY_ADDRESS = re.compile(r"(?:ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}))?:([0-9]{1,5})")
#: the client preface of HTTP/2 and an empty SETTINGS frame: a gRPC server (Ray's GCS and
#: its client server both are) answers it with a SETTINGS frame of its own
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _connect_timeout() -> float:
    raw = os.environ.get(RAY_CONNECT_ENV, "").strip()
    if not raw:
        return 10.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"{RAY_CONNECT_ENV} must be a number of seconds > 0, got {raw!r}")
    return value


def reachable(address: str, option: str = "--address") -> None:
    """Check, within ``CKPTAUDIT_RAY_CONNECT_TIMEOUT`` seconds (10 by default), that a Ray
    cluster could answer at ``address`` (``HOST:PORT`` or ``ray://HOST:PORT``): the address
    is well formed, the port accepts a connection and speaks gRPC's HTTP/2. ``ray.init``
    itself retries an unreachable address for minutes, printing a warning every few
    seconds; this makes it one line instead, at once."""
    import socket

    m = _RAY_ADDRESS.fullmatch(address)
    port = int(m.group(2)) if m else 0
    if m is None or not m.group(1) or not 1 <= port <= 65535:
        raise UsageError(
            f"{option} {address!r}: write HOST:PORT (the Ray head's GCS port, often 6379), ray://HOST:PORT, auto or local"
        )
    host = m.group(1).strip("[]")
    timeout = _connect_timeout()
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(_H2_PREFACE)
            frame = b""
            while len(frame) < 9:
                got = conn.recv(9 - len(frame))
                if not got:
                    break
                frame += got
    except (OSError, UnicodeError) as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
        raise UsageError(f"{option} {address}: no Ray cluster reachable there within {timeout:g} s ({why})") from None
    # NOTE: a cluster using TLS (RAY_USE_TLS) answers the preface with a TLS alert instead.
    tls = os.environ.get("RAY_USE_TLS", "").strip().lower() in ("1", "true", "yes")
    if not tls and (len(frame) < 9 or frame[3] != 0x04):
        raise UsageError(f"{option} {address}: something answers there, but not a Ray cluster (no gRPC answer)")


def _describe(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0][:297] + "..." if lines and len(lines[0]) > 300 else (lines[0] if lines else "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def connect(address: str | None, num_cpus: int | None = None) -> Any:
    """The ``ray`` module, connected: to ``address`` (``HOST:PORT``, ``ray://HOST:PORT``,
    ``auto`` or ``local``), else to ``RAY_ADDRESS``, else to a local Ray started here (with
    ``num_cpus`` CPUs; None: every core). A Ray this process already started is reused.
    Ray missing, an address nothing answers at, or a failed start: one :class:`UsageError`
    line (``ray.init`` alone would retry an unreachable address for minutes)."""
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray: pip install 'ckptaudit[ray]'") from None
    if ray.is_initialized():
        return ray
    target = address or os.environ.get("RAY_ADDRESS") or None
    where = "--address" if address else "RAY_ADDRESS"
    if target not in (None, "auto", "local"):
        assert target is not None
        reachable(target, where)
    try:
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    except Exception as exc:
        name = f"{where} {target}" if target else "a local Ray"
        raise UsageError(f"cannot start or reach {name}: {_describe(exc)}") from None
    return ray
