"""Where a replay may go: allowed origins (scheme, host, port) and the addresses behind them.

A replay is an admin-triggered request from inside the network, so the target
must match an origin the service owner declared, and the addresses its name
resolves to must not be link-local, cloud metadata or (unless the service
itself lives on loopback) this machine. The connection then goes to exactly
the addresses that were checked, so a DNS answer cannot change in between.
"""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

DEFAULT_PORTS = {"http": 80, "https": 443}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Cloud instance metadata and host agents that are not link-local themselves.
METADATA = frozenset(ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "168.63.129.16"))
_THIS_NETWORK = ip_network("0.0.0.0/8")
_NAT64 = ip_network("64:ff9b::/96")
_HOST = re.compile(r"[a-z0-9._-]+|[0-9a-f:.]+")

Address = IPv4Address | IPv6Address


class OriginError(ValueError):
    """An allow-list entry or URL that is not an origin; the message says why."""


@dataclass(frozen=True)
class Origin:
    """scheme://host:port, lower-cased, with the default port filled in."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def loopback(self) -> bool:
        """Whether the host is `localhost` or a loopback address literal."""
        if self.host == "localhost" or self.host.endswith(".localhost"):
            return True
        literal = _literal(self.host)
        return literal is not None and _unmapped(literal).is_loopback


def _literal(host: str) -> Address | None:
    try:
        return ip_address(host)
    except ValueError:
        return None


def _unmapped(address: Address) -> Address:
    """An IPv4 address hidden in IPv6 (mapped, or NAT64) as itself, so checks see what is reached."""
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def origin_of(url: str) -> Origin:
    """The origin of an absolute http(s) URL, host as aiohttp will look it up (IDNA); OriginError otherwise."""
    try:
        parsed = URL(url)
        port = parsed.port
    except ValueError as e:
        raise OriginError(f"{url!r} is not a valid URL: {e}") from None
    if parsed.scheme not in DEFAULT_PORTS or not parsed.raw_host:
        raise OriginError("must be an absolute http:// or https:// URL")
    if parsed.user is not None or parsed.password is not None:
        raise OriginError("must not contain credentials (user:password@)")
    return Origin(parsed.scheme, parsed.raw_host.lower().rstrip("."), port or DEFAULT_PORTS[parsed.scheme])


def allowed_entry(entry: str) -> list[Origin]:
    """The origins one allow-list entry stands for: `scheme://host[:port]` is that origin;
    `host:port` is http and https on that port; a bare `host` is http:80 and https:443."""
    if "://" in entry:
        found = origin_of(entry)
        if URL(entry).path not in ("", "/") or URL(entry).query_string:
            raise OriginError(f"{entry!r}: an origin has no path or query")
        return [found]
    try:
        parsed = URL("http://" + entry)
    except ValueError as e:
        raise OriginError(f"{entry!r} is not host[:port]: {e}") from None
    if (not parsed.raw_host or parsed.path not in ("", "/") or parsed.query_string or parsed.user is not None
            or entry.endswith("/")):
        raise OriginError(f"{entry!r} is not host[:port] or scheme://host[:port]")
    host = parsed.raw_host.lower().rstrip(".")
    if not _HOST.fullmatch(host):
        raise OriginError(f"{entry!r}: {host!r} is not a host name or address")
    if parsed.explicit_port is not None:
        return [Origin("http", host, parsed.explicit_port), Origin("https", host, parsed.explicit_port)]
    return [Origin(s, host, p) for s, p in DEFAULT_PORTS.items()]


def allowed_origins(service: dict[str, Any]) -> list[Origin]:
    """The origins a replay of this service's logs may call: its allow-list, else its base_url's origin."""
    if service.get("allowed_hosts"):
        return [o for entry in service["allowed_hosts"] for o in allowed_entry(entry)]
    if service.get("base_url"):
        return [origin_of(service["base_url"])]
    return []


def allowed_methods(service: dict[str, Any]) -> frozenset[str]:
    """Safe methods always; others only as the service opted in to (`replay_methods`)."""
    return SAFE_METHODS | {m.upper() for m in service.get("replay_methods") or ()}


def refused_address(address: Address, *, loopback_ok: bool) -> str | None:
    """Why a replay must not connect to `address`, or None."""
    seen = _unmapped(address)
    if seen in METADATA:
        return "a cloud metadata address"
    if seen.is_link_local:
        return "a link-local address"
    if seen.is_unspecified or seen.is_multicast or (isinstance(seen, IPv4Address) and seen in _THIS_NETWORK):
        return "not a unicast host address"
    if seen.is_loopback and not loopback_ok:
        return "a loopback address, allowed only when the service's base_url is loopback"
    return None


async def resolve(host: str, port: int) -> list[ResolveResult]:
    """Every address `host` resolves to (an address literal: itself); OSError if it does not resolve."""
    literal = _literal(host)
    if literal is not None:
        family = socket.AF_INET6 if isinstance(literal, IPv6Address) else socket.AF_INET
        return [ResolveResult(hostname=host, host=str(literal), port=port, family=family, proto=0,
                              flags=socket.AI_NUMERICHOST)]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    results: list[ResolveResult] = []
    for family, _, proto, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):  # only IP addresses can be checked and pinned
            results.append(ResolveResult(hostname=host, host=str(sockaddr[0]).split("%")[0], port=port,
                                         family=family, proto=proto, flags=socket.AI_NUMERICHOST))
    return results


def check_addresses(host: str, results: list[ResolveResult], *, loopback_ok: bool) -> str | None:
    """Why any of `host`'s addresses is refused (all must pass: the connector may pick any), or None."""
    if not results:
        return f"{host} resolves to no address"
    for result in results:
        reason = refused_address(ip_address(result["host"]), loopback_ok=loopback_ok)
        if reason:
            return f"{host} resolves to {result['host']}, {reason}"
    return None


class PinnedResolver(AbstractResolver):
    """Answers only for the checked host, with the checked addresses (no second lookup to race)."""

    def __init__(self, host: str, results: list[ResolveResult]):
        self.host = host
        self.results = results

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if host.lower().rstrip(".") != self.host:
            raise OSError(f"replay may only connect to {self.host}, not {host}")
        wanted = [r for r in self.results if family in (socket.AF_UNSPEC, r["family"])]
        return [{**r, "port": port or r["port"]} for r in wanted]

    async def close(self) -> None:
        return None
