"""DNS check: resolve a name (A or AAAA) with the system resolver; the addresses are the 'body'
that assertions see, one per line. Never raises for resolution errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import field_validator

from prober.checks.assertions import Observed, evaluate
from prober.checks.base import CheckOptions
from upwatch.records import ProbeResult, Target

if TYPE_CHECKING:
    import aiohttp

FAMILIES = {"A": socket.AF_INET, "AAAA": socket.AF_INET6}


class Options(CheckOptions):
    host: str = ""  # the name to resolve
    record_type: str = "A"

    @classmethod
    def problem(cls, data: Mapping[str, Any]) -> str | None:
        return None if data.get("host") else "host (the name to resolve) is required for kind dns"

    @field_validator("record_type")
    @classmethod
    def _record_type(cls, value: str) -> str:
        if value.upper() not in FAMILIES:
            raise ValueError(f"{value!r} is not supported (use {' or '.join(FAMILIES)})")
        return value.upper()

    @property
    def target(self) -> str:
        return f"{self.host} {self.record_type}"

    @property
    def connects_to(self) -> str:
        return self.host


async def run(target: Target[Options], session: aiohttp.ClientSession | None = None) -> ProbeResult:
    """Resolve one name."""
    started_at, start = dt.datetime.now(dt.UTC), time.perf_counter()
    timeout_s = target.timeout.total_seconds()
    host, record_type = target.options.host, target.options.record_type
    try:
        async with asyncio.timeout(timeout_s):
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, None, family=FAMILIES[record_type], type=socket.SOCK_STREAM)
    except TimeoutError:
        return ProbeResult.failed(started_at, "timeout", f"timeout after {timeout_s:g}s resolving {host}",
                                  latency_ms=_ms(start))
    except socket.gaierror as e:
        return ProbeResult.failed(started_at, "dns", f"cannot resolve {host} {record_type}: {e.strerror}",
                                  latency_ms=_ms(start), dns_ms=_ms(start))
    addresses = sorted({str(info[4][0]) for info in infos})
    latency = _ms(start)
    body = "\n".join(addresses).encode()
    results = evaluate(target.assertions, Observed(now=started_at, latency_ms=latency, body=body))
    return ProbeResult.done(started_at, results, dns_ms=latency, latency_ms=latency, response_bytes=len(body))


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
