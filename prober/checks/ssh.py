"""SSH check: connect to host:port and read the server's identification line (RFC 4253 section 4.2,
`SSH-protoversion-softwareversion comments`), send ours and close, without logging in.

The line is the body assertions see (`[BODY] == pat(SSH-2.0-OpenSSH_9*)`). Never raises for network errors.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field

from prober.checks.assertions import Observed, evaluate
from prober.checks.base import CheckOptions
from upwatch.records import ProbeResult, Target

if TYPE_CHECKING:
    import aiohttp

# Ours: the protocol version we speak and who we are, so the server's log names the prober.
IDENTIFICATION = b"SSH-2.0-upwatch\r\n"
MAX_LINE = 255  # RFC 4253: the identification line is at most 255 characters, CR LF included
MAX_LINES = 50  # lines a server may send before its identification (RFC 4253 allows some)
_LINE = re.compile(r"^SSH-(?P<protocol>[^-\s]+)-(?P<software>[^\s]+)(?: (?P<comments>.*))?$")


class Options(CheckOptions):
    host: str = ""
    port: int = Field(default=22, ge=1, le=65535)

    @classmethod
    def problem(cls, data: Mapping[str, Any]) -> str | None:
        return None if data.get("host") else "host is required for kind ssh"

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connects_to(self) -> str:
        return self.host


class ProtocolError(Exception):
    """What the server sent is not an SSH identification."""


async def run(target: Target[Options], session: aiohttp.ClientSession | None = None) -> ProbeResult:
    """Read one server's identification (the shared HTTP session is not used)."""
    started_at, start = dt.datetime.now(dt.UTC), time.perf_counter()
    opts, timeout_s = target.options, target.timeout.total_seconds()
    dns_ms = connect_ms = None
    try:
        async with asyncio.timeout(timeout_s):
            infos = await asyncio.get_running_loop().getaddrinfo(opts.host, opts.port, type=socket.SOCK_STREAM)
            dns_ms = _ms(start)
            reader, writer = await asyncio.open_connection(*infos[0][4][:2], limit=MAX_LINE)
            connect_ms = round(_ms(start) - dns_ms, 3)
            try:
                line = await _identification(reader)
                writer.write(IDENTIFICATION)  # flushed by close(): a server that hung up already does not matter
            finally:
                writer.close()
    except TimeoutError:
        waited = f"timeout after {timeout_s:g}s {_stage(dns_ms, connect_ms)}"
        return _failed(started_at, start, "timeout", waited, dns_ms, connect_ms)
    except socket.gaierror as e:
        return _failed(started_at, start, "dns", f"cannot resolve {opts.host}: {e.strerror}", None, None)
    except ProtocolError as e:
        return _failed(started_at, start, "protocol", f"{opts.target}: {e}", dns_ms, connect_ms)
    except (asyncio.IncompleteReadError, ConnectionResetError):
        return _failed(started_at, start, "closed", f"{opts.target} closed the connection before its SSH "
                                                    "identification", dns_ms, connect_ms)
    except OSError as e:
        return _failed(started_at, start, "connect", f"cannot connect to {opts.target}: {e.strerror or e}", dns_ms,
                       connect_ms)
    return _result(target, started_at, start, line, dns_ms, connect_ms)


async def _identification(reader: asyncio.StreamReader) -> str:
    """The server's `SSH-...` line, skipping the lines RFC 4253 lets a server send before it."""
    for _ in range(MAX_LINES):
        try:
            raw = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise ProtocolError(f"a line longer than {MAX_LINE} bytes is not an SSH identification") from None
        line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
        if line.startswith("SSH-"):
            return line
    raise ProtocolError(f"no SSH identification in the first {MAX_LINES} lines (the last: {line[:80]!r})")


def _result(target: Target[Options], started_at: dt.datetime, start: float, line: str, dns_ms: float | None,
            connect_ms: float | None) -> ProbeResult:
    latency = _ms(start)
    found = _LINE.match(line)
    if found is None:
        return _failed(started_at, start, "protocol", f"{target.options.target}: {line[:80]!r} is not "
                       "SSH-protoversion-softwareversion", dns_ms, connect_ms)
    details = {"protocol_version": found["protocol"], "software": found["software"]}
    if found["comments"]:
        details["comments"] = found["comments"]
    body = line.encode()
    observed = Observed(now=started_at, latency_ms=latency, body=body, connected=True)
    return ProbeResult.done(started_at, evaluate(target.assertions, observed), dns_ms=dns_ms, connect_ms=connect_ms,
                            latency_ms=latency, response_bytes=len(body), details=details)


def _stage(dns_ms: float | None, connect_ms: float | None) -> str:
    if dns_ms is None:
        return "resolving"
    return "connecting" if connect_ms is None else "waiting for the SSH identification"


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def _failed(started_at: dt.datetime, start: float, kind: str, message: str, dns_ms: float | None,
            connect_ms: float | None) -> ProbeResult:
    return ProbeResult.failed(started_at, kind, message, dns_ms=dns_ms, connect_ms=connect_ms, latency_ms=_ms(start))
