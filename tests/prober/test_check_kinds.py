"""A check kind is one module plus one line in CHECKS: a kind registered from here ("banner": read
the first line a TCP server sends) is validated by the config, run by `upwatch probe` and by the
scheduler, with nothing else edited."""

from __future__ import annotations

import asyncio
import datetime as dt
import socketserver
import threading
import time
import types
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from psycopg_pool import AsyncConnectionPool
from pydantic import Field

from prober.checks import CHECKS, CheckOptions, http
from prober.checks.assertions import Observed, evaluate
from prober.scheduler import Scheduler
from prober.writer import BatchWriter
from tests.prober.conftest import fetch
from upwatch import cli, config
from upwatch.catalog import sync_endpoints
from upwatch.records import ProbeResult, Target

BANNER = b"220 upwatch-test ready\r\n"


# ---- the throw-away kind: what a new prober/checks/banner.py would hold ----

class BannerOptions(CheckOptions):
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    expect: str = ""  # the banner must start with this

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connects_to(self) -> str:
        return self.host


async def run_banner(target: Target[BannerOptions], session: aiohttp.ClientSession) -> ProbeResult:
    """Read the server's first line; never raises for network errors."""
    opts, started_at, start = target.options, dt.datetime.now(dt.UTC), time.perf_counter()
    try:
        async with asyncio.timeout(target.timeout.total_seconds()):
            reader, writer = await asyncio.open_connection(opts.host, opts.port)
            line = await reader.readline()
            writer.close()
            await writer.wait_closed()
    except TimeoutError:
        return ProbeResult.failed(started_at, "timeout", "no banner in time")
    except OSError as e:
        return ProbeResult.failed(started_at, "connect", f"cannot connect to {opts.target}: {e.strerror or e}")
    latency_ms = (time.perf_counter() - start) * 1000
    if not line.decode(errors="replace").startswith(opts.expect):
        return ProbeResult.failed(started_at, "protocol", f"banner {line!r} does not start with {opts.expect!r}",
                                  latency_ms=latency_ms, response_bytes=len(line))
    results = evaluate(target.assertions, Observed(now=started_at, latency_ms=latency_ms, body=line, connected=True))
    return ProbeResult.done(started_at, results, latency_ms=latency_ms, response_bytes=len(line))


banner = types.SimpleNamespace(Options=BannerOptions, run=run_banner)


@pytest.fixture(autouse=True)
def banner_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CHECKS, "banner", banner)  # the one registry line


class _Greeter(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(BANNER)


@pytest.fixture
def banner_port() -> Iterator[int]:
    """A local TCP server that sends BANNER to every connection (in a thread: `upwatch probe` runs its own loop)."""
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Greeter) as server:
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()
            thread.join(5)


def endpoints_yaml(port: int, extra: str = "") -> str:
    return (f"endpoints:\n  - name: greeter\n    kind: banner\n    port: {port}\n    expect: '220 '\n"
            f"    interval: 1s\n    timeout: 2s\n    assertions:\n      - body_contains: ready\n{extra}")


# ---- config ----

def test_config_accepts_the_keys_of_a_registered_kind() -> None:
    cfg = config.parse(endpoints_yaml(2525), "upwatch.yaml", {})
    (greeter,) = cfg.endpoints
    assert greeter.kind == "banner" and greeter.options == BannerOptions(port=2525, expect="220 ")
    assert greeter.target == "127.0.0.1:2525" and greeter.interval == dt.timedelta(seconds=1)


def test_config_rejects_wrong_keys_of_a_registered_kind_with_file_and_line() -> None:
    text = (endpoints_yaml(2525) + "    url: http://127.0.0.1/\n    expct: '220'\n"
            "  - name: web\n    url: http://127.0.0.1/\n    expect: '220'\n"
            "  - name: other\n    kind: banner\n    port: 0\n")
    with pytest.raises(config.ConfigError) as caught:
        config.parse(text, "upwatch.yaml", {})
    assert str(caught.value).splitlines() == [
        "upwatch.yaml:10: endpoints[0].url: url is not an option of kind banner",
        "upwatch.yaml:11: endpoints[0].expct: unknown key 'expct' (did you mean 'expect'?)",
        "upwatch.yaml:14: endpoints[1].expect: expect is not an option of kind http",
        "upwatch.yaml:17: endpoints[2].port: Input should be greater than or equal to 1 (got 0)",
    ]


def test_an_unknown_kind_error_lists_the_registered_kinds() -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.parse("endpoints:\n  - name: x\n    kind: banr\n", "upwatch.yaml", {})
    assert str(caught.value) == ("upwatch.yaml:3: endpoints[0].kind: unknown kind 'banr' "
                                 f"(use one of {', '.join(CHECKS)})")  # the built-in kinds, then banner
    assert list(CHECKS)[-1] == "banner"


# ---- upwatch probe ----

def test_upwatch_probe_runs_a_registered_kind(banner_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the working tree
    path = tmp_path / "upwatch.yaml"
    path.write_text(endpoints_yaml(banner_port))
    assert cli.main(["--config", str(path), "probe", "greeter"]) == 0
    out = capsys.readouterr().out
    assert f"greeter  banner 127.0.0.1:{banner_port}\n  result      OK\n  size        {len(BANNER)} bytes\n" in out
    assert "pass        body contains 'ready'" in out


def test_upwatch_probe_reports_a_failed_check_of_a_registered_kind(
        banner_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "upwatch.yaml"
    path.write_text(endpoints_yaml(banner_port).replace("expect: '220 '", "expect: '421 '"))
    assert cli.main(["--config", str(path), "probe", "greeter"]) == 1
    assert "result      FAIL  protocol: banner b'220 upwatch-test ready\\r\\n' does not start with '421 '" \
        in capsys.readouterr().out


# ---- the scheduler ----

@pytest.fixture
async def writer(pool: AsyncConnectionPool, tmp_path: Path) -> AsyncIterator[BatchWriter]:
    w = BatchWriter(pool, tmp_path / "spool", flush_interval_s=0.05)
    await w.start()
    yield w
    await w.stop()


async def test_the_scheduler_runs_a_registered_kind_and_stores_its_results(
        banner_port: int, writer: BatchWriter, pool: AsyncConnectionPool, database_url: str) -> None:
    endpoints = config.parse(endpoints_yaml(banner_port), "upwatch.yaml", {}).endpoints
    session = http.new_session()
    scheduler = Scheduler(session, writer, location="here", prober="p1")
    try:
        async with pool.connection() as conn:
            report = await sync_endpoints(conn, endpoints)
        assert scheduler.apply(endpoints, report.ids) == (["greeter"], [], [])
        scheduler.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not fetch(database_url, "SELECT 1 FROM probe_results"):
            await asyncio.sleep(0.1)
            await writer.flush()
    finally:
        scheduler.shutdown()
        await scheduler.drain(2.0)
        await session.close()
    await writer.flush()
    rows = fetch(database_url, "SELECT e.name, e.kind, e.target, e.config->>'expect', r.ok, r.response_bytes,"
                               " r.assertions->0->>'actual'"
                               " FROM probe_results r JOIN endpoints e ON e.id = r.endpoint_id")
    assert rows and set(rows) == {("greeter", "banner", f"127.0.0.1:{banner_port}", "220 ", True, len(BANNER),
                                   BANNER.decode().strip())}
