import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from prober import checks
from prober.checks import http
from tests.prober import certs, targets
from upwatch.config.endpoints import Endpoint
from upwatch.records import AssertionResult


def endpoint(url: str, **fields: Any) -> Endpoint:
    return Endpoint.model_validate({"name": "t", "url": url, "timeout": "2s", **fields})


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    s = http.new_session()
    yield s
    await s.close()


@pytest.fixture
async def base() -> AsyncIterator[str]:
    async with targets.serve(targets.app()) as url:
        yield url


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> certs.Certs:
    return certs.make(tmp_path_factory.mktemp("certs"))


async def test_successful_check_records_status_size_and_phases(session: aiohttp.ClientSession, base: str) -> None:
    result = await checks.run(endpoint(f"{base}/redirect", assertions=["[BODY].status == UP"]), session)
    assert result.ok and result.error_kind is None
    assert result.status_code == 200 and result.final_url == f"{base}/ok"
    assert result.response_bytes == len(b'{"status": "UP", "items": [1, 2], "data": {"id": 7}}')
    assert result.latency_ms is not None and result.ttfb_ms is not None and result.transfer_ms is not None
    assert result.ttfb_ms <= result.latency_ms and result.tls_ms is None
    assert result.assertions == (AssertionResult("[BODY].status == UP", ok=True, actual="UP"),)


@pytest.mark.parametrize(("path", "fields", "kind", "message"), [
    ("/status/500", {}, "http_status", "status 500 Internal Server Error"),
    ("/loop", {}, "redirect_loop", "more than 10 redirects"),
    ("/cut", {}, "closed", "response body cut short"),
    ("/ok", {"assertions": ["[BODY].status == DOWN", {"header": {"name": "X-Version", "equals": "1.2"}}]},
     "assertion", "[BODY].status == DOWN: expected == DOWN, got UP"),
    ("/redirect", {"follow_redirects": False, "expected_status": 200}, "http_status", "status 302 Found"),
], ids=["500", "redirect-loop", "closed-mid-body", "assertion", "no-follow"])
async def test_failures_are_typed(session: aiohttp.ClientSession, base: str, path: str, fields: dict[str, Any],
                                  kind: str, message: str) -> None:
    result = await http.run(endpoint(base + path, **fields), session)
    assert not result.ok
    assert result.error_kind == kind
    assert result.error is not None and result.error.startswith(message)


async def test_hanging_target_times_out_with_the_configured_timeout(session: aiohttp.ClientSession, base: str) -> None:
    # Behaviour only: how close to 300 ms it fires depends on the machine's load (no clock bounds in tests).
    result = await http.run(endpoint(f"{base}/hang", timeout="300ms"), session)
    assert not result.ok
    assert result.error_kind == "timeout" and result.error == "timeout after 0.3s waiting for the response"


async def test_huge_body_read_stops_at_the_cap(session: aiohttp.ClientSession) -> None:
    application = targets.app()
    async with targets.serve(application) as url:
        result = await http.run(endpoint(f"{url}/big", max_body_bytes=1024 * 1024), session)
    assert result.error_kind == "body_too_large"
    assert result.response_bytes is not None and 1024 * 1024 < result.response_bytes < 2 * 1024 * 1024
    assert "big_sent" not in application[targets.STATS]  # the server never got to send all 50 MB


@pytest.mark.parametrize(("path", "cap", "kind", "size"), [
    ("/ok", 1024, None, 52),  # declared length within the cap: read whole
    ("/ok", 10, "body_too_large", 0),  # declared length past the cap: not read at all
    ("/zipped", 1024 * 1024, "body_too_large", None),  # small on the wire, 2 MiB decompressed
    ("/zipped", 4 * 1024 * 1024, None, 2 * 1024 * 1024),
], ids=["declared-within", "declared-over", "gzip-over", "gzip-within"])
async def test_body_cap_counts_decompressed_bytes(session: aiohttp.ClientSession, base: str, path: str, cap: int,
                                                  kind: str | None, size: int | None) -> None:
    result = await http.run(endpoint(f"{base}{path}", max_body_bytes=cap), session)
    assert result.error_kind == kind, result.error
    if size is not None:
        assert result.response_bytes == size
    else:
        assert result.response_bytes is not None and cap < result.response_bytes <= 2 * 1024 * 1024


async def test_refused_connection(session: aiohttp.ClientSession) -> None:
    port = targets.closed_port()
    result = await http.run(endpoint(f"http://127.0.0.1:{port}/"), session)
    assert result.error_kind == "connect"
    assert result.error == f"cannot connect to 127.0.0.1:{port}: Connect call failed ('127.0.0.1', {port})" \
        or result.error.startswith(f"cannot connect to 127.0.0.1:{port}:")


async def test_name_that_does_not_exist(session: aiohttp.ClientSession) -> None:
    result = await http.run(endpoint("http://upwatch-test.invalid/"), session)
    assert result.error_kind == "dns"
    assert result.error is not None and result.error.startswith("cannot resolve upwatch-test.invalid")


async def test_request_options_are_sent(session: aiohttp.ClientSession, base: str) -> None:
    result = await http.run(endpoint(f"{base}/echo", method="POST", json={"a": 1}, headers={"X-Trace": "t1"},
                                     auth={"bearer": "tok"}, assertions=[
                                         "[BODY].method == POST", '[BODY].body == {"a": 1}',
                                         "[BODY].headers.X-Trace == t1", "[BODY].headers.Authorization == Bearer tok"]),
                             session)
    assert result.ok, result.assertions
    basic = await http.run(endpoint(f"{base}/echo", auth={"basic": {"username": "u", "password": "p"}},
                                    assertions=["[BODY].headers.Authorization == Basic dTpw"]), session)
    assert basic.ok, basic.assertions


async def test_tls_phases_and_certificate_expiry(session: aiohttp.ClientSession, tls: certs.Certs) -> None:
    async with targets.serve(targets.app(), targets.server_context(*map(str, tls.good))) as url:
        probe = endpoint(f"{url}/ok", ca_file=str(tls.ca), assertions=[{"cert_valid_days": 80}])
        first = await http.run(probe, session)
        second = await http.run(probe, session)
    assert first.ok, first.error
    assert first.tls_ms is not None and first.tls_ms > 0 and first.connect_ms is not None
    assert first.cert_not_after is not None
    days_left = (first.cert_not_after - dt.datetime.now(dt.UTC)).days
    assert 88 <= days_left <= 90
    # A fresh connection per probe (the default): the second probe handshakes again.
    assert second.ok and second.tls_ms is not None and second.tls_ms > 0
    assert second.cert_not_after == first.cert_not_after


async def test_reused_connection_keeps_the_certificate_seen_at_its_handshake(tls: certs.Certs) -> None:
    session = http.new_session(reuse_connections=True)
    try:
        async with targets.serve(targets.app(), targets.server_context(*map(str, tls.good))) as url:
            probe = endpoint(f"{url}/ok", ca_file=str(tls.ca))
            first = await http.run(probe, session)
            second = await http.run(probe, session)
    finally:
        await session.close()
    assert first.ok and first.tls_ms is not None and first.tls_ms > 0
    assert second.ok and second.tls_ms == 0 and second.cert_not_after == first.cert_not_after  # connection reused


@pytest.mark.parametrize(("which", "message"), [
    ("self_signed", "certificate rejected: self-signed certificate"),
    ("expired", "certificate rejected: certificate has expired"),
    ("wrong_host", "certificate rejected: IP address mismatch, certificate is not valid for '127.0.0.1'."),
], ids=["self-signed", "expired", "wrong-host"])
async def test_invalid_certificates_are_tls_errors(session: aiohttp.ClientSession, tls: certs.Certs,
                                                  which: str, message: str) -> None:
    cert, key = getattr(tls, which)
    async with targets.serve(targets.app(), targets.server_context(str(cert), str(key))) as url:
        result = await http.run(endpoint(f"{url}/ok", ca_file=str(tls.ca)), session)
    assert result.error_kind == "tls"
    assert result.error == message


async def test_unverified_tls_still_reports_certificate_expiry(session: aiohttp.ClientSession,
                                                               tls: certs.Certs) -> None:
    async with targets.serve(targets.app(), targets.server_context(*map(str, tls.expired))) as url:
        result = await http.run(endpoint(f"{url}/ok", verify_tls=False, assertions=[{"cert_valid_days": 1}]), session)
    assert result.cert_not_after == dt.datetime(2020, 2, 1, tzinfo=dt.UTC)
    assert result.error_kind == "assertion" and result.status_code == 200


async def test_probe_result_maps_onto_a_probe_results_row(session: aiohttp.ClientSession, base: str) -> None:
    result = await http.run(endpoint(f"{base}/ok"), session)
    row = result.to_row(5, location="eu", prober="p1")
    assert row["endpoint_id"] == 5 and row["location"] == "eu" and row["prober"] == "p1"
    assert row["status_code"] == 200 and row["source"] == "active"
    _ = Path
