"""HTTP checks open a fresh connection per probe by default (real dns/connect/tls phases every time);
`prober.reuse_connections: true` keeps them, as blackbox_exporter does not and upwatch used to."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from prober import checks, service
from prober.checks import http
from tests.prober import certs, targets
from tests.prober.conftest import fetch
from upwatch import config as configuration
from upwatch.config import ConfigError
from upwatch.config.endpoints import Endpoint
from upwatch.records import ProbeResult
from upwatch.runtime import Runtime

PEERS = web.AppKey("peers", list)
PROBES = 5


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> certs.Certs:
    return certs.make(tmp_path_factory.mktemp("certs"))


async def ok(request: web.Request) -> web.Response:
    """Notes the client address of the connection the request came on: one address per connection."""
    assert request.transport is not None
    request.app[PEERS].append(request.transport.get_extra_info("peername"))
    return web.json_response({"status": "UP"})


@asynccontextmanager
async def counting_server(tls: certs.Certs | None) -> AsyncIterator[tuple[str, list[Any]]]:
    """A local server on 127.0.0.1 (plain or TLS); yields its base URL by name (localhost, so that
    every probe has a name to look up) and the client address of each request it served."""
    app = web.Application()
    app[PEERS] = []
    app.router.add_get("/ok", ok)
    context = targets.server_context(*map(str, tls.good)) if tls is not None else None
    async with targets.serve(app, context) as url:
        yield url.replace("127.0.0.1", "localhost"), app[PEERS]


def endpoint(url: str, tls: certs.Certs | None) -> Endpoint:
    extra = {"ca_file": str(tls.ca)} if tls is not None else {}
    return Endpoint.model_validate({"name": "t", "url": f"{url}/ok", "timeout": "5s", **extra})


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def probe_times(count: int, url: str, tls: certs.Certs | None, *, reuse: bool,
                      each: Callable[[], None] = lambda: None) -> list[ProbeResult]:
    session = http.new_session(reuse_connections=reuse)
    try:
        results = []
        for _ in range(count):
            results.append(await checks.run(endpoint(url, tls), session))
            each()
        return results
    finally:
        await session.close()


@pytest.mark.parametrize("secure", [True, False], ids=["https", "http"])
async def test_every_probe_looks_up_connects_and_handshakes_on_its_own_connection(tls: certs.Certs,
                                                                                  secure: bool) -> None:
    used = tls if secure else None
    async with counting_server(used) as (url, peers):
        results = await probe_times(PROBES, url, used, reuse=False)
    assert [r.error for r in results] == [None] * PROBES
    assert len(set(peers)) == len(peers) == PROBES  # the server accepted one connection per probe
    for r in results:  # a cached lookup or a pooled socket would show as 0
        assert r.dns_ms is not None and r.dns_ms > 0
        assert r.connect_ms is not None and r.connect_ms > 0
        assert (r.tls_ms is not None and r.tls_ms > 0) if secure else r.tls_ms is None
        assert (r.cert_not_after is not None) == secure


async def test_reused_connection_skips_lookup_connect_and_handshake(tls: certs.Certs) -> None:
    async with counting_server(tls) as (url, peers):
        results = await probe_times(PROBES, url, tls, reuse=True)
    assert [r.error for r in results] == [None] * PROBES
    assert len(peers) == PROBES and len(set(peers)) == 1  # one connection served every probe
    first, *rest = results
    assert first.tls_ms is not None and first.tls_ms > 0 and first.connect_ms is not None and first.connect_ms > 0
    assert {(r.dns_ms, r.connect_ms, r.tls_ms) for r in rest} == {(0.0, 0.0, 0.0)}
    assert {r.cert_not_after for r in results} == {first.cert_not_after}


@pytest.mark.parametrize("secure", [True, False], ids=["https", "http"])
async def test_fresh_connections_are_closed_not_leaked(tls: certs.Certs, secure: bool) -> None:
    used, count = (tls if secure else None), 40
    async with counting_server(used) as (url, peers):
        before = open_fds()
        seen: list[int] = []
        results = await probe_times(count, url, used, reuse=False, each=lambda: seen.append(open_fds()))
        await settle(lambda: open_fds() <= before)
        after = open_fds()
    assert [r.ok for r in results] == [True] * count
    assert len(set(peers)) == count
    # Client and server ends of the last few connections still closing, not one (or two) per probe.
    assert max(seen) - before <= 10, seen
    assert after <= before


async def settle(done: Callable[[], bool]) -> None:
    """Let the loop run closes already scheduled (a TLS close waits for the peer's close_notify), for up to 5 s."""
    for _ in range(250):
        if done():
            return
        await asyncio.sleep(0.02)


def write_config(path: Path, url: str, tls: certs.Certs, reuse: bool | None) -> None:
    setting = "" if reuse is None else f"  reuse_connections: {str(reuse).lower()}\n"
    path.write_text(f"endpoints:\n  - name: api\n    url: {url}/ok\n    ca_file: {tls.ca}\n    interval: 1s\n"
                    f"prober:\n  location: lab\n  instance: p1\n  data_dir: {path.parent / 'data'}\n{setting}"
                    f"  flush_interval: 100ms\n"
                    f"push:\n  listen: 127.0.0.1:{targets.closed_port()}\n")


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("reuse", [None, False, True], ids=["default", "false", "true"])
async def test_prober_setting_decides_whether_connections_are_reused(tmp_path: Path, database_url: str,
                                                                      pool: AsyncConnectionPool, tls: certs.Certs,
                                                                      reuse: bool | None) -> None:
    query = "SELECT tls_ms, connect_ms FROM probe_results WHERE error IS NULL ORDER BY time"
    async with counting_server(tls) as (url, peers):
        path = tmp_path / "upwatch.yaml"
        write_config(path, url, tls, reuse)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(Runtime(configuration.load(path), path, database_url, pool), stop))

        async def stored_three() -> bool:
            return task.done() or len(fetch(database_url, query)) >= 3

        await wait_for(stored_three)
        stop.set()
        await task
    rows = fetch(database_url, query)
    assert len(rows) >= 3 and len(peers) >= len(rows)
    if reuse:
        assert len(set(peers)) == 1
        assert [tls_ms for tls_ms, _ in rows[1:]] == [0.0] * (len(rows) - 1)
    else:
        assert len(set(peers)) == len(peers)
        assert all(tls_ms > 0 and connect_ms > 0 for tls_ms, connect_ms in rows)


def test_reuse_connections_must_be_a_boolean(tmp_path: Path) -> None:
    path = tmp_path / "upwatch.yaml"
    path.write_text("endpoints: []\nprober:\n  location: lab\n  reuse_connections: sometimes\n")
    with pytest.raises(ConfigError) as caught:
        configuration.load(path, environ={})
    assert str(caught.value) == (f"{path}:4: prober.reuse_connections: Input should be a valid boolean, "
                                 "unable to interpret input (got 'sometimes')")
