"""The check registry: the only place a check kind is registered.

A check is `async def run(endpoint, session) -> ProbeResult` that never raises
for network errors. `push` endpoints are not probed: results arrive through the
push API, and the heartbeat watcher records missing ones.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp

from prober.checks import dns, http, tcp
from upwatch.config.endpoints import Endpoint
from upwatch.records import ProbeResult

Check = Callable[[Endpoint, aiohttp.ClientSession], Awaitable[ProbeResult]]

CHECKS: dict[str, Check] = {"http": http.run, "tcp": tcp.run, "dns": dns.run}
