"""[DOMAIN_EXPIRATION] against a local RDAP server on 127.0.0.1: lookups, failures, the cache, checks that read it."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from prober import checks
from prober.checks import rdap
from prober.checks.assertions import Observed, evaluate
from tests.prober import targets
from tests.prober.test_tls_check import drain, server
from upwatch import cli, conditions
from upwatch.config.endpoints import Endpoint

DAY = dt.timedelta(days=1)


@dataclass
class Registry:
    """What the stub answers per domain, and how often each was asked."""

    answers: dict[str, Any] = field(default_factory=dict)
    asked: Counter[str] = field(default_factory=Counter)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""


def expiring(after: dt.timedelta) -> dict[str, Any]:
    """An RDAP domain answer (RFC 9083) whose expiration event is `after` from now."""
    at = dt.datetime.now(dt.UTC) + after
    return {"objectClassName": "domain", "ldhName": "EXAMPLE", "events": [
        {"eventAction": "registration", "eventDate": "2001-02-03T04:05:06Z"},
        {"eventAction": "expiration", "eventDate": at.isoformat().replace("+00:00", "Z")}]}


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    reg = Registry(answers={
        "later.example": expiring(100 * DAY),
        "soon.example": expiring(dt.timedelta(hours=240, minutes=30)),
        "example.co.uk": expiring(50 * DAY),
        "broken.example": "{not json",
        "noevent.example": {"objectClassName": "domain", "events": [{"eventAction": "registration",
                                                                     "eventDate": "2001-02-03T04:05:06Z"}]},
        "baddate.example": {"events": [{"eventAction": "expiration", "eventDate": "next tuesday"}]},
        "slow.example": "slow", "down.example": 503, "moved.example": "/registry/domain/moved.example",
        "loop.example": "/rdap/domain/loop.example", "ftp.example": "ftp://registry.example/domain/ftp.example",
        "huge.example": {"events": [], "notices": ["x" * rdap.MAX_ANSWER_BYTES]}})

    async def domain(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        reg.asked[name] += 1
        answer = reg.answers.get(name)
        if answer is None:
            return web.json_response({"errorCode": 404, "title": "Not Found"}, status=404)
        if answer == "slow":
            await reg.release.wait()  # released when the test ends, so the handler never outlives it
        if isinstance(answer, int):
            return web.Response(status=answer)
        if isinstance(answer, str) and answer.startswith(("/", "ftp:")):  # a bootstrap service's redirect
            raise web.HTTPFound(answer)
        if isinstance(answer, str):
            return web.Response(text=answer, content_type="application/rdap+json")
        return web.json_response(answer, content_type="application/rdap+json")

    async def registry_server(request: web.Request) -> web.Response:
        return web.json_response(expiring(400 * DAY))

    app = web.Application()
    app.router.add_get("/rdap/domain/{name}", domain)
    app.router.add_get("/registry/domain/{name}", registry_server)
    async with targets.serve(app) as base:
        reg.url = f"{base}/rdap"
        try:
            yield reg
        finally:
            reg.release.set()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def lookups(registry: Registry) -> rdap.Lookups:
    return rdap.Lookups(rdap.Settings(server=registry.url, timeout_s=0.5))


@pytest.fixture
def configured(registry: Registry) -> Iterator[rdap.Lookups]:
    """The process's lookups pointed at the stub, as prober.rdap.server does, and reset afterwards."""
    rdap.LOOKUPS.configure(rdap.Settings(server=registry.url, timeout_s=0.5))
    yield rdap.LOOKUPS
    rdap.LOOKUPS.configure(rdap.Settings())


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("rdap-tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", "k.pem", "-out", "c.pem", "-days", "30", "-subj", "/CN=www.later.example"],
                   cwd=d, check=True, capture_output=True, timeout=30)
    return d / "c.pem", d / "k.pem"


@pytest.fixture
async def tls_port(tls_pair: tuple[Path, Path]) -> AsyncIterator[int]:
    async with server(drain, targets.server_context(str(tls_pair[0]), str(tls_pair[1]))) as port:
        yield port


def tls_endpoint(port: int, name: str, assertions: list[str]) -> Endpoint:
    """A tls endpoint on 127.0.0.1 known by `name` (its server_name): the domain looked up is name's."""
    return Endpoint.model_validate({"name": "site", "kind": "tls", "host": "127.0.0.1", "port": port,
                                    "server_name": name, "verify_tls": False, "timeout": "3s",
                                    "assertions": assertions})


@pytest.mark.parametrize(("host", "domain"), [
    ("www.example.co.uk", "example.co.uk"), ("example.com", "example.com"), ("WWW.Example.COM.", "example.com"),
    ("foo.github.io", "github.io"),  # a private suffix: the registry knows github.io
    ("api.eu.later.example", "later.example"),  # an unknown top-level label counts as one
    ("bücher.example", "xn--bcher-kva.example"), ("co.uk", None)])
def test_the_registered_domain_of_a_host(host: str, domain: str | None) -> None:
    asyncio.run(asyncio.to_thread(rdap.registered_domain, "warm.example"))  # the list loads off the loop
    assert rdap.registered_domain(host) == domain


async def test_the_expiration_event_is_read_and_cached_per_domain(registry: Registry, lookups: rdap.Lookups,
                                                                  session: aiohttp.ClientSession) -> None:
    first = await lookups.expiry("www.later.example", session)
    again = await asyncio.gather(*(lookups.expiry(h, session) for h in ("api.later.example", "later.example")))
    assert first.domain == "later.example" and first.error is None and first.expires_at is not None
    assert 99 * DAY < first.expires_at - dt.datetime.now(dt.UTC) < 101 * DAY
    assert again == [first, first]
    assert registry.asked == Counter({"later.example": 1})


async def test_concurrent_probes_of_one_domain_share_one_lookup(registry: Registry, lookups: rdap.Lookups,
                                                                session: aiohttp.ClientSession) -> None:
    found = await asyncio.gather(*(lookups.expiry(f"h{i}.soon.example", session) for i in range(5)))
    assert len(set(found)) == 1 and found[0].error is None
    assert registry.asked == Counter({"soon.example": 1})


FAILURES = [
    ("gone.example", "RDAP server {url} does not know gone.example (404)"),
    ("slow.example", "RDAP lookup of slow.example timed out after 0.5s"),
    ("broken.example", "RDAP answer for broken.example is not JSON"),
    ("noevent.example", "RDAP answer for noevent.example has no expiration event"),
    ("baddate.example", "RDAP answer for baddate.example: expiration date 'next tuesday' is not an RFC 3339 date"),
    ("down.example", "RDAP server {url} answered 503 for down.example"),
    ("loop.example", "RDAP server {url} redirected loop.example more than 3 times"),
    ("ftp.example", "RDAP server {url} redirected ftp.example to ftp:, which is not followed"),
    ("huge.example", "RDAP answer for huge.example is larger than 1048576 bytes"),
]


@pytest.mark.parametrize(("domain", "error"), FAILURES, ids=[f[0] for f in FAILURES])
async def test_a_failed_lookup_is_an_error_and_is_not_asked_again_at_once(
        registry: Registry, lookups: rdap.Lookups, session: aiohttp.ClientSession, domain: str, error: str) -> None:
    found = await lookups.expiry(f"www.{domain}", session)
    again = await lookups.expiry(domain, session)
    assert found == again == rdap.Expiry(domain, error=error.format(url=registry.url))
    assert registry.asked == Counter({domain: 4 if domain == "loop.example" else 1})


async def test_a_redirect_of_the_server_is_followed(registry: Registry, lookups: rdap.Lookups,
                                                    session: aiohttp.ClientSession) -> None:
    found = await lookups.expiry("www.moved.example", session)
    assert found.expires_at is not None and 399 * DAY < found.expires_at - dt.datetime.now(dt.UTC) < 401 * DAY


async def test_a_refresh_that_fails_keeps_the_known_date(registry: Registry, session: aiohttp.ClientSession) -> None:
    lookups = rdap.Lookups(rdap.Settings(server=registry.url, timeout_s=0.5, cache_ttl_s=0))  # every call refreshes
    known = await lookups.expiry("later.example", session)
    registry.answers["later.example"] = 503
    kept = await lookups.expiry("later.example", session)
    assert kept == known and known.expires_at is not None
    assert registry.asked == Counter({"later.example": 2})


async def test_an_unreachable_server_is_an_error(session: aiohttp.ClientSession) -> None:
    lookups = rdap.Lookups(rdap.Settings(server=f"http://127.0.0.1:{targets.closed_port()}", timeout_s=2))
    found = await lookups.expiry("later.example", session)
    assert found.expires_at is None and found.error is not None
    assert found.error.startswith("RDAP lookup of later.example failed: ClientConnectorError")


def test_failure_text_shows_durations_as_gatus_does() -> None:
    now = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)
    parsed = [conditions.parse(c) for c in ("[DOMAIN_EXPIRATION] > 720h", "[DOMAIN_EXPIRATION] > 86400000",
                                            "[DOMAIN_EXPIRATION] < 2592000000")]
    seen = Observed(now=now, domain=rdap.Expiry("soon.example", expires_at=now + dt.timedelta(hours=240)))
    results = evaluate(parsed, seen)
    assert [(r.ok, r.actual, r.reason) for r in results] == [
        (False, "240h", "expected > 720h, got 240h"), (True, "240h", None), (True, "240h", None)]
    unknown = Observed(now=now, domain=rdap.Expiry("gone.example", error="RDAP server x does not know it (404)"))
    assert evaluate(parsed[:1], unknown)[0].reason == "domain expiration unknown: RDAP server x does not know it (404)"


async def test_a_check_reads_the_domain_expiration(configured: rdap.Lookups, registry: Registry, tls_port: int,
                                                    session: aiohttp.ClientSession) -> None:
    later = tls_endpoint(tls_port, "www.later.example", ["[DOMAIN_EXPIRATION] > 720h", "[CONNECTED] == true"])
    soon = tls_endpoint(tls_port, "shop.soon.example", ["[DOMAIN_EXPIRATION] > 720h"])
    gone = tls_endpoint(tls_port, "www.gone.example", ["[DOMAIN_EXPIRATION] > 720h"])
    results = [await checks.run(e, session) for e in (later, later, soon, gone)]
    assert [r.ok for r in results] == [True, True, False, False]
    assert results[0].assertions[0].actual.startswith(("2399h", "2400h"))
    assert results[2].error_kind == "assertion" and results[2].error is not None
    assert re.fullmatch(r"\[DOMAIN_EXPIRATION\] > 720h: expected > 720h, got 240h(\d+m)?(\d+s)?", results[2].error)
    assert results[3].error == (f"[DOMAIN_EXPIRATION] > 720h: domain expiration unknown: RDAP server {registry.url} "
                                "does not know gone.example (404)")
    assert registry.asked == Counter({"later.example": 1, "soon.example": 1, "gone.example": 1})  # two probes, one ask


async def test_upwatch_probe_looks_up_the_configured_server(registry: Registry, tls_port: int, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "upwatch.yaml"
    config.write_text(f"prober:\n  rdap:\n    server: {registry.url}\n    timeout: 2s\n"
                      f"endpoints:\n  - name: shop\n    kind: tls\n    host: 127.0.0.1\n    port: {tls_port}\n"
                      f"    server_name: shop.soon.example\n    verify_tls: false\n"
                      f"    assertions: ['[DOMAIN_EXPIRATION] > 720h', '[DOMAIN_EXPIRATION] > 48h']\n")
    try:  # the command runs its own event loop: in a thread, while this loop serves RDAP and TLS
        code = await asyncio.to_thread(cli.main, ["--config", str(config), "probe", "shop"])
    finally:
        rdap.LOOKUPS.configure(rdap.Settings())
    out, err = capsys.readouterr()
    assert code == 1, err
    assert re.search(r"result      FAIL  assertion: \[DOMAIN_EXPIRATION\] > 720h: expected > 720h, got 240h", out), out
    assert "pass        [DOMAIN_EXPIRATION] > 48h" in out
    assert registry.asked == Counter({"soon.example": 1})


CHECK_CONFIG = """\
prober:
  rdap:
    server: rdap.example/v1
    timeout: 2m
    cache_ttl: 10s
endpoints:
  - name: by-address
    url: http://192.0.2.7:8080/
    assertions: ['[STATUS] == 200', '[DOMAIN_EXPIRATION] > 720h']
  - name: single-label
    kind: tcp
    host: intranet
    port: 22
    assertions: ['[DOMAIN_EXPIRATION] > 720h']
  - name: resolver
    kind: dns
    host: example.com
    assertions: ['[DOMAIN_EXPIRATION] > 720h']
  - name: fine
    kind: tls
    host: 192.0.2.7
    port: 443
    server_name: www.example.com
    assertions: ['720h < [DOMAIN_EXPIRATION]', '[DOMAIN_EXPIRATION] > 2592000000']
"""


def test_check_config_names_endpoints_without_a_domain_and_bad_rdap_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the working tree
    (tmp_path / "upwatch.yaml").write_text(CHECK_CONFIG)
    assert cli.main(["--config", "upwatch.yaml", "check-config"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "upwatch.yaml:3: prober.rdap.server: 'rdap.example/v1' must be an http:// or https:// base URL such as "
        "https://rdap.org (no query, fragment or credentials)",
        "upwatch.yaml:4: prober.rdap.timeout: must be at most 60s (a lookup delays the probe that waits for it)",
        "upwatch.yaml:5: prober.rdap.cache_ttl: must be at least 1m (RDAP servers limit how often they are asked)",
        "upwatch.yaml:9: endpoints[0].assertions[1]: [DOMAIN_EXPIRATION] needs a host name, and 192.0.2.7 is an "
        "IP address",
        "upwatch.yaml:14: endpoints[1].assertions[0]: [DOMAIN_EXPIRATION] needs a domain name such as example.com, "
        "not 'intranet'",
        "upwatch.yaml:18: endpoints[2].assertions[0]: [DOMAIN_EXPIRATION] does not apply to kind dns (it has no "
        "host name of its own)",
    ]
