"""WSGI middleware (Flask, Django, any WSGI app); sending happens in the client's thread."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from upwatch_client.client import Client, client_ip, make_record

Environ = dict[str, Any]


class _Closing:
    """The response body; records the request when the server closes it (latency includes streaming)."""

    def __init__(self, body: Iterable[bytes], on_close: Callable[[], None]):
        self.body = body
        self.on_close = on_close

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.on_close()


class WSGIMiddleware:
    """Records every request the wrapped app serves. `route` maps environ to a route template
    (default: environ["upwatch.route"] if the app sets it)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], client: Client, *,
                 forwarded_for_header: str | None = None, user_id: Callable[[Environ], Any] | None = None,
                 route: Callable[[Environ], str | None] | None = None):
        self.app = app
        self.client = client
        self.forwarded = "HTTP_" + forwarded_for_header.upper().replace("-", "_") if forwarded_for_header else None
        self.user_id = user_id
        self.route = route or (lambda environ: environ.get("upwatch.route"))

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        started, state = time.perf_counter(), {"status": 500}

        def watch(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            state["status"] = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        try:
            body = self.app(environ, watch)
        except Exception as e:  # recorded as a 500, then re-raised for the server
            self._record(environ, 500, started, f"{type(e).__name__}: {e}")
            raise
        return _Closing(body, lambda: self._record(environ, state["status"], started, None))

    def _record(self, environ: Environ, status: int, started: float, error: str | None) -> None:
        try:
            user = self.user_id(environ) if self.user_id else None
            route = self.route(environ)
        except Exception:  # a broken mapper must not break the app
            user, route = None, None
        self.client.record(make_record(
            method=environ.get("REQUEST_METHOD", ""), path=environ.get("PATH_INFO", ""), route=route,
            status=status, started=started,
            ip=client_ip(environ.get("REMOTE_ADDR"), environ.get(self.forwarded) if self.forwarded else None),
            user_agent=environ.get("HTTP_USER_AGENT"), user_id=user, error=error))
