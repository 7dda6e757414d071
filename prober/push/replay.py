"""Replaying a stored request (admin only) to compare today's answer with the logged one.

Only hosts on the service's allow-list (its `allowed_hosts`, else the host of
its `base_url`) may be called, redirects are not followed, and masked
headers are not sent: upwatch must not become an open proxy.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from prober.push.admin import read_model
from prober.push.app import ctx, reply, require_admin
from prober.push.bodies import Refusal
from prober.push.keys import DB_TIMEOUT_S
from prober.push.query import fetch_log, log_id
from prober.push.records import clean, mask
from upwatch.catalog import MASK

logger = logging.getLogger(__name__)

TIMEOUT_S = 10.0
_HOP_BY_HOP = frozenset({"host", "content-length", "connection", "transfer-encoding", "keep-alive", "upgrade",
                         "te", "trailer", "proxy-connection", "accept-encoding"})
_REPLAY_COLUMNS = ("id, log_id, created_at, method, url, request_headers, request_body, status_code,"
                   " response_headers, response_body, latency_ms, error")


class ReplayIn(BaseModel):
    """Optional overrides for a replay."""

    model_config = ConfigDict(extra="forbid")

    method: Annotated[StrictStr, Field(pattern=r"^[A-Za-z]{1,16}$")] | None = None
    url: Annotated[StrictStr, Field(max_length=8192)] | None = None
    headers: dict[StrictStr, StrictStr] = {}
    body: Annotated[StrictStr, Field(max_length=1024 * 1024)] | None = None


def allowed_hosts(service: dict[str, Any]) -> set[str]:
    """Hosts a replay of this service's logs may call."""
    hosts = {h.lower() for h in service["allowed_hosts"]}
    if not hosts and service["base_url"]:
        hosts.add((urlsplit(service["base_url"]).hostname or "").lower())
    return hosts - {""}


def target(log: dict[str, Any], service: dict[str, Any], override: ReplayIn) -> str | Refusal:
    """The URL to call, or 403/422 if it is not allowed."""
    url = override.url or log["url"]
    if not url and service["base_url"] and log["path"]:
        url = service["base_url"].rstrip("/") + log["path"]
    if not url:
        return Refusal(422, "the log has no url; give one in the request body")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Refusal(422, "url must be an absolute http:// or https:// URL")
    if parts.hostname.lower() not in allowed_hosts(service):
        return Refusal(403, f"host {parts.hostname!r} is not on the service's replay allow-list")
    return url


def headers_to_send(log: dict[str, Any], override: ReplayIn) -> dict[str, str]:
    """The logged request headers without masked or hop-by-hop ones, then the overrides."""
    sent: dict[str, str] = {}
    for name, value in (log["request_headers"] or {}).items():
        if name.lower() in _HOP_BY_HOP or value == MASK or not isinstance(value, str):
            continue
        sent[name] = value
    sent.update(override.headers)
    return sent


async def call(method: str, url: str, headers: dict[str, str], body: str | None,
               max_body: int) -> dict[str, Any]:
    """Issue the request; the outcome as replay columns (never raises for network errors)."""
    started = time.perf_counter()
    try:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.request(
                method, url, headers=headers, data=body.encode() if body is not None else None,
                allow_redirects=False) as resp:
            raw = await resp.content.read(max_body)
            return {"status_code": resp.status, "response_headers": dict(resp.headers),
                    "response_body": raw.decode("utf-8", "replace"),
                    "latency_ms": (time.perf_counter() - started) * 1000, "error": None}
    except TimeoutError:
        error = f"timeout after {TIMEOUT_S:.0f}s"
    except (aiohttp.ClientError, ValueError) as e:
        error = f"{type(e).__name__}: {e}"
    return {"status_code": None, "response_headers": None, "response_body": None,
            "latency_ms": (time.perf_counter() - started) * 1000, "error": error}


async def replay(request: web.Request) -> web.Response:
    """Re-issue a logged request and store the outcome beside it (201)."""
    if refused := await require_admin(request):
        return refused.response()
    found = log_id(request)
    if isinstance(found, Refusal):
        return found.response()
    override = await read_model(request, ReplayIn, optional=True)
    if isinstance(override, Refusal):
        return override.response()
    log = await fetch_log(request, found)
    if log is None:
        return Refusal(404, "no such log").response()
    context = ctx(request)
    async with context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SELECT base_url, allowed_hosts FROM services WHERE id = %s", (log["service_id"],))
        service = await cur.fetchone()
    url = target(log, service or {"base_url": None, "allowed_hosts": []}, override)
    if isinstance(url, Refusal):
        return url.response()
    method = (override.method or log["method"] or "GET").upper()
    headers = headers_to_send(log, override)
    body = override.body if override.body is not None else log["request_body"]
    outcome = await call(method, url, headers, body, context.runtime.config.push.max_stored_body_bytes)
    logger.info("replay log_id=%d status=%s error=%s", found, outcome["status_code"], outcome["error"])
    return reply(await _store(context, log, method, url, headers, body, outcome), status=201)


async def _store(context: Any, log: dict[str, Any], method: str, url: str, headers: dict[str, str],
                 body: str | None, outcome: dict[str, Any]) -> dict[str, Any]:
    response_headers = mask(outcome["response_headers"], context.sensitive)
    async with context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "INSERT INTO request_replays (log_id, service_id, method, url, request_headers, request_body,"
            " status_code, response_headers, response_body, latency_ms, error)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING " + _REPLAY_COLUMNS,
            (log["id"], log["service_id"], method, clean(url), Jsonb(clean(mask(headers, context.sensitive))),
             clean(body), outcome["status_code"], Jsonb(clean(response_headers)) if response_headers else None,
             clean(outcome["response_body"]), outcome["latency_ms"], clean(outcome["error"])))
        row = await cur.fetchone()
    assert row is not None
    return row


async def list_replays(request: web.Request) -> web.Response:
    """The replays of one log, oldest first (admin only)."""
    if refused := await require_admin(request):
        return refused.response()
    found = log_id(request)
    if isinstance(found, Refusal):
        return found.response()
    if await fetch_log(request, found) is None:
        return Refusal(404, "no such log").response()
    async with ctx(request).runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SELECT " + _REPLAY_COLUMNS + " FROM request_replays WHERE log_id = %s ORDER BY id",
                          (found,))
        return reply({"items": await cur.fetchall()})
