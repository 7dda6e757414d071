"""ICMP check: ping a host (echo requests through icmplib), timing resolve, socket setup and round trips.

An unprivileged ICMP datagram socket is tried first (Linux allows it to the groups in
net.ipv4.ping_group_range), then a raw socket (root or CAP_NET_RAW); when neither opens, the result
is error_kind "permission" with what to change. Never raises for network errors.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import ipaddress
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import icmplib
from icmplib.utils import unique_identifier
from pydantic import Field

from prober.checks.assertions import Observed, evaluate
from prober.checks.base import CheckOptions
from upwatch.durations import PositiveDuration
from upwatch.durations import format as format_duration
from upwatch.records import ProbeResult, Target

if TYPE_CHECKING:
    import aiohttp

PING_GROUP_RANGE = Path("/proc/sys/net/ipv4/ping_group_range")
MAX_PAYLOAD = 65507  # the most an IPv4 datagram carries after the IP and ICMP headers


class Options(CheckOptions):
    host: str = ""
    count: int = Field(default=1, ge=1, le=100)  # blackbox_exporter sends one
    packet_interval: PositiveDuration = Field(default="1s", validate_default=True)
    packet_size: int = Field(default=56, ge=0, le=MAX_PAYLOAD)  # payload bytes, as ping's -s

    @classmethod
    def problem(cls, data: Mapping[str, Any]) -> str | None:
        return None if data.get("host") else "host is required for kind icmp"

    def timeout_problem(self, timeout: dt.timedelta) -> str | None:
        sending = self.packet_interval * (self.count - 1)
        if sending < timeout:
            return None
        return (f"{self.count} packets {format_duration(self.packet_interval)} apart take "
                f"{format_duration(sending)} to send, which does not fit in timeout {format_duration(timeout)}: "
                f"lower count or packet_interval, or raise timeout")

    @property
    def target(self) -> str:
        return self.host

    @property
    def connects_to(self) -> str:
        return self.host


@dataclasses.dataclass
class _Pings:
    """What one run sent and got back."""

    address: str
    rtts_ms: list[float] = dataclasses.field(default_factory=list)
    sent: int = 0
    error: str | None = None  # the last ICMP error answered (unreachable) or the socket's (no route)

    def details(self, socket_kind: str, setup_ms: float) -> dict[str, Any]:
        received = len(self.rtts_ms)
        loss = round(100 * (self.sent - received) / self.sent, 1) if self.sent else 100.0
        out: dict[str, Any] = {"ip": self.address, "socket": socket_kind, "setup_ms": setup_ms,
                               "packets_sent": self.sent, "packets_received": received, "loss_percent": loss}
        if received:  # no round trips, no times (not zeros)
            out.update(rtt_min_ms=round(min(self.rtts_ms), 3), rtt_avg_ms=round(sum(self.rtts_ms) / received, 3),
                       rtt_max_ms=round(max(self.rtts_ms), 3))
        return out


async def run(target: Target[Options], session: aiohttp.ClientSession | None = None) -> ProbeResult:
    """Ping one host `count` times (the shared HTTP session is not used)."""
    started_at, start = dt.datetime.now(dt.UTC), time.perf_counter()
    timeout_s, host = target.timeout.total_seconds(), target.options.host
    try:
        async with asyncio.timeout(timeout_s):
            address = await _resolve(host)
    except TimeoutError:
        return ProbeResult.failed(started_at, "timeout", f"timeout after {timeout_s:g}s resolving {host}",
                                  latency_ms=_ms(start))
    except socket.gaierror as e:
        return ProbeResult.failed(started_at, "dns", f"cannot resolve {host}: {e.strerror}", latency_ms=_ms(start))
    dns_ms = None if address == host else _ms(start)
    opened = time.perf_counter()
    try:
        sock, socket_kind = _open(address)
    except icmplib.SocketPermissionError:
        return ProbeResult.failed(started_at, "permission", permission_message(), dns_ms=dns_ms, latency_ms=_ms(start))
    except icmplib.ICMPSocketError as e:
        return ProbeResult.failed(started_at, "connect", f"cannot open an ICMP socket: {e}", dns_ms=dns_ms,
                                  latency_ms=_ms(start))
    setup_ms = _ms(opened)
    with sock:
        pings = await _ping(sock, address, target.options, start + timeout_s - time.perf_counter())
    return _result(target, started_at, pings, pings.details(socket_kind, setup_ms), dns_ms, _ms(start))


def _result(target: Target[Options], started_at: dt.datetime, pings: _Pings, details: dict[str, Any],
            dns_ms: float | None, elapsed_ms: float) -> ProbeResult:
    """Up when any reply came (and the assertions hold); latency is the average round trip, or on
    failure the time spent."""
    if pings.rtts_ms:
        latency = details["rtt_avg_ms"]
        observed = Observed(now=started_at, latency_ms=latency, connected=True, ip=pings.address)
        return ProbeResult.done(started_at, evaluate(target.assertions, observed), latency_ms=latency,
                                dns_ms=dns_ms, details=details)
    if pings.error is not None:
        return ProbeResult.failed(started_at, "connect", f"{pings.address}: {pings.error}", dns_ms=dns_ms,
                                  latency_ms=elapsed_ms, details=details)
    message = (f"no reply from {pings.address} within {target.timeout.total_seconds():g}s "
               f"({pings.sent} of {target.options.count} packets sent)")
    return ProbeResult.failed(started_at, "timeout", message, dns_ms=dns_ms, latency_ms=elapsed_ms, details=details)


async def _resolve(host: str) -> str:
    """The address to ping: `host` itself when it is one, else the system resolver's first answer."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    return str(infos[0][4][0])


def _open(address: str) -> tuple[icmplib.AsyncSocket, str]:
    """A datagram ICMP socket where this user may open one, else a raw one; raises
    SocketPermissionError when neither is allowed."""
    kind = icmplib.ICMPv6Socket if ipaddress.ip_address(address).version == 6 else icmplib.ICMPv4Socket
    try:
        return icmplib.AsyncSocket(kind(privileged=False)), "datagram"
    except icmplib.SocketPermissionError:
        return icmplib.AsyncSocket(kind(privileged=True)), "raw"


async def _ping(sock: icmplib.AsyncSocket, address: str, options: Options, budget_s: float) -> _Pings:
    """Send `count` echo requests `packet_interval` apart; each waits an equal share of what the
    timeout leaves after the intervals, so an unreachable host costs the timeout, not more."""
    interval_s = options.packet_interval.total_seconds()
    wait_s = (budget_s - interval_s * (options.count - 1)) / options.count
    pings, ident = _Pings(address), unique_identifier()
    if wait_s <= 0:
        return pings
    for sequence in range(options.count):
        if sequence:
            await asyncio.sleep(interval_s)
        request = icmplib.ICMPRequest(address, ident, sequence, payload_size=options.packet_size)
        try:
            sock.send(request)
            pings.sent += 1
            reply = await sock.receive(request, wait_s)
            reply.raise_for_status()
        except icmplib.TimeoutExceeded:
            continue
        except (icmplib.ICMPError, icmplib.ICMPSocketError) as e:  # unreachable, time exceeded, no route
            pings.error = str(e)
        else:
            pings.rtts_ms.append((reply.time - request.time) * 1000)
    return pings


def permission_message() -> str:
    """Why no ICMP socket opened, and the two ways to allow one."""
    try:
        now = " ".join(PING_GROUP_RANGE.read_text().split())
    except OSError:
        now = "unknown"
    return (f"cannot open an ICMP socket: the prober's group (gid {os.getgid()}) is outside "
            f"net.ipv4.ping_group_range ({now}) and it lacks CAP_NET_RAW for a raw socket; allow unprivileged ping "
            f"with sysctl -w net.ipv4.ping_group_range=\"0 2147483647\", or run the prober as root or with CAP_NET_RAW")


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
