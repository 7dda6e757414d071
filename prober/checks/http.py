"""HTTP(S) check: one request on the shared session, phase timings, body read up to a cap, assertions.

Contract: `run` returns a ProbeResult and never raises for network or TLS errors.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import datetime as dt
import functools
import ssl
import time
from typing import Any

import aiohttp
import yarl
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

from prober.checks.timing import Timings, cert_not_after, ssl_context, trace_config
from upwatch.assertions import Observed, evaluate
from upwatch.config.endpoints import Endpoint
from upwatch.records import ProbeResult

CHUNK = 64 * 1024
# A reused connection has no new handshake: its certificate is the one seen when it was opened.
_CERTS: dict[tuple[str, int | None, bool], dt.datetime | None] = {}


# The address the last connection of this task went to; a response's own connection is gone once its body is read.
_PEER_IP: contextvars.ContextVar[str | None] = contextvars.ContextVar("upwatch_peer_ip", default=None)


class _Connector(aiohttp.TCPConnector):
    """Notes the peer address of every connection handed out, new or reused, for the [IP] placeholder."""

    async def connect(self, req: aiohttp.ClientRequest, traces: list[Trace],
                      timeout: aiohttp.ClientTimeout) -> Connection:
        conn = await super().connect(req, traces, timeout)
        peer = conn.transport.get_extra_info("peername") if conn.transport is not None else None
        _PEER_IP.set(str(peer[0]) if peer else None)
        return conn


def new_session(limit: int = 512) -> aiohttp.ClientSession:
    """The one session every HTTP check shares; idle connections outlive a 15 s interval so they are reused."""
    connector = _Connector(limit=limit, limit_per_host=0, ttl_dns_cache=60, keepalive_timeout=75)
    return aiohttp.ClientSession(connector=connector, trace_configs=[trace_config()], cookie_jar=aiohttp.DummyCookieJar(),
                                 timeout=aiohttp.ClientTimeout(total=None), auto_decompress=True)


async def run(endpoint: Endpoint, session: aiohttp.ClientSession) -> ProbeResult:
    """Probe one HTTP endpoint."""
    started_at = dt.datetime.now(dt.UTC)
    timings = Timings(start=time.perf_counter(), tls=(endpoint.url or "").startswith("https:"))
    timeout_s = endpoint.timeout.total_seconds()
    token = timings.activate()
    try:
        async with asyncio.timeout(timeout_s):
            return await _request(endpoint, session, started_at, timings)
    except TimeoutError:
        return _failed(started_at, timings, "timeout", f"timeout after {timeout_s:g}s {timings.stage()}")
    except aiohttp.ClientError as e:
        return _failed(started_at, timings, *_classify(e, endpoint))
    except (ssl.SSLError, OSError) as e:
        return _failed(started_at, timings, "tls" if isinstance(e, ssl.SSLError) else "connect", _oserror(e))
    finally:
        timings.deactivate(token)


async def _request(endpoint: Endpoint, session: aiohttp.ClientSession, started_at: dt.datetime,
                   timings: Timings) -> ProbeResult:
    _PEER_IP.set(None)
    async with session.request(endpoint.method, _url(endpoint.url or ""), **_options(endpoint),
                               trace_request_ctx=timings) as resp:
        not_after = _certificate(resp, timings, endpoint.verify_tls)
        body, size, too_large = await _read(resp, endpoint.max_body_bytes)
        timings.end = time.perf_counter()
        phases = timings.phases_ms()
        fields: dict[str, Any] = {**phases, "status_code": resp.status, "response_bytes": size,
                                  "final_url": str(resp.url), "cert_not_after": not_after}
        observed = Observed(now=started_at, status_code=resp.status, latency_ms=phases["latency_ms"], body=body,
                            headers=resp.headers, cert_not_after=not_after, connected=True, ip=_PEER_IP.get())
    passed, results = evaluate(endpoint.assertions, observed)
    fields["assertions"] = results or None
    if too_large:
        return ProbeResult.failed(started_at, "body_too_large",
                                  f"body larger than max_body_bytes={endpoint.max_body_bytes}", **fields)
    if resp.status not in endpoint.expected_status:
        return ProbeResult.failed(started_at, "http_status", f"status {resp.status} {resp.reason or ''}".strip(),
                                  **fields)
    if not passed:
        failed = [r for r in results if not r["ok"]]
        message = "; ".join(f"{r['assertion']}: {r['reason']}" for r in failed)
        return ProbeResult.failed(started_at, "assertion", message[:500], **fields)
    return ProbeResult(time=started_at, ok=True, **fields)


def _certificate(resp: aiohttp.ClientResponse, timings: Timings, verified: bool) -> dt.datetime | None:
    if resp.url.scheme != "https":
        return None
    key = (resp.url.host or "", resp.url.port, verified)
    if timings.ssl_object is not None:
        _CERTS[key] = cert_not_after(timings.ssl_object)
    return _CERTS.get(key)


@functools.lru_cache(maxsize=65536)
def _url(text: str) -> yarl.URL:
    """Parsed once per endpoint URL rather than on every request."""
    return yarl.URL(text)


# Request options per endpoint, built on its first run. Keyed by id() and holding the endpoint itself,
# so an id is never reused while its entry lives; a reload brings new Endpoint objects and new entries.
_OPTIONS: dict[int, tuple[Endpoint, dict[str, Any]]] = {}


def _options(endpoint: Endpoint) -> dict[str, Any]:
    cached = _OPTIONS.get(id(endpoint))
    if cached is not None and cached[0] is endpoint:
        return cached[1]
    if len(_OPTIONS) >= 65536:  # endpoints replaced by reloads: start over rather than grow
        _OPTIONS.clear()
    options = _build_options(endpoint)
    _OPTIONS[id(endpoint)] = (endpoint, options)
    return options


def _build_options(endpoint: Endpoint) -> dict[str, Any]:
    headers = dict(endpoint.headers)
    options: dict[str, Any] = {"allow_redirects": endpoint.follow_redirects, "max_redirects": 10}
    if endpoint.auth is not None and endpoint.auth.bearer:
        headers["Authorization"] = f"Bearer {endpoint.auth.bearer}"
    elif endpoint.auth is not None and endpoint.auth.basic:
        basic = f"{endpoint.auth.basic.username}:{endpoint.auth.basic.password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(basic).decode("ascii")
    if endpoint.json_body is not None:
        options["json"] = endpoint.json_body
    elif endpoint.body is not None:
        options["data"] = endpoint.body.encode()
    if (endpoint.url or "").startswith("https:"):
        options["ssl"] = ssl_context(endpoint.verify_tls, endpoint.ca_file)
    options["headers"] = headers
    return options


async def _read(resp: aiohttp.ClientResponse, cap: int) -> tuple[bytes, int, bool]:
    """The body up to `cap` bytes; stops reading (and drops the connection) past it."""
    declared = resp.content_length
    if declared is not None and declared > cap:
        resp.close()
        return b"", 0, True
    if declared is not None and "Content-Encoding" not in resp.headers:  # exactly `declared` bytes: one read
        body = await resp.read()
        return body, len(body), False
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > cap:
            resp.close()
            return b"".join(chunks), size, True
        chunks.append(chunk)
    return b"".join(chunks), size, False


def _failed(started_at: dt.datetime, timings: Timings, kind: str, message: str) -> ProbeResult:
    phases = timings.phases_ms()
    return ProbeResult.failed(started_at, kind, message, **phases)


def _classify(error: aiohttp.ClientError, endpoint: Endpoint) -> tuple[str, str]:
    """A library exception -> (error_kind, short message)."""
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
