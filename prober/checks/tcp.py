"""TCP check: resolve and connect to host:port, timing DNS and connect. Never raises for network errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field

from prober.checks.assertions import Observed, evaluate
from prober.checks.base import CheckOptions
from upwatch.records import ProbeResult, Target

if TYPE_CHECKING:
    import aiohttp


class Options(CheckOptions):
    host: str = ""
    port: int | None = Field(default=None, ge=1, le=65535)

    @classmethod
    def problem(cls, data: Mapping[str, Any]) -> str | None:
        if not data.get("host") or not data.get("port"):
            return "host and port are required for kind tcp"
        return None

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connects_to(self) -> str:
        return self.host


async def run(target: Target[Options], session: aiohttp.ClientSession | None = None) -> ProbeResult:
    """Probe one TCP endpoint (the shared HTTP session is not used)."""
    started_at, start = dt.datetime.now(dt.UTC), time.perf_counter()
    timeout_s = target.timeout.total_seconds()
    loop = asyncio.get_running_loop()
    host, port = target.options.host, target.options.port or 0
    dns_ms: float | None = None
    ip: str | None = None
    try:
        async with asyncio.timeout(timeout_s):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            resolved = time.perf_counter()
            dns_ms = _ms(resolved - start)
            address = infos[0][4]
            ip = str(address[0])
            _, writer = await asyncio.open_connection(*address[:2])
            connect_ms = _ms(time.perf_counter() - resolved)
            writer.close()
    except TimeoutError:
        stage = "resolving" if dns_ms is None else "connecting"
        return _failed(started_at, start, "timeout", f"timeout after {timeout_s:g}s {stage}", dns_ms, ip)
    except socket.gaierror as e:
        return _failed(started_at, start, "dns", f"cannot resolve {host}: {e.strerror}", None, None)
    except OSError as e:
        return _failed(started_at, start, "connect", f"cannot connect to {host}:{port}: {e.strerror or e}", dns_ms,
                       ip)
    latency = _ms(time.perf_counter() - start)
    results = evaluate(target.assertions, Observed(now=started_at, latency_ms=latency, connected=True, ip=ip))
    return ProbeResult.done(started_at, results, dns_ms=dns_ms, connect_ms=connect_ms, latency_ms=latency,
                            details={"ip": ip})


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _failed(started_at: dt.datetime, start: float, kind: str, message: str, dns_ms: float | None,
            ip: str | None) -> ProbeResult:
    """A failed connect; `ip`: the address tried, once the name resolved (blackbox's probe_ip_* then have it)."""
    return ProbeResult.failed(started_at, kind, message, dns_ms=dns_ms, latency_ms=_ms(time.perf_counter() - start),
                              details={"ip": ip} if ip is not None else None)
