"""ASGI middleware (Starlette, FastAPI, any ASGI 3 app)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from upwatch_client.client import Client, client_ip, make_record

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _route(scope: Scope) -> str | None:
    """The matched route template: Starlette/FastAPI leave the route object in the scope."""
    route = scope.get("route")
    for attr in ("path_format", "path"):
        if hasattr(route, attr):
            return str(getattr(route, attr))
    return route if isinstance(route, str) else None


class ASGIMiddleware:
    """Records every HTTP request the wrapped app serves; flushes the client at lifespan shutdown."""

    def __init__(self, app: ASGIApp, client: Client, *, forwarded_for_header: str | None = None,
                 user_id: Callable[[Scope], Any] | None = None):
        self.app = app
        self.client = client
        self.forwarded = forwarded_for_header.lower().encode() if forwarded_for_header else None
        self.user_id = user_id

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status, error = time.perf_counter(), 500, None

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as e:  # recorded as a 500, then re-raised untouched for the server
            error = f"{type(e).__name__}: {e}"
            raise
        finally:
            self._record(scope, status, started, error)

    def _record(self, scope: Scope, status: int, started: float, error: str | None) -> None:
        peer = (scope.get("client") or (None,))[0]
        user = None
        if self.user_id is not None:
            try:
                user = self.user_id(scope)
            except Exception:  # a broken mapper must not break the app
                user = None
        self.client.record(make_record(
            method=scope.get("method", ""), path=scope.get("path", ""), route=_route(scope), status=status,
            started=started, ip=client_ip(peer, _header(scope, self.forwarded) if self.forwarded else None),
            user_agent=_header(scope, b"user-agent"), user_id=user, error=error))

    def _lifespan_send(self, send: Callable[[Message], Awaitable[None]]) -> Callable[[Message], Awaitable[None]]:
        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await asyncio.to_thread(self.client.close)
            await send(message)

        return lifespan_send
