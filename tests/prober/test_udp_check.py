"""kind udp against real UDP servers on 127.0.0.1 (and ::1): an echo server, one that never answers,
and a port nothing listens on (the kernel answers ICMP port unreachable)."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prober import checks
from upwatch import cli
from upwatch.config.endpoints import Endpoint


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(b"pong " + data, self.client_address)


class _Silent(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        pass


class _UDP6(socketserver.ThreadingUDPServer):
    address_family = socket.AF_INET6


def serve(handler: type[socketserver.BaseRequestHandler], host: str = "127.0.0.1") -> Iterator[int]:
    """A UDP server in a thread (`upwatch probe` runs its own event loop); yields its port."""
    kind = _UDP6 if ":" in host else socketserver.ThreadingUDPServer
    with kind((host, 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()
            thread.join(5)


@pytest.fixture
def echo() -> Iterator[int]:
    yield from serve(_Echo)


@pytest.fixture
def silent() -> Iterator[int]:
    yield from serve(_Silent)


def closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def endpoint(**fields: Any) -> Endpoint:
    return Endpoint.model_validate({"name": "t", "kind": "udp", "host": "127.0.0.1", "timeout": "2s", **fields})


async def test_udp_check_sends_and_matches_the_reply(echo: int) -> None:
    result = await checks.run(endpoint(port=echo, send="ping", expect="^pong ping$",
                                       assertions=["[BODY] == pong ping", "[CONNECTED] == true"]), None)
    assert result.ok, result.error
    assert result.details == {"reply_bytes": 9} and result.response_bytes == 9
    assert [a.ok for a in result.assertions] == [True, True] and result.latency_ms is not None


async def test_udp_check_sends_binary_payloads(echo: int) -> None:
    result = await checks.run(endpoint(port=echo, send_hex="de ad be ef", expect="^pong "), None)
    assert result.ok, result.error
    assert result.details == {"reply_bytes": 9}


async def test_udp_check_over_ipv6() -> None:
    try:
        ports = serve(_Echo, "::1")
        port = next(ports)
    except OSError:
        pytest.skip("no ::1 on this machine")
    try:
        result = await checks.run(endpoint(host="::1", port=port, send="six", expect="six"), None)
    finally:
        ports.close()
    assert result.ok, result.error


async def test_a_reply_that_does_not_match_expect_is_a_protocol_error(echo: int) -> None:
    result = await checks.run(endpoint(port=echo, send="ping", expect="^PONG"), None)
    assert not result.ok and result.error_kind == "protocol"
    assert result.error == "the reply does not match expect '^PONG': got b'pong ping'"


async def test_with_expect_no_reply_is_a_timeout(silent: int) -> None:
    result = await checks.run(endpoint(port=silent, timeout="300ms", send="ping", expect="pong"), None)
    assert not result.ok and result.error_kind == "timeout"
    assert result.error == f"no reply from 127.0.0.1:{silent} within 0.3s"


async def test_without_expect_a_silent_server_is_up_with_no_body(silent: int) -> None:
    result = await checks.run(endpoint(port=silent, timeout="300ms", send="log line"), None)
    assert result.ok, result.error
    assert result.details == {"reply_bytes": 0} and result.response_bytes is None
    failed = await checks.run(endpoint(port=silent, timeout="300ms", assertions=["[BODY] == x"]), None)
    assert not failed.ok and failed.error_kind == "assertion"  # [BODY] needs a reply


@pytest.mark.parametrize("expect", [None, "pong"], ids=["without-expect", "with-expect"])
async def test_icmp_port_unreachable_is_a_refused_connection(expect: str | None) -> None:
    port = closed_udp_port()
    result = await checks.run(endpoint(port=port, send="ping", expect=expect), None)
    assert not result.ok and result.error_kind == "connect"
    assert result.error == f"127.0.0.1:{port} refused the datagram (ICMP port unreachable: nothing listens there)"


async def test_a_name_that_does_not_resolve_is_a_dns_error() -> None:
    result = await checks.run(endpoint(host="nothing-here.invalid", port=53), None)
    assert not result.ok and result.error_kind == "dns"


def test_upwatch_probe_prints_the_reply_size(echo: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "upwatch.yaml"
    path.write_text(f"endpoints:\n  - name: echo\n    kind: udp\n    host: 127.0.0.1\n    port: {echo}\n"
                    f"    send: hello\n    expect: '^pong hello$'\n    timeout: 2s\n")
    assert cli.main(["--config", str(path), "probe", "echo"]) == 0
    out = capsys.readouterr().out
    assert f"echo  udp 127.0.0.1:{echo}\n  result      OK\n  size        10 bytes\n  reply bytes 10\n" in out
    path.write_text(path.read_text().replace(f"port: {echo}", f"port: {closed_udp_port()}"))
    assert cli.main(["--config", str(path), "probe", "echo"]) == 1
    assert "result      FAIL  connect:" in capsys.readouterr().out


@pytest.mark.parametrize(("lines", "message"), [
    ("    send: a\n    send_hex: '61'\n",
     "upwatch.yaml:2: endpoints[0]: send and send_hex are two spellings of the payload: give one"),
    ("    send_hex: xyz\n",
     "upwatch.yaml:6: endpoints[0].send_hex: 'xyz' is not hex digits (pairs like 'de ad be ef')"),
    ("    expect: '(unclosed'\n",
     "upwatch.yaml:6: endpoints[0].expect: '(unclosed' is not a regular expression: missing ), unterminated "
     "subpattern at position 0"),
    ("    port: 70000\n", "upwatch.yaml:5: endpoints[0].port: Input should be less than or equal to 65535 (got 70000)"),
], ids=["send-and-send-hex", "bad-hex", "bad-regex", "bad-port"])
def test_check_config_reports_udp_errors_with_file_and_line(
        lines: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "upwatch.yaml"
    port = "" if "port:" in lines else "    port: 9\n"
    path.write_text("endpoints:\n  - name: u\n    kind: udp\n    host: 127.0.0.1\n" + port + lines)
    assert cli.main(["--config", str(path), "check-config"]) == 1
    assert capsys.readouterr().err.strip().replace(f"{tmp_path}/", "") == message
