"""Secrets in an endpoint's config reach the probed server, and nothing Grafana's read-only role can read
or the logs: the endpoints table, probe results (final URL, errors, pushed check-ins) and every log line
of a real run, check-ins with ?token= included."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from prober import service
from tests.prober import targets
from tests.prober.test_prober_service import wait_for
from upwatch import config as configuration
from upwatch.runtime import Runtime

MARK = "s3cr3t"  # every secret below contains it; nothing stored or logged may
SEEN = web.AppKey("seen", list)


async def record(request: web.Request) -> web.Response:
    request.app[SEEN].append({"path": request.path_qs, "headers": dict(request.headers), "body": await request.text()})
    if request.path == "/away":  # a redirect the client refuses, quoting the URL in its error
        raise web.HTTPFound(f"ftp://127.0.0.1/x?token={MARK}redirect&page=1")
    if request.path == "/session":
        return web.json_response({"status": "UP", "session": {"token": f"{MARK}resp"}})
    return web.Response(status=500, text="down")


@asynccontextmanager
async def recording_target() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    app = web.Application()
    app[SEEN] = []
    app.router.add_route("*", "/{tail:.*}", record)
    # No access log: then any aiohttp.access line captured below would come from the prober's listener.
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"127.0.0.1:{port}", app[SEEN]
    finally:
        await runner.cleanup()


def write_config(path: Path, host: str, listen: int) -> None:
    path.write_text(f"""
endpoints:
  - name: query
    method: POST
    url: "http://{host}/down?api_key={MARK}q&page=2&internal_id={MARK}custom#access_token={MARK}frag"
    headers: {{AUTHORIZATION: "Bearer {MARK}h1", x-API-key: "{MARK}h2", X-Session-Token: "{MARK}h3",
               X-Trace: keep-me}}
    json: {{user: bob, credentials: {{password: "{MARK}j1"}}, items: [{{refreshToken: "{MARK}j2"}}]}}
    interval: 1s
  - name: userinfo
    method: POST
    url: "http://bob:{MARK}u@{host}/away?access_token={MARK}q2"
    body: "user=bob&client_secret={MARK}f1"
    interval: 1s
  - name: asserts
    url: "http://{host}/session"
    interval: 1s
    assertions:
      - json: {{path: session.token, equals: "{MARK}expected"}}
      - "[BODY].status == DOWN"
  - name: cron
    kind: push
    period: 1m
    auth: {{bearer: "{MARK}b1"}}
prober:
  location: lab
  instance: p1
  data_dir: {path.parent / 'data'}
  flush_interval: 100ms
  config_poll_interval: 100ms
push:
  listen: 127.0.0.1:{listen}
  secret_names: [internal-id]
""")


def reader_rows(database_url: str, table: str) -> list[str]:
    """Every column of every row of `table` as JSON text, read as the read-only role Grafana uses."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET ROLE upwatch_reader")
        query = psycopg.sql.SQL("SELECT row_to_json(t)::text FROM {} t").format(psycopg.sql.Identifier(table))
        return [r[0] for r in conn.execute(query).fetchall()]


async def test_no_endpoint_secret_is_stored_or_logged(tmp_path: Path, database_url: str, pool: AsyncConnectionPool,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with recording_target() as (host, seen):
        path = tmp_path / "upwatch.yaml"
        listen = targets.closed_port()
        write_config(path, host, listen)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(Runtime(configuration.load(path), path, database_url, pool), stop))
        await wait_for(lambda: "prober listening" in caplog.text)
        checks = f"http://127.0.0.1:{listen}/api/v1/checks/cron"
        async with aiohttp.ClientSession() as client:
            async with client.get(f"{checks}?token={MARK}wrong") as resp:
                assert resp.status == 401
            async with client.post(f"{checks}/fail?token={MARK}b1", data=f"GET https://x.test/?token={MARK}job failed",
                                   headers={"Content-Type": "text/plain"}) as resp:
                assert resp.status == 202, await resp.text()

        def failures() -> list[str]:
            return [r for r in reader_rows(database_url, "probe_results") if '"ok":false' in r]

        await wait_for(lambda: len({r.split('"endpoint_id":')[1].split(",")[0] for r in failures()}) == 4)
        stop.set()
        await asyncio.wait_for(task, 5)

    # The probes themselves sent the real secrets.
    down = next(s for s in seen if s["path"].startswith("/down"))
    assert f"api_key={MARK}q" in down["path"] and down["headers"]["Authorization"] == f"Bearer {MARK}h1"
    assert f'"password": "{MARK}j1"' in down["body"]
    away = next(s for s in seen if s["path"].startswith("/away"))
    assert away["body"] == f"user=bob&client_secret={MARK}f1" and away["headers"]["Authorization"].startswith("Basic")

    endpoints, results = reader_rows(database_url, "endpoints"), reader_rows(database_url, "probe_results")
    assert len(endpoints) == 4 and results
    assert [r for r in endpoints + results if MARK in r] == []
    assert any("api_key=***&page=2&internal_id=***#access_token=***" in r for r in endpoints)
    assert any('"X-Trace" : "keep-me"' in r or '"X-Trace": "keep-me"' in r for r in endpoints)
    assert any("?token=***&page=1" in r and "invalid_request" in r for r in results)  # the error quoted the URL
    assert any("/down?api_key=***&page=2" in r for r in results)  # final_url
    assert any("GET https://x.test/?token=*** failed" in r and '"source":"push"' in r for r in results)
    assert any("json session.token == ***: the value did not match; [BODY].status == DOWN: expected == DOWN, got UP"
               in r for r in results)  # what the assertion on a secret field saw and expected is masked
    assert any("json session.token == ***" in r for r in endpoints)
    assert MARK not in caplog.text and "probe failed endpoint=userinfo" in caplog.text
