"""HTTP(S) check: one request on the shared session, phase timings, body read up to a cap, assertions.

Contract: `run` returns a ProbeResult and never raises for network or TLS errors.

aiohttp is imported where a request is made, not when this module is: upwatch.config
imports it for `Options`, and loading the config must stay cheap.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import datetime as dt
import email.utils
import functools
import ssl
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from prober.checks import certs
from prober.checks.assertions import Observed, evaluate
from prober.checks.base import Auth, CaFile, CheckOptions
from prober.checks.timing import Timings, ssl_context, trace_config
from upwatch.conditions import parse_status_set
from upwatch.masking import MASK, Masking
from upwatch.records import Measured, ProbeResult, Target

if TYPE_CHECKING:
    import aiohttp
    import yarl

CHUNK = 64 * 1024
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Options(CheckOptions):
    url: str = ""
    method: str = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    json_body: Any = Field(default=None, alias="json")
    auth: Auth | None = None
    expected_status: frozenset[int] = Field(default="200-399", validate_default=True)
    follow_redirects: bool = True
    verify_tls: bool = True
    ca_file: CaFile = None
    max_body_bytes: int = Field(default=1024 * 1024, ge=0)

    merged_defaults: ClassVar[frozenset[str]] = frozenset({"headers"})

    @classmethod
    def problem(cls, data: Mapping[str, Any]) -> str | None:
        if not data.get("url"):
            return "url is required for kind http"
        if data.get("body") is not None and data.get("json") is not None:
            return "set body or json, not both"
        return None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{value!r} must be an absolute http:// or https:// URL")
        return value

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        if value.upper() not in METHODS:
            raise ValueError(f"{value!r} is not an HTTP method")
        return value.upper()

    @field_validator("expected_status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> frozenset[int]:
        return parse_status_set(value)

    @property
    def target(self) -> str:
        return self.url

    @property
    def summary(self) -> str:
        return f"{self.method} {self.url}"

    @property
    def connects_to(self) -> str:
        return _url_host(self.url)

    @property
    def revalidate(self) -> bool:
        return self.ca_file is not None

    def stored(self, masks: Masking) -> dict[str, Any]:
        data = self.model_dump(mode="json", by_alias=True)
        data["url"] = masks.url(self.url)
        data["headers"] = masks.headers_of(data["headers"])
        data["body"] = masks.body(self.body)
        data["json"] = masks.json(data["json"])
        if self.auth is not None:
            data["auth"] = MASK
        return data


@functools.lru_cache(maxsize=65536)
def _url_host(url: str) -> str:
    return urlsplit(url).hostname or ""

# A reused connection has no new handshake: its chain is the one seen when it was opened.
_HANDSHAKES: dict[tuple[str, int | None, bool], _Handshake] = {}
HANDSHAKE_CACHE = 65536


# The address the last connection of this task went to; a response's own connection is gone once its body is read.
_PEER_IP: contextvars.ContextVar[str | None] = contextvars.ContextVar("upwatch_peer_ip", default=None)


@functools.cache
def _connector_class() -> type[aiohttp.TCPConnector]:
    import aiohttp
    from aiohttp.abc import ResolveResult
    from aiohttp.connector import Connection
    from aiohttp.tracing import Trace

    class Connector(aiohttp.TCPConnector):
        """Notes the peer address of every connection handed out, new or reused, for the [IP] placeholder;
        before connecting, the first address the name resolved to (what a connection that fails tried,
        for blackbox_exporter's probe_ip_protocol and probe_ip_addr_hash)."""

        async def _resolve_host(self, host: str, port: int, traces: Sequence[Trace] | None = None,
                                ) -> list[ResolveResult]:
            hosts = await super()._resolve_host(host, port, traces=traces)
            if hosts:
                _PEER_IP.set(hosts[0]["host"])
            return hosts

        async def connect(self, req: aiohttp.ClientRequest, traces: list[Trace],
                          timeout: aiohttp.ClientTimeout) -> Connection:  # noqa: ASYNC109 - aiohttp's signature
            conn = await super().connect(req, traces, timeout)
            peer = conn.transport.get_extra_info("peername") if conn.transport is not None else None
            _PEER_IP.set(str(peer[0]) if peer else None)
            return conn

    return Connector


def new_session(limit: int = 512, *, reuse_connections: bool = False) -> aiohttp.ClientSession:
    """The one session every HTTP check shares.

    By default each request opens its own connection, closed once the response is read: every
    probe looks the name up, connects and handshakes, as a new client does (blackbox_exporter
    does the same), so its dns/connect/tls phases are real. Both are connector-wide in aiohttp
    (force_close, use_dns_cache), hence a session per mode rather than a per-request switch that
    a pooled socket could slip past. With `reuse_connections` idle connections outlive a 15 s
    interval and are reused, and lookups are cached for 60 s: far less CPU per check for large
    fleets, but most probes then report dns/connect/tls as 0."""
    import aiohttp

    connector_class = _connector_class()
    if reuse_connections:
        connector = connector_class(limit=limit, limit_per_host=0, ttl_dns_cache=60, keepalive_timeout=75)
    else:
        connector = connector_class(limit=limit, limit_per_host=0, force_close=True, use_dns_cache=False)
    return aiohttp.ClientSession(connector=connector, trace_configs=[trace_config()],
                                 cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=None),
                                 auto_decompress=True)


async def run(target: Target[Options], session: aiohttp.ClientSession) -> ProbeResult:
    """Probe one HTTP endpoint."""
    import aiohttp

    started_at = dt.datetime.now(dt.UTC)
    timings = Timings(start=time.perf_counter(), tls=target.options.url.startswith("https:"))
    timeout_s = target.timeout.total_seconds()
    token = timings.activate()
    try:
        async with asyncio.timeout(timeout_s):
            return await _request(target, session, started_at, timings)
    except TimeoutError:
        return _failed(started_at, timings, "timeout", f"timeout after {timeout_s:g}s {timings.stage()}")
    except aiohttp.ClientError as e:
        return _failed(started_at, timings, *_classify(e))
    except (ssl.SSLError, OSError) as e:
        return _failed(started_at, timings, "tls" if isinstance(e, ssl.SSLError) else "connect", _oserror(e))
    finally:
        timings.deactivate(token)


async def _request(target: Target[Options], session: aiohttp.ClientSession, started_at: dt.datetime,
                   timings: Timings) -> ProbeResult:
    opts = target.options
    _PEER_IP.set(None)
    async with session.request(opts.method, _url(opts.url), **_request_options(opts),
                               trace_request_ctx=timings) as resp:
        handshake = _handshake(resp, timings, opts.verify_tls)
        not_after = handshake.not_after if handshake is not None else None
        body, size, too_large = await _read(resp, opts.max_body_bytes)
        timings.end = time.perf_counter()
        phases = timings.phases_ms()
        ip = _PEER_IP.get()
        measured: Measured = {**phases, "status_code": resp.status, "response_bytes": size,
                              "final_url": str(resp.url), "cert_not_after": not_after,
                              "details": _details(resp, ip, handshake)}
        observed = Observed(now=started_at, status_code=resp.status, latency_ms=phases["latency_ms"], body=body,
                            headers=resp.headers, cert_not_after=not_after, connected=True, ip=ip)
    results = evaluate(target.assertions, observed)
    if too_large:
        return ProbeResult.failed(started_at, "body_too_large",
                                  f"body larger than max_body_bytes={opts.max_body_bytes}", results, **measured)
    if resp.status not in opts.expected_status:
        return ProbeResult.failed(started_at, "http_status", f"status {resp.status} {resp.reason or ''}".strip(),
                                  results, **measured)
    return ProbeResult.done(started_at, results, **measured)


def _details(resp: aiohttp.ClientResponse, ip: str | None, handshake: _Handshake | None) -> dict[str, Any]:
    """What blackbox_exporter's http families need beyond the columns: the peer address, HTTP version,
    redirects followed, the Content-Length the server sent, Last-Modified, and the TLS handshake's."""
    version = resp.version
    out: dict[str, Any] = {"redirects": len(resp.history)}
    if ip is not None:
        out["ip"] = ip
    if version is not None:
        out["http_version"] = f"{version.major}.{version.minor}"
    length = resp.headers.get("Content-Length")
    if length is not None and length.isdigit():
        out["content_length"] = int(length)
    modified = resp.headers.get("Last-Modified")
    if modified is not None:
        stamp = _http_date(modified)
        if stamp is not None:
            out["last_modified"] = stamp
    if handshake is not None:
        out.update(handshake.details)
    return out


def _http_date(text: str) -> int | None:
    """An HTTP date as Unix seconds; None when it is not one."""
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return int(parsed.timestamp()) if parsed.tzinfo is not None else None


class _Handshake:
    """What the TLS handshake of a response's connection showed: the presented chain, version, cipher."""

    __slots__ = ("details", "not_after")

    def __init__(self, ssl_object: ssl.SSLObject, verified: bool) -> None:
        chain = certs.read(ssl_object, verified)
        cipher = ssl_object.cipher()
        self.not_after = chain.earliest.not_after if chain is not None else None
        self.details: dict[str, Any] = chain.details() if chain is not None else {}
        self.details.update(tls_version=certs.tls_version(ssl_object) or "", cipher=cipher[0] if cipher else "")


def _handshake(resp: aiohttp.ClientResponse, timings: Timings, verified: bool) -> _Handshake | None:
    if resp.url.scheme != "https":
        return None
    key = (resp.url.host or "", resp.url.port, verified)
    if timings.ssl_object is not None:
        if len(_HANDSHAKES) >= HANDSHAKE_CACHE:
            _HANDSHAKES.clear()
        _HANDSHAKES[key] = _Handshake(timings.ssl_object, verified)
    return _HANDSHAKES.get(key)


@functools.lru_cache(maxsize=65536)
def _url(text: str) -> yarl.URL:
    """Parsed once per endpoint URL rather than on every request."""
    import yarl

    return yarl.URL(text)


# Request options per endpoint, built on its first run. Keyed by id() and holding the Options themselves,
# so an id is never reused while its entry lives; a reload brings new Options objects and new entries.
_OPTIONS: dict[int, tuple[Options, dict[str, Any]]] = {}


def _request_options(opts: Options) -> dict[str, Any]:
    cached = _OPTIONS.get(id(opts))
    if cached is not None and cached[0] is opts:
        return cached[1]
    if len(_OPTIONS) >= 65536:  # endpoints replaced by reloads: start over rather than grow
        _OPTIONS.clear()
    built = _build_request_options(opts)
    _OPTIONS[id(opts)] = (opts, built)
    return built


def _build_request_options(opts: Options) -> dict[str, Any]:
    headers = dict(opts.headers)
    built: dict[str, Any] = {"allow_redirects": opts.follow_redirects, "max_redirects": 10}
    if opts.auth is not None and opts.auth.bearer:
        headers["Authorization"] = f"Bearer {opts.auth.bearer}"
    elif opts.auth is not None and opts.auth.basic:
        basic = f"{opts.auth.basic.username}:{opts.auth.basic.password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(basic).decode("ascii")
    if opts.json_body is not None:
        built["json"] = opts.json_body
    elif opts.body is not None:
        built["data"] = opts.body.encode()
    if opts.url.startswith("https:"):
        built["ssl"] = ssl_context(opts.verify_tls, opts.ca_file)
    built["headers"] = headers
    return built


async def _read(resp: aiohttp.ClientResponse, cap: int) -> tuple[bytes, int, bool]:
    """The body up to `cap` bytes; stops reading (and drops the connection) past it."""
    declared = resp.content_length
    if declared is not None and declared > cap:
        resp.close()
        return b"", 0, True
    if declared is not None and "Content-Encoding" not in resp.headers:  # exactly `declared` bytes: one read
        body = await resp.read()
        return body, len(body), False
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > cap:
            resp.close()
            return b"".join(chunks), size, True
        chunks.append(chunk)
    return b"".join(chunks), size, False


def _failed(started_at: dt.datetime, timings: Timings, kind: str, message: str) -> ProbeResult:
    """A failed request; details name the address it went to or tried, once the name resolved."""
    measured = timings.phases_ms()
    ip = _PEER_IP.get()
    if ip is not None:
        measured["details"] = {"ip": ip}
    return ProbeResult.failed(started_at, kind, message, **measured)


def _classify(error: aiohttp.ClientError) -> tuple[str, str]:
    """A library exception -> (error_kind, short message)."""
    import aiohttp

    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return "dns", f"cannot resolve {error.host}: {_oserror(error.os_error)}"
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        cert_error = error.certificate_error
        detail = getattr(cert_error, "verify_message", None) or getattr(cert_error, "reason", None) or str(cert_error)
        return "tls", f"certificate rejected: {detail}"
    if isinstance(error, aiohttp.ClientSSLError):
        return "tls", f"TLS handshake failed: {_oserror(error.os_error)}"
    if isinstance(error, aiohttp.ClientConnectorError):
        return "connect", f"cannot connect to {error.host}:{error.port}: {_oserror(error.os_error)}"
    if isinstance(error, aiohttp.TooManyRedirects):
        return "redirect_loop", f"more than {len(error.history)} redirects"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "closed", "server closed the connection before responding"
    if isinstance(error, aiohttp.ClientPayloadError):
        return "closed", f"response body cut short: {str(error).splitlines()[0][:200]}"
    if isinstance(error, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return "invalid_request", f"invalid URL: {error}"
    return "protocol", f"{type(error).__name__}: {str(error)[:200]}"


def _oserror(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError):
        return error.reason or str(error)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
