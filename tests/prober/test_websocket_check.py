"""The websocket check against a real aiohttp WebSocket server on 127.0.0.1 (plain and TLS)."""

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from prober import checks
from prober.checks import http
from tests.prober import certs, targets
from tests.prober.test_prober_cli import upwatch
from upwatch import cli
from upwatch.config.endpoints import Endpoint
from upwatch.masking import masking

SEEN = web.AppKey("seen", list)


async def replies(request: web.Request) -> web.WebSocketResponse:
    """Answers `status` with a JSON document and echoes anything else; notes what it got."""
    ws = web.WebSocketResponse(protocols=("upwatch.v1",))
    await ws.prepare(request)
    request.app[SEEN].append({"headers": dict(request.headers), "messages": []})
    async for msg in ws:
        request.app[SEEN][-1]["messages"].append(msg.data)
        if msg.data == "status":
            await ws.send_str(json.dumps({"status": "ok", "clients": 3}))
        elif msg.data == "token?":
            await ws.send_str(request.headers.get("X-Token", "none"))
        else:
            await ws.send_str(msg.data)
    return ws


async def greets(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_str("hello")
    async for _ in ws:
        pass
    return ws


async def silent(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for _ in ws:  # reads (so a close is answered), never replies
        pass
    return ws


async def hangs_up(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.receive()
    await ws.close(code=1011, message=b"backend gone")
    return ws


async def floods(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_bytes(b"x" * 4096)
    async for _ in ws:
        pass
    return ws


async def denies(request: web.Request) -> web.Response:
    return web.Response(status=403, text="no")


def ws_app() -> web.Application:
    app = web.Application()
    app[SEEN] = []
    app.router.add_routes([web.get("/ws", replies), web.get("/greet", greets), web.get("/silent", silent),
                           web.get("/hangup", hangs_up), web.get("/flood", floods), web.get("/deny", denies)])
    return app


def endpoint(url: str, **fields: Any) -> Endpoint:
    return Endpoint.model_validate({"name": "t", "kind": "websocket", "url": url, "timeout": "2s", **fields})


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    s = http.new_session()
    yield s
    await s.close()


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, web.Application]]:
    app = ws_app()
    async with targets.serve(app) as base:
        yield base.replace("http://", "ws://"), app


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> certs.Certs:
    return certs.make(tmp_path_factory.mktemp("certs"))


async def test_websocket_check_sends_a_message_and_asserts_on_the_json_reply(
        session: aiohttp.ClientSession, server: tuple[str, web.Application]) -> None:
    base, app = server
    result = await checks.run(endpoint(f"{base}/ws", send="status", subprotocols=["upwatch.v1"],
                                       headers={"X-Token": "t1"}, expect_regex=r'"status": "ok"',
                                       assertions=["[CONNECTED] == true", "[BODY].status == ok",
                                                   "[BODY].clients >= 2"]), session)
    assert result.ok, result.error
    assert [a.actual for a in result.assertions] == ["true", "ok", "3"]
    reply = json.dumps({"status": "ok", "clients": 3}).encode()
    assert result.details == {"handshake_status": 101, "handshake_ms": result.details["handshake_ms"],
                              "subprotocol": "upwatch.v1", "reply_bytes": len(reply)}
    assert result.status_code == 101 and result.response_bytes == len(reply)
    assert result.dns_ms is not None and result.connect_ms is not None and result.tls_ms is None
    assert result.ttfb_ms is not None and result.latency_ms is not None and result.ttfb_ms <= result.latency_ms
    assert app[SEEN][0]["messages"] == ["status"] and app[SEEN][0]["headers"]["X-Token"] == "t1"


async def test_websocket_check_reads_a_greeting_when_an_assertion_needs_the_body(
        session: aiohttp.ClientSession, server: tuple[str, web.Application]) -> None:
    base, _ = server
    result = await checks.run(endpoint(f"{base}/greet", assertions=["[BODY] == hello"]), session)
    assert result.ok, result.error
    assert result.details is not None and result.details["reply_bytes"] == 5


async def test_websocket_check_without_message_checks_the_handshake_only(
        session: aiohttp.ClientSession, server: tuple[str, web.Application]) -> None:
    base, _ = server
    result = await checks.run(endpoint(f"{base}/silent", assertions=["[CONNECTED] == true"]), session)
    assert result.ok, result.error
    assert result.ttfb_ms is None and result.response_bytes is None
    assert result.details is not None and "reply_bytes" not in result.details
    assert result.details["handshake_status"] == 101


async def test_websocket_check_over_tls_times_the_handshake_and_reads_the_certificate(
        session: aiohttp.ClientSession, tls: certs.Certs) -> None:
    context = targets.server_context(*map(str, tls.good))
    async with targets.serve(ws_app(), ssl_context=context) as base:
        url = base.replace("https://", "wss://")
        trusted = await checks.run(endpoint(f"{url}/ws", send="ping", expect="ping", ca_file=str(tls.ca),
                                            assertions=["[CERTIFICATE_EXPIRATION] > 48h"]), session)
        untrusted = await checks.run(endpoint(f"{url}/ws", send="ping"), session)
        unverified = await checks.run(endpoint(f"{url}/ws", send="ping", verify_tls=False), session)
    assert trusted.ok, trusted.error
    assert trusted.tls_ms is not None and trusted.cert_not_after is not None
    assert untrusted.error_kind == "tls" and untrusted.error is not None
    assert untrusted.error.startswith("certificate rejected")
    assert unverified.ok, unverified.error


@pytest.mark.parametrize(("path", "fields", "kind", "message"), [
    ("/deny", {}, "protocol", "handshake rejected with HTTP 403"),
    ("/silent", {"send": "status", "timeout": "0.5s"}, "timeout",
     "timeout after 0.5s waiting for the first message"),
    ("/ws", {"send": "pong", "expect": "ping"}, "assertion", "expect: first message 'pong' is not 'ping'"),
    ("/ws", {"send": "status", "expect_regex": "^down"}, "assertion",
     """expect_regex: first message '{"status": "ok", "clients": 3}' does not match /^down/"""),
    ("/ws", {"send": "status", "assertions": ["[BODY].status == down"]}, "assertion",
     "[BODY].status == down: expected == down, got ok"),
    ("/hangup", {"send": "status"}, "closed",
     "server closed the connection before the first message (close code 1011)"),
    ("/flood", {"expect": "x", "max_message_bytes": 1024}, "body_too_large",
     "first message larger than max_message_bytes=1024"),
], ids=["handshake-rejected", "no-reply", "wrong-reply", "regex-mismatch", "assertion", "closed", "too-large"])
async def test_websocket_failures_are_typed(session: aiohttp.ClientSession, server: tuple[str, web.Application],
                                            path: str, fields: dict[str, Any], kind: str, message: str) -> None:
    base, _ = server
    result = await checks.run(endpoint(base + path, **fields), session)
    assert not result.ok
    assert (result.error_kind, result.error) == (kind, message)
    assert result.latency_ms is not None


async def test_websocket_check_on_a_pooled_connection_reports_no_connect_phases() -> None:
    """With prober.reuse_connections (the default is a fresh connection per probe, where this cannot happen)."""
    app = ws_app()
    app.router.add_get("/ok", targets.ok)
    session = http.new_session(reuse_connections=True)
    try:
        async with targets.serve(app) as base:
            page = await checks.run(Endpoint.model_validate({"name": "page", "url": f"{base}/ok"}), session)
            pooled = await checks.run(endpoint(base.replace("http", "ws") + "/ws", send="status"), session)
            fresh = await checks.run(endpoint(base.replace("http", "ws") + "/ws", send="status"), session)
    finally:
        await session.close()
    assert page.ok and pooled.ok and fresh.ok, (page.error, pooled.error, fresh.error)
    assert (pooled.dns_ms, pooled.connect_ms, pooled.tls_ms) == (None, None, None)  # the page's keep-alive connection
    assert pooled.details is not None and pooled.details["handshake_status"] == 101
    assert fresh.dns_ms is not None and fresh.connect_ms is not None  # the upgraded one was not given back


async def test_websocket_rejected_handshake_keeps_its_status(
        session: aiohttp.ClientSession, server: tuple[str, web.Application]) -> None:
    base, _ = server
    result = await checks.run(endpoint(f"{base}/deny"), session)
    assert result.status_code == 403 and result.details == {"handshake_status": 403,
                                                            "handshake_ms": result.details["handshake_ms"]}


async def test_websocket_check_reports_a_refused_connection(session: aiohttp.ClientSession) -> None:
    port = targets.closed_port()
    result = await checks.run(endpoint(f"ws://127.0.0.1:{port}/ws", send="status"), session)
    assert not result.ok and result.error_kind == "connect"
    assert result.error is not None and result.error.startswith(f"cannot connect to 127.0.0.1:{port}")


async def test_websocket_connection_is_closed_cleanly(session: aiohttp.ClientSession) -> None:
    closed: asyncio.Queue[int | None] = asyncio.Queue()

    async def noting(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_str(msg.data)
        await closed.put(ws.close_code)
        return ws

    app = web.Application()
    app.router.add_get("/ws", noting)
    async with targets.serve(app) as base:
        result = await checks.run(endpoint(base.replace("http", "ws") + "/ws", send="hi", expect="hi"), session)
        code = await asyncio.wait_for(closed.get(), 5)
    assert result.ok, result.error
    assert code == 1000


def test_websocket_options_mask_secrets_in_what_is_stored() -> None:
    options = endpoint("ws://u:pw@example.test/ws?token=abc", headers={"Authorization": "Bearer x"},
                       send=json.dumps({"op": "auth", "password": "hunter2"})).options
    stored = options.stored(masking())
    assert stored["url"] == "ws://***@example.test/ws?token=***"
    assert stored["headers"] == {"Authorization": "***"}
    assert "hunter2" not in stored["send"] and json.loads(stored["send"])["op"] == "auth"


async def test_upwatch_probe_runs_a_websocket_endpoint(tmp_path: Path,
                                                       server: tuple[str, web.Application]) -> None:
    base, _ = server
    config = tmp_path / "upwatch.yaml"
    config.write_text(f"endpoints:\n  - name: feed\n    kind: websocket\n    url: {base}/ws\n    send: status\n"
                      f"    assertions: ['[BODY].status == ok']\n")
    code, out, err = await upwatch("--config", str(config), "probe", "feed")
    assert code == 0, err
    assert f"feed  websocket {base}/ws" in out and "result      OK" in out
    assert "handshake status 101" in out and "reply bytes 30" in out
    assert "| ttfb" in out and "pass        [BODY].status == ok" in out


def test_check_config_reports_websocket_option_errors_with_their_lines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "upwatch.yaml"
    bad.write_text("endpoints:\n"
                   "  - name: a\n    kind: websocket\n    url: https://example.test/feed\n"
                   "  - name: b\n    kind: websocket\n    url: ws://example.test/feed\n    expect_regex: '(open'\n"
                   "  - name: c\n    kind: websocket\n    url: ws://example.test/feed\n    expect: x\n"
                   "    expect_regex: x\n"
                   "  - name: d\n    kind: websocket\n    send: hi\n")
    assert cli.main(["--config", str(bad), "check-config"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"{bad}:4: endpoints[0].url: 'https://example.test/feed' must be an absolute ws:// or wss:// URL",
        f"{bad}:8: endpoints[1].expect_regex: '(open' is not a regular expression: "
        "missing ), unterminated subpattern at position 0",
        f"{bad}:9: endpoints[2]: set expect or expect_regex, not both",
        f"{bad}:14: endpoints[3]: url is required for kind websocket",
    ]
