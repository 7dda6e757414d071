"""The push API as an aiohttp application (mounted by the prober at /api/v1).

Routes live in ROUTES; each handler answers client mistakes with a JSON
`{"error": ..., "details": [...]}` and a 4xx status, never a 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from typing import Any, Protocol

import psycopg
import psycopg_pool
from aiohttp import web

from prober.spool import Batch
from prober.writer import Reservation
from push import useragents
from push.bodies import Refusal
from push.idempotency import IdempotencyKeys
from push.keys import Caller, KeyStore
from push.masking import Masking
from push.ratelimit import RateLimiter
from push.records import sensitive_set
from upwatch.db import DatabaseUnavailable, error_summary
from upwatch.runtime import Runtime

logger = logging.getLogger(__name__)

ADMIN_TOKEN_ENV = "UPWATCH_ADMIN_TOKEN"
UNAUTHORIZED = Refusal(401, "missing or invalid credentials", headers={"WWW-Authenticate": "Bearer"})


class Writer(Protocol):
    """The prober's batched writer: all-or-nothing, never blocks; False when its queue is full.
    Push rows are offered as `external`: they may fill only `external_limit` rows of the queue."""

    external_limit: int

    def offer(self, table: str, rows: list[dict[str, Any]], *, external: bool = False) -> bool: ...

    def offer_batch(self, batch: Batch, *, external: bool = False, room: Reservation | None = None) -> bool: ...

    def reserve(self, count: int) -> Reservation | None:
        """Hold room for `count` external rows (None: no room, counted as a request refused unread)."""

    async def flush(self) -> None:
        """Return once everything offered so far is committed or spooled to disk."""


@dataclass
class Context:
    """What the push handlers share."""

    runtime: Runtime
    writer: Writer
    keys: KeyStore
    limiter: RateLimiter
    admin_token: str | None
    sensitive: Masking
    idempotency: IdempotencyKeys
    started: dict[str, datetime] = field(default_factory=dict)  # push endpoint -> last /start
    endpoint_ids: dict[str, int] = field(default_factory=dict)  # push endpoint name -> endpoints.id
    background_every_s: float = 5.0
    rollup_every_s: float = 30.0


CONTEXT = web.AppKey("push_context", Context)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, IPv4Address | IPv6Address | IPv4Interface | IPv6Interface):
        return str(value.ip if isinstance(value, IPv4Interface | IPv6Interface) else value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | memoryview):
        return None
    raise TypeError(f"cannot encode {type(value).__name__}")


dumps = partial(json.dumps, default=_default, separators=(",", ":"))


def reply(body: Any, status: int = 200) -> web.Response:
    """A JSON response (datetimes as ISO 8601, addresses as strings)."""
    return web.json_response(body, status=status, dumps=dumps)


async def store(context: Context, rows: Batch | tuple[str, list[dict[str, Any]]],
                room: Reservation | None = None, queued: Callable[[], None] | None = None) -> bool:
    """Offer a batch, or (table, rows), to the writer as external rows (with the room the caller
    reserved, see Writer.reserve; `queued` is called once they are offered); with push.durable_ack wait
    until they are durable. False: the push share of the queue is full."""
    writer = context.writer
    offered = (writer.offer_batch(rows, external=True, room=room) if isinstance(rows, Batch)
               else writer.offer(*rows, external=True))
    if not offered:
        return False
    if queued is not None:
        queued()
    if context.runtime.config.push.durable_ack:
        await writer.flush()
    return True


QUEUE_FULL = Refusal(503, "write queue is full; retry later", headers={"Retry-After": "1"})


def ctx(request: web.Request) -> Context:
    """The push context of the application serving `request`."""
    return request.config_dict[CONTEXT]


def presented_key(request: web.Request) -> str | None:
    """The credential sent as `Authorization: Bearer ...` or `X-API-Key`."""
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("X-API-Key") or None


def is_admin(context: Context, raw: str | None) -> bool:
    """Whether `raw` is the admin token (constant-time; never true when no token is configured)."""
    if not context.admin_token or not raw:
        return False
    given = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).digest()
    return hmac.compare_digest(given, hashlib.sha256(context.admin_token.encode()).digest())


async def authenticate(request: web.Request, *, admin_allowed: bool = True) -> Caller | str | Refusal:
    """The calling key's owner, the string "admin", or 401 (without saying what was wrong)."""
    context, raw = ctx(request), presented_key(request)
    if admin_allowed and is_admin(context, raw):
        return "admin"
    caller = await context.keys.authenticate(raw)
    return caller if caller is not None else UNAUTHORIZED


async def require_admin(request: web.Request) -> Refusal | None:
    """None for the admin token, else 401."""
    return None if is_admin(ctx(request), presented_key(request)) else UNAUTHORIZED


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own 4xx answers (unknown route, wrong method) as JSON like ours, and an
    unreachable database as 503 (ingest itself keeps working through the writer's spool)."""
    if any("\x00" in value for value in request.match_info.values()):
        return web.json_response({"error": "Not Found"}, status=404)  # no name or id contains NUL
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return web.json_response({"error": e.reason}, status=e.status, headers={
            k: v for k, v in e.headers.items() if k in ("Allow", "Retry-After")})
    except (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout) as e:
        logger.warning("push request failed, database unavailable path=%s error=%r", request.path,
                       error_summary(e))
        return web.json_response({"error": "database unavailable; retry later"}, status=503,
                                 headers={"Retry-After": "5"})


async def _background(app: web.Application) -> AsyncIterator[None]:
    context = app[CONTEXT]
    # ua-parser loads its rules on the first parse (~0.4 s): in a thread at start, not in the first
    # ingest request on the event loop.
    warming = asyncio.create_task(asyncio.to_thread(useragents.warm), name="push-ua-rules")
    task = asyncio.create_task(_maintain(context), name="push-maintenance")
    yield
    await warming
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await context.keys.close()
    await _tick(context, rollup_too=True)


async def _maintain(context: Context) -> None:
    """Key usage every background_every_s; the rollup every rollup_every_s, because recomputing
    the current minute is the expensive part and doing it less often costs only freshness."""
    last_rollup = time.monotonic()
    while True:
        await asyncio.sleep(context.background_every_s)
        due = time.monotonic() - last_rollup >= context.rollup_every_s
        await _tick(context, rollup_too=due)
        if due:
            last_rollup = time.monotonic()


async def _tick(context: Context, *, rollup_too: bool) -> None:
    from push import rollup

    try:
        await context.keys.flush_usage()
        if rollup_too:
            await rollup.update(context.runtime.pool)
            async with context.runtime.pool.connection(timeout=5.0) as conn:
                await context.idempotency.prune(conn)
    except (psycopg.Error, psycopg_pool.PoolTimeout, DatabaseUnavailable) as e:
        logger.warning("push maintenance failed, will retry error=%r", error_summary(e))


def create_app(runtime: Runtime, writer: Writer, *, admin_token: str | None = None,
               key_cache_ttl_s: float = 5.0, background_every_s: float = 5.0,
               rollup_every_s: float = 30.0) -> web.Application:
    """The push API application; `admin_token` defaults to $UPWATCH_ADMIN_TOKEN."""
    from push.routes import ROUTES

    token = admin_token if admin_token is not None else os.environ.get(ADMIN_TOKEN_ENV) or None
    if token is None:
        logger.warning("push admin API disabled: %s is not set", ADMIN_TOKEN_ENV)
    push = runtime.config.push
    app = web.Application(middlewares=[json_errors], client_max_size=push.max_body_bytes + 1024)
    key_store = KeyStore(runtime.pool, ttl_s=key_cache_ttl_s,
                         outage_grace_s=push.key_outage_grace.total_seconds())
    app[CONTEXT] = Context(runtime, writer, key_store,
                           RateLimiter(push.rate_limit_per_key), token,
                           sensitive_set(push.sensitive_headers, push.secret_names),
                           IdempotencyKeys(runtime.pool),
                           background_every_s=background_every_s, rollup_every_s=rollup_every_s)
    app.router.add_routes(ROUTES)
    app.cleanup_ctx.append(_background)
    return app
