"""UDP check: send one datagram to host:port and wait for a reply, which is the body assertions see.

UDP has no handshake, so "up" is what can be observed: with `expect`, a reply matching it within
the timeout; without, no ICMP port-unreachable (a refused connected socket) before a reply or the
timeout. Never raises for network errors.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from prober.checks.assertions import Observed, evaluate
from prober.checks.base import CheckOptions, Pattern
from upwatch.records import ProbeResult, Target

if TYPE_CHECKING:
    import aiohttp



class Options(CheckOptions):
    host: str = ""
    port: int | None = Field(default=None, ge=1, le=65535)
    send: str = ""  # the payload as text (UTF-8)
    send_hex: str | None = None  # or as hex digits, for binary protocols ("de ad be ef")
    expect: Pattern = None  # a regular expression the reply must match; makes a reply required

    @classmethod
    def problem(cls, data: Mapping[str, Any]) -> str | None:
        if not data.get("host") or not data.get("port"):
            return "host and port are required for kind udp"
        if data.get("send") and data.get("send_hex") is not None:
            return "send and send_hex are two spellings of the payload: give one"
        return None

    @field_validator("send_hex")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                bytes.fromhex(value)
            except ValueError:
                raise ValueError(f"{value!r} is not hex digits (pairs like 'de ad be ef')") from None
        return value

    @property
    def payload(self) -> bytes:
        return self.send.encode() if self.send_hex is None else bytes.fromhex(self.send_hex)

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connects_to(self) -> str:
        return self.host


class _Reply(asyncio.DatagramProtocol):
    """The first datagram or error a connected UDP socket gets."""

    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


async def run(target: Target[Options], session: aiohttp.ClientSession | None = None) -> ProbeResult:
    """Send the payload and wait for the reply (the shared HTTP session is not used)."""
    started_at, start = dt.datetime.now(dt.UTC), time.perf_counter()
    opts, timeout_s = target.options, target.timeout.total_seconds()
    loop, dns_ms, sent_ms = asyncio.get_running_loop(), None, None
    try:
        async with asyncio.timeout(timeout_s):
            infos = await loop.getaddrinfo(opts.host, opts.port, type=socket.SOCK_DGRAM)
            dns_ms = _ms(start)
            address = (str(infos[0][4][0]), int(infos[0][4][1]))
            transport, protocol = await loop.create_datagram_endpoint(_Reply, remote_addr=address)
            try:
                transport.sendto(opts.payload)
                sent_ms = _ms(start)
                reply: bytes | None = await protocol.answer
            finally:
                transport.close()
    except TimeoutError:
        if sent_ms is None or opts.expect is not None:
            return _failed(started_at, start, "timeout", _waited(opts, timeout_s, sent_ms), dns_ms)
        reply = None  # nothing came back, nothing refused: all UDP can tell of a silent service
    except socket.gaierror as e:
        return _failed(started_at, start, "dns", f"cannot resolve {opts.host}: {e.strerror}", None)
    except ConnectionRefusedError:
        return _failed(started_at, start, "connect", f"{opts.target} refused the datagram (ICMP port unreachable: "
                                                     "nothing listens there)", dns_ms)
    except OSError as e:
        return _failed(started_at, start, "connect", f"cannot send to {opts.target}: {e.strerror or e}", dns_ms)
    return _result(target, started_at, start, reply, dns_ms, sent_ms)


def _result(target: Target[Options], started_at: dt.datetime, start: float, reply: bytes | None,
            dns_ms: float | None, sent_ms: float | None) -> ProbeResult:
    expect = target.options.expect
    latency = _ms(start) if reply is not None else sent_ms
    details = {"reply_bytes": 0 if reply is None else len(reply)}
    if reply is not None and expect is not None and not re.search(expect, reply.decode("utf-8", "replace")):
        return ProbeResult.failed(started_at, "protocol", f"the reply does not match expect {expect!r}: "
                                  f"got {reply[:80]!r}", dns_ms=dns_ms, latency_ms=latency,
                                  response_bytes=len(reply), details=details)
    observed = Observed(now=started_at, latency_ms=latency, body=reply, connected=True)
    return ProbeResult.done(started_at, evaluate(target.assertions, observed), dns_ms=dns_ms, latency_ms=latency,
                            response_bytes=None if reply is None else len(reply), details=details)


def _waited(opts: Options, timeout_s: float, sent_ms: float | None) -> str:
    if sent_ms is None:
        return f"timeout after {timeout_s:g}s resolving {opts.host}"
    return f"no reply from {opts.target} within {timeout_s:g}s"


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def _failed(started_at: dt.datetime, start: float, kind: str, message: str, dns_ms: float | None) -> ProbeResult:
    return ProbeResult.failed(started_at, kind, message, dns_ms=dns_ms, latency_ms=_ms(start))
