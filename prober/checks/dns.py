"""DNS check: resolve a name (A or AAAA) with the system resolver; the addresses are the 'body'
that assertions see, one per line. Never raises for resolution errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time

import aiohttp

from upwatch.assertions import Observed, evaluate
from upwatch.config.endpoints import Endpoint
from upwatch.records import ProbeResult

FAMILIES = {"A": socket.AF_INET, "AAAA": socket.AF_INET6}


async def run(endpoint: Endpoint, session: aiohttp.ClientSession | None = None) -> ProbeResult:
    """Resolve one name."""
    started_at, start = dt.datetime.now(dt.UTC), time.perf_counter()
    timeout_s = endpoint.timeout.total_seconds()
    host = endpoint.host or ""
    try:
        async with asyncio.timeout(timeout_s):
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, None, family=FAMILIES[endpoint.record_type], type=socket.SOCK_STREAM)
    except TimeoutError:
        return ProbeResult.failed(started_at, "timeout", f"timeout after {timeout_s:g}s resolving {host}",
                                  latency_ms=_ms(start))
    except socket.gaierror as e:
        return ProbeResult.failed(started_at, "dns", f"cannot resolve {host} {endpoint.record_type}: {e.strerror}",
                                  latency_ms=_ms(start), dns_ms=_ms(start))
    addresses = sorted({str(info[4][0]) for info in infos})
    latency = _ms(start)
    body = "\n".join(addresses).encode()
    passed, results = evaluate(endpoint.assertions, Observed(now=started_at, latency_ms=latency, body=body))
    fields = {"dns_ms": latency, "latency_ms": latency, "response_bytes": len(body), "assertions": results or None}
    if not passed:
        message = "; ".join(f"{r['assertion']}: {r['reason']}" for r in results if not r["ok"])
        return ProbeResult.failed(started_at, "assertion", message[:500], **fields)
    return ProbeResult(time=started_at, ok=True, **fields)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
