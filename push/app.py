"""The push API as an aiohttp application (mounted by the prober at /api/v1).

Routes come from routes.ROUTES; client mistakes are answered with a JSON
`{"error": ..., "details": [...]}` and a 4xx status, never a 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
import psycopg_pool
from aiohttp import web

from push import rollup, useragents
from push.context import CONTEXT, Context, Writer
from push.idempotency import IdempotencyKeys
from push.keys import KeyStore
from push.ratelimit import RateLimiter
from push.records import sensitive_set
from push.routes import ROUTES
from upwatch.db import DatabaseUnavailable, error_summary
from upwatch.runtime import Runtime

logger = logging.getLogger(__name__)

ADMIN_TOKEN_ENV = "UPWATCH_ADMIN_TOKEN"  # noqa: S105  the variable's name, not a token
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """aiohttp's own 4xx answers (unknown route, wrong method) as JSON like ours, and an
    unreachable database as 503 (ingest itself keeps working through the writer's spool)."""
    if request.match_info and any("\x00" in value for value in request.match_info.values()):
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


# Each pushed record is ~20 objects that live until its batch is committed. At the default gen-0
# threshold (700 allocations) one batch of 500 set off dozens of collections, each traversing the
# records still in flight: a quarter of ingest CPU in a profile (docs/push.md, "Benchmark"). Records
# form no reference cycles, so collecting less often costs little memory.
GC_THRESHOLD = (50_000, 20, 20)


async def _background(app: web.Application) -> AsyncIterator[None]:
    context = app[CONTEXT]
    threshold = gc.get_threshold()
    gc.set_threshold(*map(max, threshold, GC_THRESHOLD))
    # ua-parser loads its rules on the first parse (~0.4 s): in a thread at start, not in the first
    # ingest request on the event loop.
    warming = asyncio.create_task(asyncio.to_thread(useragents.warm), name="push-ua-rules")
    task = asyncio.create_task(_maintain(context), name="push-maintenance")
    following = None
    if context.runtime.config.push.workers > 1:  # a revoke answered by another process: drop the cache
        following = asyncio.create_task(context.keys.follow(context.runtime.database_url), name="push-key-revokes")
    yield
    if following is not None:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
    await warming
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await context.keys.close()
    await context.idempotency.close()
    await _tick(context, rollup_too=context.rollup_every_s != float("inf"))  # not in ingest workers
    gc.set_threshold(*threshold)


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
               rollup_every_s: float = 30.0, rollups: bool = True) -> web.Application:
    """The push API application; `admin_token` defaults to $UPWATCH_ADMIN_TOKEN. `rollups`: False in
    ingest workers (push.workers), which leave the rollup and key pruning to the prober's own app."""
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
                           IdempotencyKeys(runtime.pool, shared_url=runtime.database_url if push.workers > 1 else None),
                           background_every_s=background_every_s,
                           rollup_every_s=rollup_every_s if rollups else float("inf"))
    app.router.add_routes(ROUTES)
    app.cleanup_ctx.append(_background)
    return app
