"""One DNS query with dnspython over udp (TCP when truncated), tcp, tls (DoT) or https (DoH), and the
system resolver's sources (/etc/hosts, then the first nameserver of /etc/resolv.conf).

Imported by prober.checks.dns when a check runs, not when the config loads (dnspython is not needed
to validate a config). Raises the library's errors; prober.checks.dns turns them into results.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import os
import socket
import ssl
import typing
from dataclasses import dataclass
from pathlib import Path

import dns.asyncbackend
import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename
from dns.exception import DNSException, Timeout

__all__ = ["HOSTS", "Answer", "DNSException", "Server", "Timeout", "ask", "from_hosts", "locate", "query_name",
           "system_server"]

HOSTS = Path("/etc/hosts")
RESOLV_CONF = "/etc/resolv.conf"
DOH_TYPE = "application/dns-message"  # RFC 8484
CLOSE_WAIT_S = 0.5  # for a DoT server's close_notify; a silent one does not hold the probe


@dataclass(frozen=True)
class Server:
    """Where a query goes: an address and port, the name TLS verifies (tls), or the URL (https)."""

    address: str
    port: int
    transport: str
    tls_name: str | None = None
    url: str | None = None

    @property
    def shown(self) -> str:
        if self.url is not None:
            return self.url
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class Answer:
    """A response reduced to what the check stores and asserts on."""

    rcode: str
    answers: list[str]
    answer_count: int
    authority_count: int
    additional_count: int
    via_tcp: bool = False


def query_name(host: str, record_type: str) -> str:
    """The name asked for: absolute, and the reverse-lookup name of an address for PTR."""
    if record_type == "PTR":
        try:
            return str(dns.reversename.from_address(host))
        except (ValueError, dns.exception.SyntaxError):
            pass
    return host if host.endswith(".") else f"{host}."


def from_hosts(host: str, record_type: str) -> Answer | None:
    """The addresses /etc/hosts gives `host` for A or AAAA, as the system resolver ("files dns") would."""
    if record_type not in ("A", "AAAA"):
        return None
    try:
        stat = HOSTS.stat()
    except OSError:
        return None
    found = _hosts(str(HOSTS), stat.st_mtime_ns).get((host.lower().rstrip("."), record_type))
    return None if not found else Answer("NOERROR", sorted(found), len(found), 0, 0)


@functools.lru_cache(maxsize=4)  # keyed by mtime: re-read when the file changes
def _hosts(path: str, mtime_ns: int) -> dict[tuple[str, str], tuple[str, ...]]:
    table: dict[tuple[str, str], list[str]] = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            address = ipaddress.ip_address(fields[0].split("%", 1)[0])
        except ValueError:
            continue
        kind = "A" if address.version == 4 else "AAAA"
        for name in fields[1:]:
            addresses = table.setdefault((name.lower().rstrip("."), kind), [])
            if str(address) not in addresses:
                addresses.append(str(address))
    return {key: tuple(value) for key, value in table.items()}


def system_server(transport: str) -> Server:
    """The first nameserver of /etc/resolv.conf; raises ValueError when there is none."""
    try:
        mtime = os.stat(RESOLV_CONF).st_mtime_ns
    except OSError:
        mtime = 0
    address = _system_nameserver(mtime)
    if address is None:
        raise ValueError(f"no nameserver in {RESOLV_CONF}")
    return Server(address, 53, transport)


@functools.lru_cache(maxsize=4)
def _system_nameserver(mtime_ns: int) -> str | None:
    try:
        resolver = dns.resolver.Resolver(filename=RESOLV_CONF)
    except (dns.resolver.NoResolverConfiguration, OSError):
        return None
    found = [str(n) for n in resolver.nameservers]
    return found[0] if found else None


async def locate(server: Server) -> Server:
    """`server` with an address: a host name (DoT servers are often given by name) resolved now.
    A DoH server is left to the HTTP client, which resolves the URL's host itself."""
    if server.transport == "https":
        return server
    try:
        ipaddress.ip_address(server.address)
        return server
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(server.address, server.port, type=socket.SOCK_STREAM)
    return Server(str(infos[0][4][0]), server.port, server.transport, server.tls_name or server.address, server.url)


async def ask(server: Server, name: str, record_type: str, timeout_s: float, context: ssl.SSLContext | None) -> Answer:
    """Send one query (recursion desired) and return the response; raises dnspython's, OS and TLS errors."""
    request = dns.message.make_query(name, dns.rdatatype.from_text(record_type))
    via_tcp = False
    if server.transport == "udp":
        response, via_tcp = await dns.asyncquery.udp_with_fallback(request, server.address, timeout_s, server.port)
    elif server.transport == "tcp":
        response = await dns.asyncquery.tcp(request, server.address, timeout_s, server.port)
    elif server.transport == "tls":
        response = await _tls(request, server, timeout_s, context or ssl.create_default_context())
    else:
        response = await _https(request, server, timeout_s, context)
    return _answer(response, dns.rdatatype.from_text(record_type), via_tcp)


async def _tls(request: dns.message.Message, server: Server, timeout_s: float,
               context: ssl.SSLContext) -> dns.message.Message:
    """DoT on a socket of our own: dnspython closes its sockets without waiting for the TLS shutdown,
    which leaves the transport open when the event loop ends soon after (`upwatch probe`)."""
    family = socket.AF_INET6 if ":" in server.address else socket.AF_INET
    backend: typing.Any = dns.asyncbackend.get_default_backend()  # make_socket is not annotated
    sock = await backend.make_socket(family, socket.SOCK_STREAM, 0, None, (server.address, server.port), timeout_s,
                                     context, server.tls_name)
    try:
        return await dns.asyncquery.tls(request, server.address, timeout_s, server.port, sock=sock)
    finally:
        await sock.close()
        writer = getattr(sock, "writer", None)  # the asyncio backend's StreamWriter
        if isinstance(writer, asyncio.StreamWriter):
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(CLOSE_WAIT_S):
                    await writer.wait_closed()


async def _https(request: dns.message.Message, server: Server, timeout_s: float,
                 context: ssl.SSLContext | None) -> dns.message.Message:
    """RFC 8484: the query POSTed as application/dns-message. Over aiohttp, which we ship (dnspython's
    own DoH needs httpx), on a session of its own: a fresh connection each probe, as a new client has."""
    import aiohttp

    headers = {"Content-Type": DOH_TYPE, "Accept": DOH_TYPE}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                         timeout=aiohttp.ClientTimeout(total=timeout_s)) as client, \
                client.post(server.url or "", data=request.to_wire(), headers=headers,
                            ssl=context if context is not None else True) as resp:
            if resp.status != 200 or resp.content_type != DOH_TYPE:
                raise ValueError(f"DoH server answered HTTP {resp.status} {resp.content_type}")
            wire = await resp.read()
    except aiohttp.ClientSSLError as e:  # the errors the other transports raise, so one place words them
        raise ssl.SSLError(str(getattr(e, "certificate_error", e))) from e
    except aiohttp.ClientError as e:
        raise ConnectionError(f"{type(e).__name__}: {e}") from e
    return dns.message.from_wire(wire)


def _answer(response: dns.message.Message, rdtype: dns.rdatatype.RdataType, via_tcp: bool) -> Answer:
    # A recursive resolver's answer to an A query may lead with the CNAME chain: those count, but only
    # records of the asked type are the answers (what the system resolver would return).
    texts = sorted(_text(rdata) for rrset in response.answer if rrset.rdtype == rdtype for rdata in rrset)
    return Answer(dns.rcode.to_text(response.rcode()), texts, _count(response.answer), _count(response.authority),
                  _count(response.additional), via_tcp)


def _count(section: list[dns.rrset.RRset]) -> int:
    return sum(len(rrset) for rrset in section)


def _text(rdata: dns.rdata.Rdata) -> str:
    strings = getattr(rdata, "strings", None)
    if rdata.rdtype == dns.rdatatype.TXT and strings is not None:
        # The strings of one record joined and unquoted, as SPF/DKIM readers see them (not dig's "a" "b").
        return b"".join(strings).decode("utf-8", "replace")
    return str(rdata.to_text())
