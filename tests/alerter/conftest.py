"""Alerter fixtures: a real SMTP server (aiosmtpd) and a real webhook receiver (aiohttp), on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from alerting_support import Mailbox, SmtpServer, free_port


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port(), Mailbox())
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Receiver:
    """Keeps every JSON body POSTed to /hook; answers with `status`."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.all_headers: list[dict[str, str]] = []  # of every request, refused ones too
        self.status = 200
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.all_headers.append(dict(request.headers))
        if self.status >= 300:
            return web.Response(status=self.status, text="receiver says no")
        self.bodies.append(await request.json())
        self.headers.append(dict(request.headers))
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    server = TestServer(app, host="127.0.0.1")  # aiohttp's own test server: no pytest plugin needed
    await server.start_server()
    rec.url = f"http://127.0.0.1:{server.port}/hook"
    yield rec
    await server.close()
