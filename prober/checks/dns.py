"""DNS check: one query for `host` and `record_type` to a nameserver (the system resolver by default)
over udp, tcp, tls (DoT) or https (DoH), with dnspython. The answers are the 'body' assertions see,
one per line; the rcode is [DNS_RCODE]. Never raises for network errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from prober.checks.assertions import Observed, evaluate
from prober.checks.base import CaFile, CheckOptions
from upwatch.conditions import DNS_RCODES
from upwatch.records import ProbeResult, Target

if TYPE_CHECKING:
    import aiohttp

    from prober.checks.dnsquery import Answer, Server

RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "NS", "TXT", "SOA", "SRV", "CAA", "PTR")
PORTS = {"udp": 53, "tcp": 53, "tls": 853, "https": 443}
SYSTEM = "system resolver"
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]+))(?::(?P<port>\d{1,5}))?$")


class Options(CheckOptions):
    host: str = ""  # the name to query (kept from the getaddrinfo check); an address for PTR
    record_type: str = "A"
    transport: Literal["udp", "tcp", "tls", "https"] = "udp"  # before nameserver, which is read with it
    # An address, address:port or [v6]:port; a host name (DoT/DoH); an https:// URL (DoH). None: /etc/resolv.conf.
    nameserver: str | None = None
    # The rcodes that count as an answer; "any" leaves the verdict to the assertions, as Gatus does.
    expected_rcode: str | list[str] = Field(default="NOERROR", validate_default=True)
    # A NOERROR response must carry a record of record_type (an empty answer fails, as getaddrinfo did).
    require_answer: bool = True
    verify_tls: bool = True
    ca_file: CaFile = None

    @classmethod
    def problem(cls, data: Mapping[str, Any]) -> str | None:
        if not data.get("host"):
            return "host (the name to query) is required for kind dns"
        transport = data.get("transport", "udp")
        if transport in ("tls", "https") and not data.get("nameserver"):
            return f"transport {transport} needs a nameserver (the system resolver speaks plain DNS)"
        return None

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if value and not _is_address(value) and not _is_name(value):
            raise ValueError(f"{value!r} is not a DNS name (labels of letters, digits, '-' or '_', up to 63 each)")
        return value

    @field_validator("record_type")
    @classmethod
    def _record_type(cls, value: str) -> str:
        if value.upper() not in RECORD_TYPES:
            raise ValueError(f"{value!r} is not supported (use one of {', '.join(RECORD_TYPES)})")
        return value.upper()

    @field_validator("nameserver")
    @classmethod
    def _nameserver(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and "transport" in info.data:  # a bad transport is reported on its own
            parse_nameserver(value, info.data["transport"])
        return value

    @field_validator("expected_rcode")
    @classmethod
    def _expected_rcode(cls, value: str | list[str]) -> str | list[str]:
        names = value.split(",") if isinstance(value, str) else value
        if isinstance(value, str) and value.strip().lower() == "any":
            return "any"
        unknown = [n for n in names if n.strip().upper() not in DNS_RCODES]
        if unknown or not names:
            raise ValueError(f"{', '.join(map(repr, unknown)) or 'nothing'} is not an rcode "
                             f"(use 'any' or some of {', '.join(DNS_RCODES)})")
        return [n.strip().upper() for n in names]

    @property
    def rcodes(self) -> frozenset[str] | None:
        """The rcodes that count as an answer; None for any."""
        if self.expected_rcode == "any":
            return None
        written = self.expected_rcode
        return frozenset([written] if isinstance(written, str) else written)

    @property
    def target(self) -> str:
        where = "" if self.nameserver is None else f" @{self.nameserver}"
        return f"{self.host} {self.record_type}{where}{'' if self.transport == 'udp' else ' ' + self.transport}"

    @property
    def connects_to(self) -> str:
        if self.nameserver is None:
            return SYSTEM
        return parse_nameserver(self.nameserver, self.transport)[0]


def parse_nameserver(text: str, transport: str) -> tuple[str, int, str | None]:
    """(host or address, port, DoH URL) of a nameserver as written; raises ValueError saying what is wrong."""
    if text.lower().startswith("https://"):
        if transport != "https":
            raise ValueError(f"{text!r} is a DoH URL: set transport: https")
        from urllib.parse import urlsplit

        parts = urlsplit(text)
        if not parts.hostname:
            raise ValueError(f"{text!r} has no host")
        return parts.hostname, parts.port or 443, text
    m = _HOST_PORT.match(text.strip())
    if m is None and _is_address(text):  # a bare IPv6 address, no port
        return text, PORTS[transport], _doh_url(text, PORTS[transport], transport)
    host = m and (m.group("v6") or m.group("host"))
    if not m or not host or not (_is_address(host) or _is_name(host)) or (m.group("v6") and not _is_address(host)):
        raise ValueError(f"{text!r} is not an address, address:port, [IPv6]:port, host name or https:// URL")
    port = int(m.group("port") or PORTS[transport])
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 1-65535")
    return host, port, _doh_url(host, port, transport)


def _doh_url(host: str, port: int, transport: str) -> str | None:
    if transport != "https":
        return None
    shown = f"[{host}]" if ":" in host else host
    return f"https://{shown}{'' if port == 443 else f':{port}'}/dns-query"  # RFC 8484's usual path


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_name(text: str) -> bool:
    labels = text[:-1].split(".") if text.endswith(".") else text.split(".")
    return len(text) <= 253 and all(_LABEL.match(label) for label in labels)


async def run(target: Target[Options], session: aiohttp.ClientSession | None = None) -> ProbeResult:
    """Send one query; a response with an expected rcode (and an answer, for NOERROR) is checked against
    the assertions (the shared HTTP session is not used: a DoH probe opens its own connection)."""
    from prober.checks import dnsquery

    opts, timeout_s = target.options, target.timeout.total_seconds()
    started_at, start = dt.datetime.now(dt.UTC), time.perf_counter()
    name = dnsquery.query_name(opts.host, opts.record_type)
    hosts = dnsquery.from_hosts(opts.host, opts.record_type) if opts.nameserver is None else None
    if hosts is not None:
        return _judged(target, started_at, start, hosts, str(dnsquery.HOSTS), "files", name)
    where, ip = SYSTEM, None
    try:
        async with asyncio.timeout(timeout_s):
            server = _server(opts)
            where = server.shown
            server = await dnsquery.locate(server)
            where, ip = server.shown, server.address
            answer = await dnsquery.ask(server, name, opts.record_type, timeout_s, _context(opts))
    except (TimeoutError, dnsquery.Timeout):
        return _failed(started_at, start, "timeout", f"timeout after {timeout_s:g}s asking {where} for {name}", ip)
    except socket.gaierror as e:  # before OSError: it is one
        return _failed(started_at, start, "dns", f"cannot resolve nameserver {where}: {e.strerror}", ip)
    except ssl.SSLError as e:  # before OSError: it is one
        return _failed(started_at, start, "tls", f"TLS with {where} failed: {getattr(e, 'reason', None) or e}", ip)
    except OSError as e:
        return _failed(started_at, start, "connect", f"cannot reach nameserver {where}: {e.strerror or e}", ip)
    except ValueError as e:  # no nameserver in resolv.conf; a reply that is not DNS
        return _failed(started_at, start, "dns", f"{where}: {e}", ip)
    except dnsquery.DNSException as e:
        return _failed(started_at, start, "dns", f"bad answer from {where}: {e}", ip)
    return _judged(target, started_at, start, answer, where, opts.transport, name, ip)


def _server(opts: Options) -> Server:
    from prober.checks import dnsquery

    if opts.nameserver is None:
        return dnsquery.system_server(opts.transport)
    host, port, url = parse_nameserver(opts.nameserver, opts.transport)
    return dnsquery.Server(host, port, opts.transport, url=url)


def _judged(target: Target[Options], started_at: dt.datetime, start: float, answer: Answer, where: str,
            transport: str, name: str, ip: str | None = None) -> ProbeResult:
    opts, latency = target.options, _ms(start)
    body = "\n".join(answer.answers).encode()
    details: dict[str, Any] = {
        "rcode": answer.rcode, "answers": answer.answers, "answer_count": answer.answer_count,
        "authority_count": answer.authority_count, "additional_count": answer.additional_count,
        "nameserver": where, "transport": "tcp" if answer.via_tcp else transport}
    if ip is not None:  # the nameserver's address (blackbox_exporter's probe_ip_* for a dns module)
        details["ip"] = ip
    measured: dict[str, Any] = {"latency_ms": latency, "dns_ms": latency, "details": details}
    results = evaluate(target.assertions, Observed(now=started_at, latency_ms=latency, body=body, connected=True,
                                                   dns_rcode=answer.rcode))
    asked = f"{name} {opts.record_type}"
    rcodes = opts.rcodes
    if rcodes is not None and answer.rcode not in rcodes:
        return ProbeResult.failed(started_at, "dns", f"{answer.rcode} for {asked} from {where}", results, **measured)
    if opts.require_answer and answer.rcode == "NOERROR" and not answer.answers:
        return ProbeResult.failed(started_at, "dns", f"no {opts.record_type} record for {name} from {where} "
                                  "(NOERROR, empty answer)", results, **measured)
    return ProbeResult.done(started_at, results, **measured)


@functools.lru_cache(maxsize=16)
def _tls_context(verify: bool, ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _context(opts: Options) -> ssl.SSLContext | None:
    return _tls_context(opts.verify_tls, opts.ca_file) if opts.transport in ("tls", "https") else None


def _failed(started_at: dt.datetime, start: float, kind: str, message: str, ip: str | None) -> ProbeResult:
    """A failed query; `ip`: the nameserver's address once known."""
    latency = _ms(start)
    return ProbeResult.failed(started_at, kind, message, latency_ms=latency, dns_ms=latency,
                              details={"ip": ip} if ip is not None else None)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
