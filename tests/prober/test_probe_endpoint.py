"""GET /probe over real HTTP on the prober's listener, probing real local targets with named modules:
blackbox_exporter's parameters, answers and errors, and who may call it and what it may reach."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from prober import probe
from prober.app import State, build_app, serve
from prober.checks.http import new_session
from prober.metrics import Metrics
from prober.scheduler import Scheduler
from prober.writer import BatchWriter
from tests.prober import dnsserver, targets
from tests.prober.exposition_check import PROMTOOL, families, promtool_check, samples, value
from upwatch import config as configuration
from upwatch.runtime import Runtime

Get = Callable[..., Awaitable[tuple[int, str, Any]]]
HITS = web.AppKey("hits", list)


@asynccontextmanager
async def listener(pool: AsyncConnectionPool, database_url: str, tmp_path: Path, prober_yaml: str,
                   all_extensions: bool = False) -> AsyncIterator[Get]:
    """The prober's listener with `prober:` settings and the /probe extension (every extension the
    listener mounts with `all_extensions`); yields a GET helper returning (status, body, response)."""
    port = targets.closed_port()
    path = tmp_path / "upwatch.yaml"
    path.write_text(f"push: {{listen: '127.0.0.1:{port}'}}\nprober:\n{prober_yaml}")
    runtime = Runtime(configuration.load(path), path, database_url, pool)
    session = new_session()
    writer = BatchWriter(pool, tmp_path / "spool")
    state = State(Scheduler(session, writer, location="lab", prober="p1"), writer, Metrics("lab"))
    app = build_app(runtime, state) if all_extensions else build_app(runtime, state, extensions=[probe.setup])
    runner = await serve(app, "127.0.0.1", port)
    async with aiohttp.ClientSession() as client:

        async def get(params: dict[str, str], headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
            async with client.get(f"http://127.0.0.1:{port}/probe", params=params, headers=headers) as resp:
                return resp.status, await resp.text(), resp

        try:
            yield get
        finally:
            await runner.cleanup()
            await session.close()


@pytest.fixture
async def base() -> AsyncIterator[str]:
    async with targets.serve(targets.app()) as url:
        yield url


@pytest.fixture
async def counted() -> AsyncIterator[tuple[str, list[str]]]:
    """A target that records every request it gets: a refused probe must not reach it."""
    async def hit(request: web.Request) -> web.Response:
        request.app[HITS].append(request.path)
        return web.Response(text="hit")

    app = web.Application()
    app[HITS] = []
    app.router.add_get("/{tail:.*}", hit)
    async with targets.serve(app) as url:
        yield url, app[HITS]


OPEN = """  probe_allowed: [127.0.0.1, localhost]
  modules:
    post_up: {kind: http, method: POST, body: hello, assertions: ["[BODY].body == hello"]}
    short: {kind: http, timeout: 500ms}
    says_down: {kind: http, assertions: [{body_contains: DOWN}]}
"""


@pytest.fixture
async def get(pool: AsyncConnectionPool, database_url: str, tmp_path: Path) -> AsyncIterator[Get]:
    async with listener(pool, database_url, tmp_path, OPEN) as getter:
        yield getter


async def test_http_2xx_probe_answers_in_blackbox_format(get: Get, base: str) -> None:
    status, text, resp = await get({"target": f"{base}/redirect", "module": "http_2xx"})
    assert status == 200 and resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert value(text, "probe_success") == 1
    assert value(text, "probe_http_status_code") == 200
    assert value(text, "probe_http_ssl") == 0
    assert value(text, "probe_duration_seconds") > 0
    assert value(text, "probe_timeout_seconds") == 10  # the endpoint default when the scrape sends no timeout
    assert {s.labels["phase"] for s in samples(text, "probe_http_duration_seconds")} == {
        "resolve", "connect", "tls", "processing", "transfer"}
    found = families(text)
    assert all(f.type == "gauge" and f.documentation for f in found.values())
    assert all(set(s.labels) <= {"phase"} for f in found.values() for s in f.samples)  # instance comes from relabelling
    if PROMTOOL is not None:  # the parser above checks the format everywhere; promtool's lint where installed
        checked = promtool_check(text)
        assert checked.returncode == 0, (checked.stdout, checked.stderr)


async def test_a_failed_probe_is_still_a_200_answer_with_probe_success_0(get: Get, base: str) -> None:
    status, text, _ = await get({"target": f"{base}/status/500", "module": "http_2xx"})
    assert status == 200
    assert value(text, "probe_success") == 0 and value(text, "probe_http_status_code") == 500


async def test_http_2xx_is_the_default_module_and_the_scheme_defaults_to_http(get: Get, base: str) -> None:
    status, text, _ = await get({"target": base.removeprefix("http://") + "/ok"})
    assert status == 200 and value(text, "probe_success") == 1 and value(text, "probe_http_status_code") == 200


async def test_http_2xx_wants_2xx_like_blackbox(get: Get, base: str) -> None:
    _, text, _ = await get({"target": f"{base}/status/302", "module": "http_2xx"})
    assert value(text, "probe_success") == 0  # a 302 without Location is not followed; the endpoint default allows 3xx


async def test_configured_module_sends_its_request_and_checks_its_assertions(get: Get, base: str) -> None:
    _, text, _ = await get({"target": f"{base}/echo", "module": "post_up"})
    assert value(text, "probe_success") == 1
    _, text, _ = await get({"target": f"{base}/ok", "module": "post_up"})  # /ok is GET only: 405
    assert value(text, "probe_success") == 0 and value(text, "probe_http_status_code") == 405


async def test_tcp_connect_probes_host_and_port(get: Get, base: str) -> None:
    port = base.rsplit(":", 1)[1]
    _, text, _ = await get({"target": f"127.0.0.1:{port}", "module": "tcp_connect"})
    assert value(text, "probe_success") == 1 and value(text, "probe_dns_lookup_time_seconds") >= 0
    assert list(samples(text, "probe_http_status_code")) == []
    _, text, _ = await get({"target": f"127.0.0.1:{targets.closed_port()}", "module": "tcp_connect"})
    assert value(text, "probe_success") == 0


async def test_dns_probe_resolves_the_target_name(get: Get) -> None:
    _, text, _ = await get({"target": "localhost", "module": "dns"})
    assert value(text, "probe_success") == 1 and value(text, "probe_dns_query_succeeded") == 1


async def test_scrape_timeout_header_bounds_the_check(get: Get, base: str) -> None:
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": "1.5"}
    _, text, _ = await get({"target": f"{base}/hang", "module": "http_2xx"}, headers)
    assert value(text, "probe_timeout_seconds") == 1.0  # less blackbox's 0.5 s offset
    assert value(text, "probe_success") == 0 and value(text, "probe_http_status_code") == 0
    _, text, _ = await get({"target": f"{base}/ok", "module": "short"}, headers)
    assert value(text, "probe_timeout_seconds") == 0.5  # the module's own, shorter timeout


@pytest.mark.parametrize(("params", "headers", "message"), [
    ({"target": "http://127.0.0.1/", "module": "nope"}, {}, 'Unknown module "nope"'),
    ({"module": "http_2xx"}, {}, "Target parameter is missing"),
    ({"target": "127.0.0.1", "module": "tcp_connect"}, {}, "Target '127.0.0.1' must be host:port for a tcp module"),
    ({"target": "http://127.0.0.1/", "hostname": "a.test"}, {},
     "the hostname parameter is not supported by upwatch's /probe"),
    ({"target": "http://127.0.0.1/"}, {"X-Prometheus-Scrape-Timeout-Seconds": "soon"},
     "X-Prometheus-Scrape-Timeout-Seconds: 'soon' is not a number of seconds"),
], ids=["unknown-module", "missing-target", "tcp-without-port", "hostname", "bad-scrape-timeout"])
async def test_bad_requests_get_400_with_a_message(get: Get, params: dict[str, str], headers: dict[str, str],
                                                   message: str) -> None:
    status, _, resp = await get(params, headers)
    assert status == 400 and resp.headers["Content-Type"].startswith("application/json")
    assert await resp.json() == {"error": message}


async def test_by_default_no_target_may_be_probed(pool: AsyncConnectionPool, database_url: str, tmp_path: Path,
                                                  counted: tuple[str, list[str]]) -> None:
    url, hits = counted
    async with listener(pool, database_url, tmp_path, "  location: lab\n") as get:
        status, _, resp = await get({"target": f"{url}/x", "module": "http_2xx"})
        assert status == 403
        assert await resp.json() == {"error": "target host '127.0.0.1' is not in prober.probe_allowed"}
    assert hits == []


async def test_a_name_is_allowed_by_name_only(pool: AsyncConnectionPool, database_url: str, tmp_path: Path,
                                              counted: tuple[str, list[str]]) -> None:
    url, hits = counted
    port = url.rsplit(":", 1)[1]
    async with listener(pool, database_url, tmp_path, "  probe_allowed: [127.0.0.0/8]\n") as get:
        status, text, _ = await get({"target": f"{url}/by-address"})
        assert status == 200 and value(text, "probe_success") == 1
        status, _, resp = await get({"target": f"http://localhost:{port}/by-name"})  # resolves into 127/8: not enough
        assert status == 403
        assert await resp.json() == {"error": "target host 'localhost' is not in prober.probe_allowed"}
    assert hits == ["/by-address"]


async def test_callers_outside_probe_callers_are_refused(pool: AsyncConnectionPool, database_url: str, tmp_path: Path,
                                                         counted: tuple[str, list[str]]) -> None:
    url, hits = counted
    async with listener(pool, database_url, tmp_path, "  probe_allowed: ['*']\n  probe_callers: [10.0.0.0/8]\n") as get:
        status, _, resp = await get({"target": f"{url}/x"})
        assert status == 403 and await resp.json() == {"error": "caller 127.0.0.1 is not in prober.probe_callers"}
    assert hits == []


ACCESS = {"probe_allowed": ["10.0.0.0/8", "2001:db8::/32", "api.example.com", "*.internal.test"],
          "probe_callers": ["127.0.0.1"]}


@pytest.mark.parametrize(("host", "allowed"), [
    ("10.1.2.3", True), ("11.0.0.1", False), ("::ffff:10.0.0.1", True), ("[2001:db8::1]", True), ("2001:db9::1", False),
    ("api.example.com", True), ("API.Example.com.", True), ("www.example.com", False), ("a.internal.test", True),
    ("a.b.internal.test", True), ("internal.test", False), ("evilinternal.test", False), ("localhost", False),
    ("2130706433", False), ("10.1", False),
], ids=str)
def test_target_allow_list(host: str, allowed: bool) -> None:
    from upwatch.config.prober import Prober

    assert probe.Access.of(Prober.model_validate(ACCESS)).target_allowed(host) is allowed


@pytest.mark.parametrize(("remote", "allowed"), [("127.0.0.1", True), ("::ffff:127.0.0.1", True), ("127.0.0.2", False),
                                                 ("::1", False), (None, False)], ids=str)
def test_caller_allow_list(remote: str | None, allowed: bool) -> None:
    from upwatch.config.prober import Prober

    assert probe.Access.of(Prober.model_validate(ACCESS)).caller_allowed(remote) is allowed


async def test_a_failed_body_pattern_sets_probe_failed_due_to_regex(get: Get, base: str) -> None:
    _, text, _ = await get({"target": f"{base}/ok", "module": "says_down"})
    assert value(text, "probe_success") == 0 and value(text, "probe_failed_due_to_regex") == 1
    _, text, _ = await get({"target": f"{base}/ok", "module": "http_2xx"})
    assert value(text, "probe_success") == 1 and value(text, "probe_failed_due_to_regex") == 0


async def test_the_prober_listener_mounts_probe(pool: AsyncConnectionPool, database_url: str, tmp_path: Path,
                                               base: str) -> None:
    async with listener(pool, database_url, tmp_path, "  probe_allowed: [127.0.0.1]\n", all_extensions=True) as get:
        status, text, _ = await get({"target": f"{base}/ok"})
    assert status == 200 and value(text, "probe_success") == 1


async def test_a_refused_target_is_logged_without_its_credentials(get: Get, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="prober.probe")
    status, _, resp = await get({"target": "http://probe-user:hunter2@[bad/"})
    assert status == 400 and "hunter2" in (await resp.json())["error"]  # the caller's own input, told back to it
    assert "probe refused status=400" in caplog.text and "hunter2" not in caplog.text


@pytest.mark.parametrize("spelling", ["http://evil.test\\@127.0.0.1:{port}/", "http://127.0.0.1:{port}\\@evil.test/",
                                      "http://2130706433:{port}/", "http://0:{port}/", "http://127.1:{port}/"],
                         ids=["backslash-before", "backslash-after", "integer", "zero", "short"])
async def test_tricky_spellings_do_not_pass_the_allow_list(pool: AsyncConnectionPool, database_url: str,
                                                           tmp_path: Path, counted: tuple[str, list[str]],
                                                           spelling: str) -> None:
    url, hits = counted
    async with listener(pool, database_url, tmp_path, "  probe_allowed: [127.0.0.1/32]\n") as get:
        status, _, _ = await get({"target": spelling.format(port=url.rsplit(":", 1)[1])})
    assert status in (400, 403) and hits == []


async def test_icmp_module_pings_the_target_and_answers_blackbox_icmp_families(get: Get) -> None:
    status, text, _ = await get({"target": "127.0.0.1", "module": "icmp"})
    assert status == 200 and value(text, "probe_success") == 1
    phases = {s.labels["phase"]: s.value for s in samples(text, "probe_icmp_duration_seconds")}
    assert set(phases) == {"resolve", "setup", "rtt"} and phases["rtt"] > 0 and phases["resolve"] == 0  # an address
    assert families(text)["probe_icmp_duration_seconds"].type == "gauge"
    _, text, _ = await get({"target": "localhost", "module": "icmp"})
    assert value(text, "probe_success") == 1 and value(text, "probe_dns_lookup_time_seconds") > 0
    if PROMTOOL is not None:
        checked = promtool_check(text)
        assert checked.returncode == 0, (checked.stdout, checked.stderr)


ICMP = """  probe_allowed: [127.0.0.1, "*.invalid"]
  modules:
    icmp3: {kind: icmp, count: 3, packet_interval: 1s}
"""


async def test_icmp_module_failures_are_probe_success_0_or_a_400_naming_the_timeout(
        pool: AsyncConnectionPool, database_url: str, tmp_path: Path) -> None:
    async with listener(pool, database_url, tmp_path, ICMP) as get:
        status, text, _ = await get({"target": "nothing-here.invalid", "module": "icmp"})
        assert status == 200 and value(text, "probe_success") == 0
        assert value(text, "probe_icmp_duration_seconds", phase="rtt") == 0
        status, _, resp = await get({"target": "127.0.0.1", "module": "icmp3"},
                                    {"X-Prometheus-Scrape-Timeout-Seconds": "2"})
        assert status == 400 and (await resp.json())["error"] == (
            "Target '127.0.0.1': timeout: 3 packets 1s apart take 2s to send, which does not fit in timeout 1500ms: "
            "lower count or packet_interval, or raise timeout")
        _, text, _ = await get({"target": "127.0.0.1", "module": "icmp3"})
        assert value(text, "probe_success") == 1


async def test_dns_module_with_query_name_asks_the_target_nameserver(pool: AsyncConnectionPool, database_url: str,
                                                                     tmp_path: Path) -> None:
    zone = {("www.test.", "A"): ["192.0.2.1", "192.0.2.2"]}
    yaml = ("  probe_allowed: [127.0.0.1]\n  modules:\n"
            "    www: {kind: dns, query_name: www.test, query_type: A}\n"
            "    gone: {kind: dns, query_name: nothing.test}\n")
    with dnsserver.serve(dnsserver.DnsServer(zone)) as server:
        async with listener(pool, database_url, tmp_path, yaml) as get:
            _, text, _ = await get({"target": f"127.0.0.1:{server.port}", "module": "www"})
            _, gone, _ = await get({"target": f"127.0.0.1:{server.port}", "module": "gone"})
            status, _, resp = await get({"target": "127.0.0.1:99999", "module": "www"})
            error = await resp.json()
    assert value(text, "probe_success") == 1 and value(text, "probe_dns_query_succeeded") == 1
    assert value(text, "probe_dns_answer_rrs") == 2 and value(text, "probe_dns_authority_rrs") == 0
    assert value(text, "probe_dns_additional_rrs") == 0 and value(text, "probe_dns_lookup_time_seconds") >= 0
    # NXDOMAIN is an answer (query succeeded, as in blackbox_exporter) that fails the probe
    assert value(gone, "probe_success") == 0 and value(gone, "probe_dns_query_succeeded") == 1
    assert value(gone, "probe_dns_authority_rrs") == 1
    assert status == 400 and error == {"error": "Target '127.0.0.1:99999': port 99999 is out of range 1-65535"}
    assert server.seen == [("udp", "www.test."), ("udp", "nothing.test.")]
    if PROMTOOL is not None:
        checked = promtool_check(text)
        assert checked.returncode == 0, (checked.stdout, checked.stderr)
