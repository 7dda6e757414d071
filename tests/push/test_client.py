"""The client middlewares against real apps, sending to the real push API."""

from __future__ import annotations

import asyncio
import socket
import threading
import urllib.request
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.push.conftest import Api
from upwatch_client import ASGIMiddleware, Client, WSGIMiddleware, aio

ROWS = ("SELECT method, path, route, status_code, host(source_ip), user_agent, user_id, error IS NOT NULL"
        " FROM request_logs")


def base_url(api: Api) -> str:
    return str(api.client.make_url("")).rstrip("/")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def raw_asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A tiny ASGI app: /users/{id} -> 200 (sets the route like Starlette), /boom raises, lifespan."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    if scope["path"] == "/boom":
        raise RuntimeError("kaboom")
    if scope["path"].startswith("/users/"):
        scope["route"] = "/users/{id}"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def call_asgi(app: Any, scope: dict[str, Any], inbox: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def http_scope(path: str, **headers: str) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(k.lower().replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
            "client": ("192.0.2.10", 51000), "server": ("127.0.0.1", 8000)}


async def test_asgi_middleware_records_requests_and_flushes_on_shutdown(api: Api) -> None:
    key = await api.service("asgi-app")
    client = Client(base_url(api), key, flush_interval_s=0.05)
    app = ASGIMiddleware(raw_asgi_app, client, forwarded_for_header="X-Forwarded-For",
                         user_id=lambda scope: dict(scope["headers"]).get(b"x-user", b"").decode() or None)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: list[dict[str, Any]] = []

    async def lifespan_send(message: dict[str, Any]) -> None:
        outbox.append(message)

    lifespan = asyncio.create_task(app({"type": "lifespan"}, inbox.get, lifespan_send))
    await inbox.put({"type": "lifespan.startup"})
    sent = await call_asgi(app, http_scope("/users/7", user_agent="pytest", x_forwarded_for="203.0.113.5, 10.0.0.1",
                                           x_user="alice"), [])
    assert sent[0]["status"] == 200
    with pytest.raises(RuntimeError):
        await call_asgi(app, http_scope("/boom"), [])
    await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(lifespan, 10)
    assert outbox == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]
    rows = sorted(await api.rows(ROWS))
    assert rows == [("GET", "/boom", None, 500, "192.0.2.10", None, None, True),
                    ("GET", "/users/7", "/users/{id}", 200, "203.0.113.5", "pytest", "alice", False)]
    assert client.sent == 2 and client.dropped == 0


async def test_aiohttp_middleware_records_requests(api: Api) -> None:
    key = await api.service("aiohttp-app")
    client = Client(base_url(api), key, flush_interval_s=0.05)

    async def user(request: web.Request) -> web.Response:
        return web.Response(text=request.match_info["id"])

    async def missing(request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_routes([web.get("/users/{id}", user), web.get("/missing", missing)])
    aio.setup(app, client, user_id=lambda request: request.headers.get("X-User"))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        for path in ("/users/1", "/users/2", "/missing"):
            async with session.get(server.make_url(path), headers={"X-User": "bob", "User-Agent": "t"}) as resp:
                await resp.read()
    await server.close()  # runs on_cleanup: flushes the client
    rows = sorted(await api.rows(ROWS))
    assert rows == [("GET", "/missing", "/missing", 404, "127.0.0.1", "t", "bob", False),
                    ("GET", "/users/1", "/users/{id}", 200, "127.0.0.1", "t", "bob", False),
                    ("GET", "/users/2", "/users/{id}", 200, "127.0.0.1", "t", "bob", False)]


async def test_wsgi_middleware_records_requests_from_a_real_server(api: Api) -> None:
    key = await api.service("wsgi-app")
    client = Client(base_url(api), key, flush_interval_s=0.05)

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["upwatch.route"] = "/items/{id}"
        start_response("201 Created", [("Content-Type", "text/plain")])
        return [b"made"]

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    httpd = make_server("127.0.0.1", 0, WSGIMiddleware(wsgi_app, client), handler_class=Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def requests() -> None:
        for i in range(3):
            with urllib.request.urlopen(f"http://127.0.0.1:{httpd.server_port}/items/{i}", timeout=5) as resp:
                assert resp.status == 201
        httpd.shutdown()

    await asyncio.to_thread(requests)
    httpd.server_close()
    assert await asyncio.to_thread(client.close)
    rows = await api.rows("SELECT path, route, status_code FROM request_logs ORDER BY path")
    assert rows == [(f"/items/{i}", "/items/{id}", 201) for i in range(3)]


def test_buffer_is_bounded_and_an_absent_server_never_blocks() -> None:
    client = Client(f"http://127.0.0.1:{free_port()}/api/v1", "uwk_x", flush_interval_s=0.05, max_buffer=3,
                    max_backoff_s=0.1, timeout_s=0.5)
    # record() only appends to the buffer (sending is the background thread's), so it answers at once.
    accepted = [client.record({"path": f"/{i}"}) for i in range(5)]
    assert accepted == [True, True, True, False, False] and client.dropped == 2
    assert client.flush(timeout_s=0.3) is False  # server away: backing off, nothing lost yet
    assert client.close(timeout_s=0.2) is False
    assert client.sent == 0 and client.dropped + client.rejected >= 5


async def test_refused_batches_are_not_retried_forever(api: Api) -> None:
    client = Client(base_url(api), "uwk_not-a-real-key", flush_interval_s=0.05)
    client.record({"path": "/x"})
    assert await asyncio.to_thread(client.flush, 5.0)
    assert client.rejected == 1 and client.sent == 0
    await asyncio.to_thread(client.close)


class AnswerLosingProxy:
    """A TCP proxy on 127.0.0.1 that, on its first connection, lets the request through, waits for the
    server's answer and then cuts the connection instead of passing the answer on."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.connections = 0
        self.answers_lost = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        lose = self.connections == 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        forward = asyncio.create_task(self._pump(reader, up_writer))
        try:
            if lose:
                answer = await up_reader.read(65536)  # the server has answered: it stored the batch
                assert answer.startswith(b"HTTP/1.1 202"), answer
                self.answers_lost += 1
            else:
                await self._pump(up_reader, writer)
        finally:
            forward.cancel()
            up_writer.close()
            writer.close()

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()


async def test_a_batch_retried_after_its_answer_was_lost_is_stored_once(api: Api) -> None:
    key = await api.service("shop")
    assert api.client.port is not None
    proxy = AnswerLosingProxy(api.client.port)
    async with proxy as port:
        client = Client(f"http://127.0.0.1:{port}", key, flush_interval_s=0.05, max_backoff_s=0.5)
        for i in range(5):
            assert client.record({"path": f"/p/{i}"})
        assert await asyncio.to_thread(client.flush, 20.0)
        assert await asyncio.to_thread(client.close)
    assert proxy.answers_lost == 1 and proxy.connections == 2  # sent, answer lost, sent again
    rows = await api.rows("SELECT path, count(*) FROM request_logs GROUP BY path ORDER BY path")
    assert rows == [(f"/p/{i}", 1) for i in range(5)]
    assert client.sent == 5 and client.rejected == 0 and client.dropped == 0
    assert await api.rows("SELECT accepted FROM push_idempotency_keys") == [(5,)]
