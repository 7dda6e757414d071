"""A real local HTTP target for check tests: status codes, slow, huge, looping, cut-short responses."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

BIG_BYTES = 50 * 1024 * 1024
STATS = web.AppKey("stats", dict)


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"status": "UP", "items": [1, 2], "data": {"id": 7}}, headers={"X-Version": "1.2"})


async def status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]), text="status")


async def hang(request: web.Request) -> web.Response:
    await asyncio.sleep(30)
    return web.Response(text="late")


async def big(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    chunk, sent = b"x" * 65536, 0
    while sent < BIG_BYTES:
        await resp.write(chunk)
        sent += len(chunk)
    request.app[STATS]["big_sent"] = sent
    return resp


async def slow(request: web.Request) -> web.Response:
    """Sleeps 0.2 s and remembers the most requests it served at once."""
    stats = request.app[STATS]
    stats["active"] = stats.get("active", 0) + 1
    stats["peak"] = max(stats.get("peak", 0), stats["active"])
    try:
        await asyncio.sleep(0.2)
    finally:
        stats["active"] -= 1
    return web.Response(text="slow")


async def loop(request: web.Request) -> web.Response:
    raise web.HTTPFound("/loop")


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ok")


async def cut(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Length": "100000"})
    await resp.prepare(request)
    await resp.write(b"y" * 1000)
    assert request.transport is not None
    request.transport.close()
    return resp


async def zipped(request: web.Request) -> web.Response:
    """2 MiB of zeros sent gzip-compressed: a small Content-Length, a large body."""
    body = gzip.compress(bytes(2 * 1024 * 1024))
    return web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})


async def echo(request: web.Request) -> web.Response:
    body = await request.text()
    return web.json_response({"method": request.method, "headers": dict(request.headers), "body": body})


def app() -> web.Application:
    application = web.Application()
    application[STATS] = {}
    application.router.add_routes([
        web.get("/ok", ok), web.get("/status/{code}", status), web.get("/hang", hang), web.get("/slow", slow),
        web.get("/big", big),
        web.get("/loop", loop), web.get("/redirect", redirect), web.get("/cut", cut), web.route("*", "/echo", echo),
        web.get("/zipped", zipped),
    ])
    return application


@asynccontextmanager
async def serve(application: web.Application, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """Serve on 127.0.0.1 on a free port; yields the base URL."""
    runner = web.AppRunner(application, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def server_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dumps(value: object) -> str:
    return json.dumps(value)
