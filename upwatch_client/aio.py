"""aiohttp middleware: `setup(app, client)` adds it and flushes the client on cleanup."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from upwatch_client.client import Client, client_ip, make_record

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def middleware(client: Client, *, forwarded_for_header: str | None = None,
               user_id: Callable[[web.Request], Any] | None = None) -> Any:
    """An aiohttp middleware recording every request into `client`."""

    @web.middleware
    async def upwatch(request: web.Request, handler: Handler) -> web.StreamResponse:
        started, status, error = time.perf_counter(), 500, None
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as e:
            status = e.status
            raise
        except Exception as e:  # recorded as a 500, then re-raised for aiohttp
            error = f"{type(e).__name__}: {e}"
            raise
        finally:
            _record(client, request, status, started, error, forwarded_for_header, user_id)

    return upwatch


def _record(client: Client, request: web.Request, status: int, started: float, error: str | None,
            forwarded: str | None, user_id: Callable[[web.Request], Any] | None) -> None:
    resource = request.match_info.route.resource if request.match_info.route else None
    user = None
    if user_id is not None:
        try:
            user = user_id(request)
        except Exception:  # a broken mapper must not break the app
            user = None
    client.record(make_record(
        method=request.method, path=request.path, route=resource.canonical if resource else None, status=status,
        started=started, ip=client_ip(request.remote, request.headers.get(forwarded) if forwarded else None),
        user_agent=request.headers.get("User-Agent"), user_id=user, error=error))


def setup(app: web.Application, client: Client, **options: Any) -> None:
    """Add the middleware to `app` and flush `client` when the app shuts down."""
    app.middlewares.append(middleware(client, **options))

    async def close(_: web.Application) -> None:
        await asyncio.to_thread(client.close)

    app.on_cleanup.append(close)
