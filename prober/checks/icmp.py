"""ICMP check: ping a host (echo requests through icmplib), timing resolve, socket setup and round trips.

An unprivileged ICMP datagram socket is tried first (Linux allows it to the groups in
net.ipv4.ping_group_range), then a raw socket (root or CAP_NET_RAW); when neither opens, the result
is error_kind "permission" with what to change. Never raises for network errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import ipaddress
import os
import socket
import struct
import sys
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
RAW_BUFFER = 4 * 1024 * 1024  # the shared raw socket's receive buffer: thousands of replies at once


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
    ttl: int | None = None  # of the last echo reply, where the socket shows it (raw IPv4)
    error: str | None = None  # the last ICMP error answered (unreachable) or the socket's (no route)

    def details(self, socket_kind: str, setup_ms: float) -> dict[str, Any]:
        received = len(self.rtts_ms)
        loss = round(100 * (self.sent - received) / self.sent, 1) if self.sent else 100.0
        out: dict[str, Any] = {"ip": self.address, "socket": socket_kind, "setup_ms": setup_ms,
                               "packets_sent": self.sent, "packets_received": received, "loss_percent": loss}
        if received:  # no round trips, no times (not zeros)
            out.update(rtt_min_ms=round(min(self.rtts_ms), 3), rtt_avg_ms=round(sum(self.rtts_ms) / received, 3),
                       rtt_max_ms=round(max(self.rtts_ms), 3))
        if self.ttl is not None:
            out["reply_ttl"] = self.ttl
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
        sock = _open(address)
    except icmplib.SocketPermissionError:
        return ProbeResult.failed(started_at, "permission", permission_message(), dns_ms=dns_ms, latency_ms=_ms(start))
    except icmplib.ICMPSocketError as e:
        return ProbeResult.failed(started_at, "connect", f"cannot open an ICMP socket: {e}", dns_ms=dns_ms,
                                  latency_ms=_ms(start))
    setup_ms = _ms(opened)
    try:
        pings = await _ping(sock, address, target.options, start + timeout_s - time.perf_counter())
    finally:
        sock.close()
    return _result(target, started_at, pings, pings.details(sock.kind, setup_ms), dns_ms, _ms(start))


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


def _open(address: str) -> _Datagram | _Raw:
    """A datagram ICMP socket where this user may open one, else the shared raw one; raises
    SocketPermissionError when neither is allowed."""
    version = ipaddress.ip_address(address).version
    try:
        return _Datagram(_FAMILIES[version])
    except icmplib.SocketPermissionError:
        return _Raw.get(version)


class _Datagram:
    """A datagram ICMP socket of one ping: the kernel hands it only its own replies."""

    kind = "datagram"

    def __init__(self, family: Any) -> None:
        self.sock = icmplib.AsyncSocket(family(privileged=False))

    def send(self, request: icmplib.ICMPRequest) -> None:
        self.sock.send(request)

    async def receive(self, request: icmplib.ICMPRequest, wait_s: float) -> tuple[icmplib.ICMPReply, int | None]:
        """The reply, and no TTL: Linux strips the IP header from what a datagram ICMP socket receives
        (it would take IP_RECVTTL and recvmsg, which icmplib does not use)."""
        return await self.sock.receive(request, wait_s), None

    def close(self) -> None:
        self.sock.close()


class _Raw:
    """The raw ICMP socket of one address family, shared by the pings running in one event loop.

    A raw socket gets every ICMP message the host receives: one per ping would have each of them parse
    all the others' replies and, past ~100 at once, drop replies when their buffers fill (false loss).
    One reader hands each reply to the ping waiting for its (id, sequence). A ping holds the socket
    from `get` to `close`; the reader closes it once nobody has held it for IDLE_S."""

    kind = "raw"
    IDLE_S = 0.5

    def __init__(self, key: tuple[asyncio.AbstractEventLoop, int]) -> None:
        self.key = key
        self.sock = icmplib.AsyncSocket(_RAW_FAMILIES[key[1]](privileged=True))
        _tune(self.sock.sock, key[1])
        self.waiting: dict[tuple[int, int], asyncio.Future[tuple[icmplib.ICMPReply, int | None]]] = {}
        self.users = 0
        self.reader = key[0].create_task(self._read())

    @classmethod
    def get(cls, version: int) -> _Raw:
        """The socket for this loop and family, held until `close`."""
        key = (asyncio.get_running_loop(), version)
        found = _RAW.get(key)
        if found is None:
            found = _RAW[key] = cls(key)
        found.users += 1
        return found

    def send(self, request: icmplib.ICMPRequest) -> None:
        self.waiting[(request.id, request.sequence)] = self.key[0].create_future()
        try:
            self.sock.send(request)
        except icmplib.ICMPLibError:
            del self.waiting[(request.id, request.sequence)]
            raise

    async def receive(self, request: icmplib.ICMPRequest, wait_s: float) -> tuple[icmplib.ICMPReply, int | None]:
        """The reply and its TTL (IPv4; None for IPv6, whose raw sockets get no IP header)."""
        try:
            return await asyncio.wait_for(self.waiting[(request.id, request.sequence)], wait_s)
        except TimeoutError:
            raise icmplib.TimeoutExceeded(wait_s) from None
        finally:
            self.waiting.pop((request.id, request.sequence), None)

    def close(self) -> None:
        self.users -= 1

    async def _read(self) -> None:
        try:
            while self.users or self.waiting:
                try:
                    reply = await self.sock.receive(None, self.IDLE_S)
                except icmplib.TimeoutExceeded:
                    continue
                answer = self.waiting.get((reply.id, reply.sequence))
                if answer is not None and not answer.done():
                    answer.set_result((reply, getattr(self.sock, "last_ttl", None)))
        except icmplib.ICMPSocketError as e:
            for answer in self.waiting.values():
                if not answer.done():
                    answer.set_exception(e)
        finally:  # no await between the last look at `users` and leaving the registry
            del _RAW[self.key]
            self.sock.close()


def _tune(sock: socket.socket, version: int) -> None:
    """Let only echo replies and errors about our packets into a raw socket (not, say, the echo
    requests the host itself receives), and give bursts of replies room (forced with CAP_NET_ADMIN)."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):  # ICMP_FILTER / ICMP6_FILTER: a set bit blocks that type
            words = 1 if version == 4 else 8  # struct icmp_filter / icmp6_filter: 32 / 256 bits, host order
            blocked = ~sum(1 << t for t in _PASS[version])
            mask = struct.pack(f"={words}I", *((blocked >> 32 * i) & 0xFFFFFFFF for i in range(words)))
            sock.setsockopt(_SOL_RAW if version == 4 else socket.IPPROTO_ICMPV6, _ICMP_FILTER, mask)
    for option in (getattr(socket, "SO_RCVBUFFORCE", socket.SO_RCVBUF), socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, RAW_BUFFER)
            return
        except OSError:
            continue


# Linux's <linux/icmp.h>, <linux/icmpv6.h>: socket module has no names for them.
_SOL_RAW, _ICMP_FILTER = 255, 1
_FAMILIES: dict[int, Any] = {4: icmplib.ICMPv4Socket, 6: icmplib.ICMPv6Socket}


class _TTLv4Socket(icmplib.ICMPv4Socket):  # type: ignore[misc]  # icmplib has no type hints
    """A raw ICMPv4 socket that keeps the TTL of the last packet it parsed: a raw IPv4 socket receives
    the IP header, whose byte 8 is the TTL (blackbox_exporter's probe_icmp_reply_hop_limit), at no cost."""

    __slots__ = ("last_ttl",)

    def _parse_reply(self, packet: bytes, source: str | None, current_time: float) -> icmplib.ICMPReply | None:
        self.last_ttl = packet[8] if self._privileged and len(packet) > 8 else None
        return super()._parse_reply(packet, source, current_time)


_RAW_FAMILIES: dict[int, Any] = {4: _TTLv4Socket, 6: icmplib.ICMPv6Socket}
# Echo reply, destination unreachable, time exceeded (ICMP; ICMPv6).
_PASS = {4: (0, 3, 11), 6: (129, 1, 3)}
_RAW: dict[tuple[asyncio.AbstractEventLoop, int], _Raw] = {}


async def _ping(sock: _Datagram | _Raw, address: str, options: Options, budget_s: float) -> _Pings:
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
            reply, ttl = await sock.receive(request, wait_s)
            reply.raise_for_status()
        except icmplib.TimeoutExceeded:
            continue
        except (icmplib.ICMPError, icmplib.ICMPSocketError) as e:  # unreachable, time exceeded, no route
            pings.error = str(e)
        else:
            pings.rtts_ms.append((reply.time - request.time) * 1000)
            pings.ttl = ttl if ttl is not None else pings.ttl
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
