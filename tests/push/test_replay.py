"""Replaying stored requests: only to allowed hosts, masked headers not sent, outcome stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.push.conftest import Api


@pytest.fixture
async def target() -> AsyncIterator[tuple[TestServer, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append({"method": request.method, "path": request.path_qs, "headers": dict(request.headers),
                     "body": await request.text()})
        return web.json_response({"echo": request.path}, status=418, headers={"Set-Cookie": "s=1"})

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://127.0.0.2:1/elsewhere")

    app = web.Application()
    app.router.add_route("*", "/redirect", redirect)
    app.router.add_route("*", "/{tail:.*}", echo)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, seen
    await server.close()


async def stored_log(api: Api, base: str, **fields: Any) -> int:
    key = await api.service("shop", base_url=base)
    record = {"method": "POST", "url": f"{base}/orders?x=1", "path": "/orders",
              "request_headers": {"Authorization": "Bearer secret", "X-Trace": "abc", "Content-Length": "3"},
              "request_body": "hi!", **fields}
    assert (await api.client.post("/logs", json=record, headers={"X-API-Key": key})).status == 202
    ((log_id,),) = await api.rows("SELECT id FROM request_logs")
    return int(log_id)


async def test_replay_reissues_request_and_stores_outcome(api: Api, target: tuple[TestServer, list[Any]]) -> None:
    server, seen = target
    base = f"http://127.0.0.1:{server.port}"
    log_id = await stored_log(api, base)
    resp = await api.client.post(f"/logs/{log_id}/replay", headers=api.admin)
    assert resp.status == 201, await resp.text()
    replay = await resp.json()
    assert replay["status_code"] == 418 and replay["response_body"] == '{"echo": "/orders"}'
    assert replay["response_headers"]["Set-Cookie"] == "***"
    assert seen[0]["method"] == "POST" and seen[0]["path"] == "/orders?x=1" and seen[0]["body"] == "hi!"
    assert seen[0]["headers"]["X-Trace"] == "abc" and "Authorization" not in seen[0]["headers"]
    resp = await api.client.post(f"/logs/{log_id}/replay", json={"method": "PUT", "headers": {"X-Trace": "new"},
                                                                  "body": "override"}, headers=api.admin)
    assert resp.status == 201
    assert (seen[1]["method"], seen[1]["headers"]["X-Trace"], seen[1]["body"]) == ("PUT", "new", "override")
    listed = await (await api.client.get(f"/logs/{log_id}/replays", headers=api.admin)).json()
    assert [r["method"] for r in listed["items"]] == ["POST", "PUT"]


async def test_replay_refuses_hosts_off_the_allow_list(api: Api, target: tuple[TestServer, list[Any]]) -> None:
    server, seen = target
    log_id = await stored_log(api, f"http://127.0.0.1:{server.port}")
    for url in ("http://127.0.0.2:1/x", "http://localhost:1/x", "file:///etc/passwd"):
        resp = await api.client.post(f"/logs/{log_id}/replay", json={"url": url}, headers=api.admin)
        assert resp.status in (403, 422), url
    assert seen == []
    resp = await api.client.post(f"/logs/{log_id}/replay",
                                 json={"url": f"http://127.0.0.1:{server.port}/redirect"}, headers=api.admin)
    assert resp.status == 201 and (await resp.json())["status_code"] == 302  # not followed


async def test_replay_needs_the_admin_token_and_records_network_errors(api: Api) -> None:
    log_id = await stored_log(api, "http://127.0.0.1:9")
    key_headers = {"Authorization": "Bearer " + (await api.service("other"))}
    assert (await api.client.post(f"/logs/{log_id}/replay", headers=key_headers)).status == 401
    assert (await api.client.post("/logs/999999/replay", headers=api.admin)).status == 404
    resp = await api.client.post(f"/logs/{log_id}/replay", headers=api.admin)
    assert resp.status == 201
    replay = await resp.json()
    assert replay["status_code"] is None and "Connect" in replay["error"]
