"""TCP check: resolve and connect to host:port, timing DNS and connect. Never raises for network errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time

import aiohttp

from upwatch.assertions import Observed, evaluate
from upwatch.config.endpoints import Endpoint
from upwatch.records import ProbeResult


async def run(endpoint: Endpoint, session: aiohttp.ClientSession | None = None) -> ProbeResult:
    """Probe one TCP endpoint (the shared HTTP session is not used)."""
    started_at, start = dt.datetime.now(dt.UTC), time.perf_counter()
    timeout_s = endpoint.timeout.total_seconds()
    loop = asyncio.get_running_loop()
    host, port = endpoint.host or "", endpoint.port or 0
    dns_ms: float | None = None
    try:
        async with asyncio.timeout(timeout_s):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            resolved = time.perf_counter()
            dns_ms = _ms(resolved - start)
            _, writer = await asyncio.open_connection(*infos[0][4][:2])
            connect_ms = _ms(time.perf_counter() - resolved)
            writer.close()
    except TimeoutError:
        stage = "resolving" if dns_ms is None else "connecting"
        return _failed(started_at, start, "timeout", f"timeout after {timeout_s:g}s {stage}", dns_ms)
    except socket.gaierror as e:
        return _failed(started_at, start, "dns", f"cannot resolve {host}: {e.strerror}", None)
    except OSError as e:
        return _failed(started_at, start, "connect", f"cannot connect to {host}:{port}: {e.strerror or e}", dns_ms)
    latency = _ms(time.perf_counter() - start)
    passed, results = evaluate(endpoint.assertions, Observed(now=started_at, latency_ms=latency, connected=True))
    fields = {"dns_ms": dns_ms, "connect_ms": connect_ms, "latency_ms": latency, "assertions": results or None}
    if not passed:
        message = "; ".join(f"{r['assertion']}: {r['reason']}" for r in results if not r["ok"])
        return ProbeResult.failed(started_at, "assertion", message[:500], **fields)
    return ProbeResult(time=started_at, ok=True, **fields)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _failed(started_at: dt.datetime, start: float, kind: str, message: str, dns_ms: float | None) -> ProbeResult:
    return ProbeResult.failed(started_at, kind, message, dns_ms=dns_ms, latency_ms=_ms(time.perf_counter() - start))
