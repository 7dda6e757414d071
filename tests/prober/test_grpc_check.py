"""The grpc check against a real grpclib server with the standard health service on 127.0.0.1."""

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from grpclib.health.check import ServiceCheck, ServiceStatus
from grpclib.health.service import OVERALL, Health
from grpclib.server import Server

from prober import checks
from tests.prober import certs, targets
from tests.prober.test_prober_cli import upwatch
from upwatch import cli
from upwatch.config.endpoints import Endpoint

BILLING, SEARCH, SLOW = "upwatch.test.Billing", "upwatch.test.Search", "upwatch.test.Slow"


class Named:
    """A service as grpclib's Health knows it: by the name in its method paths."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __mapping__(self) -> dict[str, Any]:
        return {f"/{self.name}/Call": None}


async def _never() -> bool:
    await asyncio.sleep(30)
    return True


def health() -> Health:
    up, down = ServiceStatus(), ServiceStatus()
    up.set(True)
    down.set(False)
    return Health({OVERALL: [], Named(BILLING): [up], Named(SEARCH): [down],
                   Named(SLOW): [ServiceCheck(_never, check_timeout=30)]})


@asynccontextmanager
async def serve(context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """A grpclib server with the health service; yields its port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = Server([health()])
    await server.start(sock=sock, ssl=context)
    try:
        yield int(sock.getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()
        sock.close()


def endpoint(port: int, **fields: Any) -> Endpoint:
    return Endpoint.model_validate({"name": "t", "kind": "grpc", "host": "127.0.0.1", "port": port, "timeout": "2s",
                                    **fields})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    async with serve() as p:
        yield p


@pytest.fixture(scope="module")
def tls() -> Iterator[certs.Certs]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="upwatch-grpc-certs-") as d:
        yield certs.make(Path(d))


def server_context(pair: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = targets.server_context(str(pair[0]), str(pair[1]))
    ctx.set_alpn_protocols(["h2"])
    return ctx


async def test_grpc_check_reports_a_serving_server(port: int) -> None:
    result = await checks.run(endpoint(port, assertions=["[CONNECTED] == true", "[BODY].status == SERVING"]), None)
    assert result.ok, result.error
    assert result.details == {"serving_status": "SERVING"}
    assert [a.actual for a in result.assertions] == ["true", "SERVING"]
    assert result.connect_ms is not None and result.ttfb_ms is not None and result.latency_ms is not None
    assert result.tls_ms is None and result.cert_not_after is None


async def test_grpc_check_asks_about_a_named_service(port: int) -> None:
    result = await checks.run(endpoint(port, service=BILLING), None)
    assert result.ok, result.error
    assert result.details == {"serving_status": "SERVING"}


@pytest.mark.parametrize(("fields", "kind", "message", "details"), [
    ({"service": SEARCH}, "grpc_status", f"service '{SEARCH}' not serving (status NOT_SERVING)",
     {"serving_status": "NOT_SERVING"}),
    ({"service": "upwatch.test.Nope"}, "grpc_status", "unknown service 'upwatch.test.Nope' (NOT_FOUND)",
     {"grpc_code": "NOT_FOUND"}),
    ({"service": SLOW, "timeout": "0.5s"}, "timeout", "timeout after 0.5s waiting for the health check reply",
     None),
    ({"assertions": ["[BODY].status == NOT_SERVING"]}, "assertion",
     "[BODY].status == NOT_SERVING: expected == NOT_SERVING, got SERVING", {"serving_status": "SERVING"}),
], ids=["not-serving", "unknown-service", "deadline", "assertion"])
async def test_grpc_failures_are_typed(port: int, fields: dict[str, Any], kind: str, message: str,
                                       details: dict[str, str] | None) -> None:
    result = await checks.run(endpoint(port, **fields), None)
    assert not result.ok
    assert (result.error_kind, result.error, result.details) == (kind, message, details)
    assert result.latency_ms is not None


async def test_grpc_check_accepts_another_status_when_told_to(port: int) -> None:
    result = await checks.run(endpoint(port, service=SEARCH, expect_status=["SERVING", "NOT_SERVING"]), None)
    assert result.ok, result.error
    assert result.details == {"serving_status": "NOT_SERVING"}


async def test_grpc_check_reports_nothing_listening() -> None:
    closed = targets.closed_port()
    result = await checks.run(endpoint(closed), None)
    assert (result.ok, result.error_kind) == (False, "connect")
    assert result.error == f"cannot connect to 127.0.0.1:{closed}: Connection refused"


async def test_grpc_check_reports_a_name_that_does_not_resolve() -> None:
    result = await checks.run(endpoint(50051, host="nothing-here.invalid"), None)
    assert (result.ok, result.error_kind) == (False, "dns")
    assert result.error is not None and result.error.startswith("cannot resolve nothing-here.invalid: ")


async def test_grpc_check_reports_a_ca_file_that_is_no_certificate(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    result = await checks.run(endpoint(50051, tls=True, ca_file=str(not_pem)), None)
    assert (result.ok, result.error_kind) == (False, "tls")
    assert result.error is not None and result.error.startswith(f"cannot load CA file '{not_pem}': ")


async def test_grpc_check_over_tls_verifies_the_certificate(tls: certs.Certs) -> None:
    async with serve(server_context(tls.good)) as p:
        trusted = await checks.run(endpoint(p, tls=True, ca_file=str(tls.ca),
                                            assertions=["[CERTIFICATE_EXPIRATION] > 48h"]), None)
        untrusted = await checks.run(endpoint(p, tls=True), None)
        unverified = await checks.run(endpoint(p, tls=True, verify_tls=False), None)
        plaintext = await checks.run(endpoint(p), None)
    assert trusted.ok, trusted.error
    assert trusted.tls_ms is not None and trusted.connect_ms is not None and trusted.cert_not_after is not None
    assert untrusted.error_kind == "tls" and untrusted.error is not None
    assert untrusted.error.startswith("certificate rejected: ")
    assert unverified.ok, unverified.error
    assert (plaintext.error_kind, plaintext.error) == (
        "closed", "connection closed before the reply: Connection lost (a TLS server? set tls: true)")


async def test_grpc_check_verifies_the_server_name_it_is_given(tls: certs.Certs) -> None:
    async with serve(server_context(tls.wrong_host)) as p:
        named = await checks.run(endpoint(p, tls=True, ca_file=str(tls.ca), server_name="other.test"), None)
        by_address = await checks.run(endpoint(p, tls=True, ca_file=str(tls.ca)), None)
    assert named.ok, named.error
    assert by_address.error_kind == "tls" and by_address.error is not None
    assert "IP address mismatch" in by_address.error


async def test_upwatch_probe_runs_a_grpc_endpoint(tmp_path: Path, port: int) -> None:
    config = tmp_path / "upwatch.yaml"
    config.write_text(f"endpoints:\n  - name: api\n    kind: grpc\n    host: 127.0.0.1\n    port: {port}\n"
                      f"    service: {BILLING}\n    assertions: ['[BODY].status == SERVING']\n")
    code, out, err = await upwatch("--config", str(config), "probe", "api")
    assert code == 0, err
    assert f"api  grpc grpc://127.0.0.1:{port}/{BILLING}" in out and "result      OK" in out
    assert "serving status SERVING" in out and "pass        [BODY].status == SERVING" in out
    assert "phases      connect" in out and "| ttfb" in out


def test_check_config_reports_grpc_option_errors_with_their_lines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "upwatch.yaml"
    bad.write_text("endpoints:\n"
                   "  - name: a\n    kind: grpc\n    host: api.test\n"
                   "  - name: b\n    kind: grpc\n    host: api.test\n    port: 50051\n    expect_status: SERVNG\n"
                   "  - name: c\n    kind: grpc\n    host: api.test\n    port: 50051\n    tls: maybe\n")
    assert cli.main(["--config", str(bad), "check-config"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"{bad}:2: endpoints[0]: host and port are required for kind grpc",
        f"{bad}:9: endpoints[1].expect_status[0]: Input should be 'SERVING', 'NOT_SERVING', 'UNKNOWN' or "
        "'SERVICE_UNKNOWN' (got 'SERVNG')",
        f"{bad}:14: endpoints[2].tls: Input should be a valid boolean, unable to interpret input (got 'maybe')",
    ]
