"""Phase timings of one HTTP request (aiohttp TraceConfig), TLS contexts, certificate expiry.

aiohttp traces DNS and connection creation but not the TLS handshake inside
it; an SSLContext subclass notes when the handshake object is created (right
after the TCP connect, in the requesting task), so connect and TLS split.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from upwatch.records import Measured

if TYPE_CHECKING:
    import aiohttp

_CURRENT: contextvars.ContextVar[Timings | None] = contextvars.ContextVar("upwatch_timings", default=None)


@dataclass
class Timings:
    """perf_counter marks of one request (redirect hops add up); *_ms give the phases."""

    start: float
    dns_s: float = 0.0
    connect_s: float = 0.0  # connection creation, including DNS and TLS
    tls_s: float = 0.0
    dns_started: float = 0.0
    conn_started: float = 0.0
    tls_started: float = 0.0
    sent: float = 0.0
    first_byte: float = 0.0
    end: float = 0.0
    ssl_object: ssl.SSLObject | None = None  # of the last handshake; None when the connection was reused
    tls: bool = False  # an https request: tls_ms is 0 on a reused connection, None without TLS

    def activate(self) -> contextvars.Token[Timings | None]:
        return _CURRENT.set(self)

    @staticmethod
    def deactivate(token: contextvars.Token[Timings | None]) -> None:
        _CURRENT.reset(token)

    def phases_ms(self) -> Measured:
        """dns, connect (TCP only), tls, ttfb (request sent -> headers), transfer (body), latency (total)."""
        end = self.end or time.perf_counter()
        return {
            "dns_ms": _ms(self.dns_s),
            "connect_ms": _ms(max(0.0, self.connect_s - self.dns_s - self.tls_s)),
            "tls_ms": _ms(self.tls_s) if self.tls else None,
            "ttfb_ms": _ms(self.first_byte - self.sent) if self.first_byte and self.sent else None,
            "transfer_ms": _ms(end - self.first_byte) if self.first_byte else None,
            "latency_ms": _ms(end - self.start),
        }

    def stage(self) -> str:
        """Where a request that did not finish was: for timeout messages."""
        if self.first_byte:
            return "reading the body"
        if self.sent:
            return "waiting for the response"
        return "connecting"


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _mark(attr: str, total: str | None = None, since: str | None = None) -> Any:
    async def hook(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: object) -> None:
        # aiohttp's ws_connect passes no trace_request_ctx: a websocket check records into its task's Timings
        t: Timings | None = ctx.trace_request_ctx if ctx.trace_request_ctx is not None else _CURRENT.get()
        if t is None:
            return
        now = time.perf_counter()
        if total and since:
            setattr(t, total, getattr(t, total) + now - getattr(t, since))
            if total == "connect_s" and t.tls_started:
                t.tls_s += now - t.tls_started
                t.tls_started = 0.0
        else:
            setattr(t, attr, now)

    return hook


def trace_config() -> aiohttp.TraceConfig:
    """Records into the Timings passed as `trace_request_ctx`, else the one activated in the task."""
    import aiohttp  # where a session is made, not at import (see prober.checks.http)

    tc = aiohttp.TraceConfig()
    tc.on_dns_resolvehost_start.append(_mark("dns_started"))
    tc.on_dns_resolvehost_end.append(_mark("", "dns_s", "dns_started"))
    tc.on_connection_create_start.append(_mark("conn_started"))
    tc.on_connection_create_end.append(_mark("", "connect_s", "conn_started"))
    tc.on_request_headers_sent.append(_mark("sent"))
    tc.on_request_end.append(_mark("first_byte"))
    return tc


class TimedSSLContext(ssl.SSLContext):
    """Notes the start of each TLS handshake in the current request's Timings."""

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        timings = _CURRENT.get()
        obj = super().wrap_bio(*args, **kwargs)
        if timings is not None:
            timings.tls_started = time.perf_counter()
            timings.ssl_object = obj
        return obj


_CONTEXTS: dict[tuple[bool, str, tuple[str, ...]], ssl.SSLContext] = {}


def ssl_context(verify: bool, ca_file: Path | None, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """One shared context per (verify, CA file, ALPN protocols offered); a bad CA file raises OSError/SSLError.
    With ALPN (gRPC's h2) it also refuses TLS below 1.2, as HTTP/2 requires."""
    key = (verify, str(ca_file or ""), alpn)
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        ctx = TimedSSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if alpn:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_alpn_protocols(list(alpn))
        if verify:
            ctx.load_verify_locations(cafile=str(ca_file)) if ca_file else ctx.load_default_certs()
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        _CONTEXTS[key] = ctx
    return ctx


def cert_not_after(ssl_object: ssl.SSLObject | None) -> dt.datetime | None:
    """Expiry of the peer certificate, also when it was not verified (read from its DER)."""
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if cert and "notAfter" in cert:
        return dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(str(cert["notAfter"])), dt.UTC)
    der = ssl_object.getpeercert(binary_form=True)
    return _der_not_after(der) if der else None


def _der_not_after(der: bytes) -> dt.datetime | None:
    """Certificate -> tbsCertificate -> validity -> notAfter, walking just enough DER."""
    try:
        _, body = _tlv(der, 0)  # Certificate SEQUENCE
        _, tbs = _tlv(der, body[0])  # tbsCertificate SEQUENCE
        pos = tbs[0]
        if der[pos] == 0xA0:  # [0] version
            pos = _tlv(der, pos)[1][1]
        for _ in range(3):  # serialNumber, signature, issuer
            pos = _tlv(der, pos)[1][1]
        _, validity = _tlv(der, pos)
        _, before = _tlv(der, validity[0])
        tag, after = _tlv(der, before[1])
        text = der[after[0]:after[1]].decode("ascii")
    except (IndexError, UnicodeDecodeError):
        return None
    fmt = "%y%m%d%H%M%SZ" if tag == 0x17 else "%Y%m%d%H%M%SZ"
    try:
        return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _tlv(der: bytes, pos: int) -> tuple[int, tuple[int, int]]:
    """(tag, (content start, content end)) of the DER element at pos."""
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(der[pos:pos + count], "big")
        pos += count
    return tag, (pos, pos + length)
