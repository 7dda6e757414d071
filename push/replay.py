"""Replaying a stored request (admin only) to compare today's answer with the logged one.

upwatch must not become a way into the network (SSRF): the URL's origin
(scheme, host and port) must be on the service's allow-list, only safe
methods are replayed unless the service opted in to more, the host's
addresses are checked (never link-local or cloud metadata; loopback only for
a service whose base_url is loopback) and connected to exactly as checked,
redirects are not followed, and neither a Host header nor masked headers
are sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Annotated, Any

import aiohttp
from aiohttp import web
from aiohttp.abc import ResolveResult
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from push import origins
from push.bodies import Refusal
from push.context import Context, reply
from push.keys import DB_TIMEOUT_S, returned
from push.operations import Admin, Call
from push.query import fetch_log, log_id
from push.records import clean
from upwatch.catalog import MASK

logger = logging.getLogger(__name__)

TIMEOUT_S = 10.0
_HOP_BY_HOP = frozenset({"host", "content-length", "connection", "transfer-encoding", "keep-alive", "upgrade",
                         "te", "trailer", "proxy-connection", "accept-encoding"})
_REPLAY_COLUMNS = sql.SQL(", ").join(map(sql.Identifier, (
    "id", "log_id", "created_at", "method", "url", "request_headers", "request_body", "status_code",
    "response_headers", "response_body", "latency_ms", "error")))


class ReplayIn(BaseModel):
    """Optional overrides for a replay."""

    model_config = ConfigDict(extra="forbid")

    method: Annotated[StrictStr, Field(pattern=r"^[A-Za-z]{1,16}$")] | None = None
    url: Annotated[StrictStr, Field(max_length=8192)] | None = None
    headers: dict[StrictStr, StrictStr] = {}
    body: Annotated[StrictStr, Field(max_length=1024 * 1024)] | None = None


@dataclass(frozen=True)
class Plan:
    """A replay that passed every check, with the addresses it may connect to."""

    method: str
    url: str
    headers: dict[str, str]
    body: str | None
    host: str
    addresses: list[ResolveResult]
    unresolved: str | None = None


def _refuse(status: int, field: str, reason: str) -> Refusal:
    return Refusal(status, f"{field}: {reason}", [{"field": field, "reason": reason}])


def _url(log: dict[str, Any], service: dict[str, Any], override: ReplayIn) -> str | None:
    url = override.url or log["url"]
    if not url and service["base_url"] and log["path"]:
        url = service["base_url"].rstrip("/") + log["path"]
    return url or None


def _loopback_service(service: dict[str, Any]) -> bool:
    try:
        return bool(service["base_url"]) and origins.origin_of(service["base_url"]).loopback
    except origins.OriginError:
        return False


async def plan(log: dict[str, Any], service: dict[str, Any], override: ReplayIn) -> Plan | Refusal:
    """The checked replay, or the 4xx saying which field is not allowed and why."""
    url = _url(log, service, override)
    if url is None:
        return _refuse(422, "url", "the log has no url; give one in the request body")
    try:
        origin = origins.origin_of(url)
    except origins.OriginError as e:
        return _refuse(422, "url", str(e))
    try:
        allowed = origins.allowed_origins(service)
    except origins.OriginError as e:  # stored before entries were checked at creation
        return _refuse(409, "allowed_hosts", f"service {service['name']!r} has an invalid entry: {e}")
    if origin not in allowed:
        listed = ", ".join(str(o) for o in allowed) or "none: the service has no base_url or allowed_hosts"
        return _refuse(403, "url", f"origin {origin} is not on service {service['name']!r}'s replay allow-list"
                                   f" (allowed: {listed})")
    method = (override.method or log["method"] or "GET").upper()
    methods = origins.allowed_methods(service)
    if method not in methods:
        return _refuse(403, "method", f"{method} is not replayed for service {service['name']!r} (allowed: "
                                      f"{', '.join(sorted(methods))}; opt in with the service's replay_methods)")
    headers = headers_to_send(log, override)
    if isinstance(headers, Refusal):
        return headers
    body = override.body if override.body is not None else log["request_body"]
    try:
        async with asyncio.timeout(TIMEOUT_S):
            addresses = await origins.resolve(origin.host, origin.port)
    except (OSError, TimeoutError) as e:
        # Nothing to connect to, so nothing to check: recorded like any other network error.
        error = f"cannot resolve {origin.host}: {str(e) or 'timeout'}"
        return Plan(method, url, headers, body, origin.host, [], error)
    reason = origins.check_addresses(origin.host, addresses, loopback_ok=_loopback_service(service))
    if reason:
        return _refuse(403, "url", reason)
    return Plan(method, url, headers, body, origin.host, addresses)


def headers_to_send(log: dict[str, Any], override: ReplayIn) -> dict[str, str] | Refusal:
    """The logged request headers without masked, Host or hop-by-hop ones, then the overrides;
    an override may not set Host (the URL decides where the request goes) or a hop-by-hop header."""
    sent: dict[str, str] = {}
    for name, value in (log["request_headers"] or {}).items():
        if name.strip().lower() in _HOP_BY_HOP or value == MASK or not isinstance(value, str):
            continue
        sent[name] = value
    for name in override.headers:
        if name.strip().lower() in _HOP_BY_HOP:
            return _refuse(422, f"headers.{name}", "set by upwatch from the url, not by a replay")
    sent.update(override.headers)
    return sent


async def send(plan: Plan, max_body: int) -> dict[str, Any]:
    """Issue the request to the checked addresses only; the outcome as replay columns (never raises for
    network errors). Redirects are not followed: the logged answer was the redirect itself."""
    started = time.perf_counter()
    if plan.unresolved:
        return {"status_code": None, "response_headers": None, "response_body": None, "latency_ms": 0.0,
                "error": plan.unresolved}
    try:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        connector = aiohttp.TCPConnector(resolver=origins.PinnedResolver(plan.host, plan.addresses),
                                         use_dns_cache=False)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session, session.request(
                plan.method, plan.url, headers=plan.headers,
                data=plan.body.encode() if plan.body is not None else None, allow_redirects=False) as resp:
            raw = await resp.content.read(max_body)
            return {"status_code": resp.status, "response_headers": dict(resp.headers),
                    "response_body": raw.decode("utf-8", "replace"),
                    "latency_ms": (time.perf_counter() - started) * 1000, "error": None}
    except TimeoutError:
        error = f"timeout after {TIMEOUT_S:.0f}s"
    except (aiohttp.ClientError, OSError, ValueError) as e:
        error = f"{type(e).__name__}: {e}"
    return {"status_code": None, "response_headers": None, "response_body": None,
            "latency_ms": (time.perf_counter() - started) * 1000, "error": error}


_NO_SERVICE: dict[str, Any] = {"name": "?", "base_url": None, "allowed_hosts": [], "replay_methods": []}


async def replay(call: Call[Admin, ReplayIn, None]) -> web.Response:
    """Re-issue a logged request and store the outcome beside it (201)."""
    found = log_id(call.request)
    if isinstance(found, Refusal):
        return found.response()
    override, context = call.body, call.context
    log = await fetch_log(context, found)
    if log is None:
        return Refusal(404, "no such log").response()
    async with context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SELECT name, base_url, allowed_hosts, replay_methods FROM services WHERE id = %s",
                          (log["service_id"],))
        service = await cur.fetchone()
    checked = await plan(log, service or _NO_SERVICE, override)
    if isinstance(checked, Refusal):
        logger.info("replay refused log_id=%d reason=%r", found, checked.message)
        return checked.response()
    outcome = await send(checked, context.runtime.config.push.max_stored_body_bytes)
    # aiohttp quotes the URL in some errors, and an override's query holds real secrets.
    outcome["error"] = context.sensitive.text(outcome["error"])
    logger.info("replay log_id=%d status=%s error=%s", found, outcome["status_code"], outcome["error"])
    return reply(await _store(context, log, checked, outcome), status=201)


async def _store(context: Context, log: dict[str, Any], plan: Plan, outcome: dict[str, Any]) -> dict[str, Any]:
    masking = context.sensitive
    response_headers = masking.headers_of(outcome["response_headers"])
    async with context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            sql.SQL("INSERT INTO request_replays (log_id, service_id, method, url, request_headers, request_body,"
                    " status_code, response_headers, response_body, latency_ms, error)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {}").format(_REPLAY_COLUMNS),
            (log["id"], log["service_id"], plan.method, clean(masking.url(plan.url)),
             Jsonb(clean(masking.headers_of(plan.headers))), clean(masking.body(plan.body)),
             outcome["status_code"], Jsonb(clean(response_headers)) if response_headers else None,
             clean(masking.body(outcome["response_body"])), outcome["latency_ms"], clean(outcome["error"])))
        return await returned(cur)


async def list_replays(call: Call[Admin, None, None]) -> web.Response:
    """The replays of one log, oldest first (admin only)."""
    found = log_id(call.request)
    if isinstance(found, Refusal):
        return found.response()
    if await fetch_log(call.context, found) is None:
        return Refusal(404, "no such log").response()
    async with call.context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(sql.SQL("SELECT {} FROM request_replays WHERE log_id = %s ORDER BY id").format(
            _REPLAY_COLUMNS), (found,))
        return reply({"items": await cur.fetchall()})
