"""WebSocket check: the upgrade handshake on the shared session, an optional message sent, the first
reply read and matched, phases from the session's trace hooks (prober.checks.timing).

Contract: `run` returns a ProbeResult and never raises for network, TLS or protocol errors.
aiohttp is imported where a connection is made, not when this module is (see prober.checks.http).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from prober.checks.assertions import Observed, evaluate
from prober.checks.base import CaFile, CheckOptions, Pattern
from prober.checks.http import _classify, _oserror  # http's translation of aiohttp's errors, shared
from prober.checks.timing import Timings, cert_not_after, ssl_context
from upwatch.assertions import Assertion, Placeholder
from upwatch.masking import Masking
from upwatch.records import Measured, ProbeResult, Target

if TYPE_CHECKING:
    import aiohttp

# How long a clean close waits for the server's close frame; not counted in the result.
CLOSE_WAIT_S = 1.0


class Options(CheckOptions):
    url: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    subprotocols: tuple[str, ...] = ()
    send: str | None = None  # a text message sent once the handshake is done
    expect: str | None = None  # the first reply must be this text (surrounding whitespace ignored)
    expect_regex: Pattern = None  # ... or contain a match of this regular expression
    verify_tls: bool = True
    ca_file: CaFile = None
    max_message_bytes: int = Field(default=1024 * 1024, ge=1)

    merged_defaults: ClassVar[frozenset[str]] = frozenset({"headers"})

    @classmethod
    def problem(cls, data: Mapping[str, Any]) -> str | None:
        if not data.get("url"):
            return "url is required for kind websocket"
        if data.get("expect") is not None and data.get("expect_regex") is not None:
            return "set expect or expect_regex, not both"
        return None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("ws", "wss") or not parts.hostname:
                raise ValueError(f"{value!r} must be an absolute ws:// or wss:// URL")
        return value

    @property
    def target(self) -> str:
        return self.url

    @property
    def connects_to(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def revalidate(self) -> bool:
        return self.ca_file is not None

    def stored(self, masks: Masking) -> dict[str, Any]:
        data = self.model_dump(mode="json", by_alias=True)
        data["url"] = masks.url(self.url)
        data["headers"] = masks.headers_of(data["headers"])
        data["send"] = masks.body(self.send)
        return data

    def reads_reply(self, assertions: Sequence[Assertion]) -> bool:
        """Whether the check waits for a first message: something is sent or expected, or an assertion reads [BODY]."""
        if self.send is not None or self.expect is not None or self.expect_regex is not None:
            return True
        return any(a.subject.kind == "body"
                   or (isinstance(a.expected, Placeholder) and a.expected.subject.kind == "body") for a in assertions)


@dataclass
class _Exchange:
    """What one check got so far: for the result, and for where a timeout struck."""

    timings: Timings
    handshake_status: int | None = None
    subprotocol: str | None = None
    sent_at: float = 0.0
    replied_at: float = 0.0
    reply: bytes | None = None

    def stage(self) -> str:
        if self.sent_at:
            return "waiting for the first message"
        if self.handshake_status is not None:
            return "sending the message"
        if self.timings.sent:
            return "waiting for the handshake response"
        return "connecting"

    def measured(self) -> Measured:
        t = self.timings
        measured: Measured = {**t.phases_ms(), "transfer_ms": None, "status_code": self.handshake_status,
                              "ttfb_ms": _ms(self.replied_at - self.sent_at) if self.replied_at else None}
        if not t.conn_started:  # a pooled connection was upgraded: no dns/connect/tls of its own to report
            measured["dns_ms"] = measured["connect_ms"] = measured["tls_ms"] = None
        if self.reply is not None:
            measured["response_bytes"] = len(self.reply)
        details: dict[str, Any] = {}
        if self.handshake_status is not None:
            details["handshake_status"] = self.handshake_status
        if t.first_byte and t.sent:
            details["handshake_ms"] = _ms(t.first_byte - t.sent)
        if self.subprotocol:
            details["subprotocol"] = self.subprotocol
        if self.reply is not None:
            details["reply_bytes"] = len(self.reply)
        measured["details"] = details or None
        return measured


async def run(target: Target[Options], session: aiohttp.ClientSession) -> ProbeResult:
    """Probe one WebSocket endpoint."""
    import aiohttp

    started_at = dt.datetime.now(dt.UTC)
    exchange = _Exchange(Timings(start=time.perf_counter(), tls=target.options.url.startswith("wss:")))
    timeout_s = target.timeout.total_seconds()
    token = exchange.timings.activate()
    ws: aiohttp.ClientWebSocketResponse | None = None
    try:
        async with asyncio.timeout(timeout_s):
            ws = await _connect(target.options, session, exchange, timeout_s)
            failure = await _talk(ws, target, exchange)
        exchange.timings.end = time.perf_counter()
        if failure is not None:
            return _failed(started_at, exchange, *failure)
        return _judged(target, started_at, exchange)
    except TimeoutError:
        return _failed(started_at, exchange, "timeout", f"timeout after {timeout_s:g}s {exchange.stage()}")
    except aiohttp.WSServerHandshakeError as e:
        exchange.handshake_status = e.status
        return _failed(started_at, exchange, "protocol", _rejected(e))
    except aiohttp.ClientError as e:
        return _failed(started_at, exchange, *_classify(e))
    except (ssl.SSLError, OSError) as e:
        return _failed(started_at, exchange, "tls" if isinstance(e, ssl.SSLError) else "connect", _oserror(e))
    finally:
        exchange.timings.deactivate(token)
        if ws is not None:
            await ws.close()  # bounded by ws_close; a close the server does not answer is not the check's failure


async def _connect(opts: Options, session: aiohttp.ClientSession, exchange: _Exchange,
                   timeout_s: float) -> aiohttp.ClientWebSocketResponse:
    import aiohttp

    tls: ssl.SSLContext | bool = ssl_context(opts.verify_tls, opts.ca_file) if opts.url.startswith("wss:") else True
    ws = await session.ws_connect(opts.url, headers=opts.headers, protocols=opts.subprotocols, ssl=tls,
                                  max_msg_size=opts.max_message_bytes, autoping=True,
                                  timeout=aiohttp.ClientWSTimeout(ws_close=min(CLOSE_WAIT_S, timeout_s)))
    exchange.handshake_status = 101
    exchange.subprotocol = ws.protocol
    return ws


async def _talk(ws: aiohttp.ClientWebSocketResponse, target: Target[Options],
                exchange: _Exchange) -> tuple[str, str] | None:
    """Send the message and read the first reply, if the check does; (error_kind, message) when that failed."""
    import aiohttp

    opts = target.options
    if not opts.reads_reply(target.assertions):
        return None
    if opts.send is not None:
        await ws.send_str(opts.send)
    exchange.sent_at = time.perf_counter()
    msg = await ws.receive()
    if msg.type is aiohttp.WSMsgType.TEXT:
        exchange.reply = msg.data.encode()
    elif msg.type is aiohttp.WSMsgType.BINARY:
        exchange.reply = msg.data
    else:
        return _no_reply(msg, ws, opts.max_message_bytes)
    exchange.replied_at = time.perf_counter()
    return None


def _no_reply(msg: aiohttp.WSMessage, ws: aiohttp.ClientWebSocketResponse, cap: int) -> tuple[str, str]:
    import aiohttp

    if msg.type is aiohttp.WSMsgType.ERROR:
        error = msg.data
        if isinstance(error, aiohttp.WebSocketError) and error.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG:
            return "body_too_large", f"first message larger than max_message_bytes={cap}"
        return "protocol", f"websocket error: {str(error)[:200] or type(error).__name__}"
    code = ws.close_code if ws.close_code is not None else msg.data
    return "closed", f"server closed the connection before the first message (close code {code})"


def _judged(target: Target[Options], started_at: dt.datetime, exchange: _Exchange) -> ProbeResult:
    opts, measured = target.options, exchange.measured()
    ssl_object = exchange.timings.ssl_object
    observed = Observed(now=started_at, status_code=exchange.handshake_status, latency_ms=measured.get("latency_ms"),
                        body=exchange.reply, connected=True, cert_not_after=cert_not_after(ssl_object))
    measured["cert_not_after"] = observed.cert_not_after
    results = evaluate(target.assertions, observed)
    mismatch = _mismatch(opts, exchange.reply)
    if mismatch is not None:
        return ProbeResult.failed(started_at, "assertion", mismatch, results, **measured)
    return ProbeResult.done(started_at, results, **measured)


def _mismatch(opts: Options, reply: bytes | None) -> str | None:
    """Why the reply is not the expected one, or None when it is (or nothing was expected)."""
    text = (reply or b"").decode("utf-8", "replace")
    shown = text if len(text) <= 200 else text[:197] + "..."
    if opts.expect is not None and text.strip() != opts.expect.strip():
        return f"expect: first message {shown!r} is not {opts.expect!r}"
    if opts.expect_regex is not None and re.search(opts.expect_regex, text) is None:
        return f"expect_regex: first message {shown!r} does not match /{opts.expect_regex}/"
    return None


def _rejected(error: aiohttp.WSServerHandshakeError) -> str:
    if error.status != 101:
        return f"handshake rejected with HTTP {error.status}"
    return f"handshake failed: {error.message.lower()}"  # a 101 with a bad Upgrade, Connection or accept key


def _failed(started_at: dt.datetime, exchange: _Exchange, kind: str, message: str) -> ProbeResult:
    return ProbeResult.failed(started_at, kind, message, **exchange.measured())


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
