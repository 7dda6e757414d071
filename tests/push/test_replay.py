"""Replaying stored requests: only to allowed origins and addresses, safe methods unless opted in,
no redirects, no forged Host, masked headers not sent, outcome stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from push import origins
from tests.push.conftest import Api


@dataclass
class Target:
    """A real HTTP server on 127.0.0.1 that records every request it gets."""

    server: TestServer
    seen: list[dict[str, Any]] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


async def start_target(redirect_to: str = "http://127.0.0.2:1/elsewhere") -> Target:
    target = Target(TestServer(web.Application(), host="127.0.0.1"))

    async def echo(request: web.Request) -> web.Response:
        target.seen.append({"method": request.method, "path": request.path_qs, "headers": dict(request.headers),
                            "body": await request.text()})
        return web.json_response({"echo": request.path}, status=418, headers={"Set-Cookie": "s=1"})

    async def redirect(request: web.Request) -> web.Response:
        target.seen.append({"method": request.method, "path": request.path_qs})
        raise web.HTTPFound(redirect_to)

    app = target.server.app
    app.router.add_route("*", "/redirect", redirect)
    app.router.add_route("*", "/{tail:.*}", echo)
    await target.server.start_server()
    return target


@pytest.fixture
async def targets() -> AsyncIterator[tuple[Target, Target]]:
    """Two servers on two ports of 127.0.0.1; the first redirects /redirect to the second."""
    other = await start_target()
    own = await start_target(redirect_to=f"{other.base}/stolen")
    yield own, other
    await own.server.close()
    await other.server.close()


async def stored_log(api: Api, base: str, service: dict[str, Any] | None = None, **fields: Any) -> int:
    key = await api.service("shop", **({"base_url": base} | (service or {})))
    record = {"method": "POST", "url": f"{base}/orders?x=1", "path": "/orders",
              "request_headers": {"Authorization": "Bearer secret", "X-Trace": "abc", "Content-Length": "3"},
              "request_body": "hi!", **fields}
    assert (await api.client.post("/logs", json=record, headers={"X-API-Key": key})).status == 202
    ((log_id,),) = await api.rows("SELECT id FROM request_logs")
    return int(log_id)


async def replay(api: Api, log_id: int, **override: Any) -> tuple[int, dict[str, Any]]:
    resp = await api.client.post(f"/logs/{log_id}/replay", json=override, headers=api.admin)
    return resp.status, await resp.json()


def refused_field(answer: dict[str, Any]) -> str:
    """The field a 4xx names, checked to be said in the message too."""
    (detail,) = answer["details"]
    assert answer["error"].startswith(detail["field"] + ": ")
    return str(detail["field"])


async def test_replay_reissues_request_and_stores_outcome(api: Api, targets: tuple[Target, Target]) -> None:
    own, _ = targets
    log_id = await stored_log(api, own.base, {"replay_methods": ["post", "PUT"]})
    status, replayed = await replay(api, log_id)
    assert status == 201, replayed
    assert replayed["status_code"] == 418 and replayed["response_body"] == '{"echo": "/orders"}'
    assert replayed["response_headers"]["Set-Cookie"] == "***"
    seen = own.seen
    assert seen[0]["method"] == "POST" and seen[0]["path"] == "/orders?x=1" and seen[0]["body"] == "hi!"
    assert seen[0]["headers"]["X-Trace"] == "abc" and "Authorization" not in seen[0]["headers"]
    status, _ = await replay(api, log_id, method="PUT", headers={"X-Trace": "new"}, body="override")
    assert status == 201
    assert (seen[1]["method"], seen[1]["headers"]["X-Trace"], seen[1]["body"]) == ("PUT", "new", "override")
    listed = await (await api.client.get(f"/logs/{log_id}/replays", headers=api.admin)).json()
    assert [r["method"] for r in listed["items"]] == ["POST", "PUT"]


async def test_replay_to_another_port_of_the_same_host_is_refused(api: Api, targets: tuple[Target, Target]) -> None:
    own, other = targets
    log_id = await stored_log(api, own.base, method="GET", url=f"{other.base}/admin/drop",
                              request_headers={"Host": f"127.0.0.1:{own.server.port}"})  # the pusher chose both
    status, answer = await replay(api, log_id)
    assert status == 403 and refused_field(answer) == "url"
    assert f"origin {other.base}" in answer["error"] and f"allowed: {own.base}" in answer["error"]
    for url in (f"{other.base}/x", f"https://127.0.0.1:{own.server.port}/x", "http://127.0.0.2:1/x",
                f"http://localhost:{own.server.port}/x"):
        status, answer = await replay(api, log_id, url=url)
        assert status == 403 and refused_field(answer) == "url", url
    for url in ("file:///etc/passwd", f"http://user:pw@127.0.0.1:{own.server.port}/x", "http://[::1"):
        status, answer = await replay(api, log_id, url=url)
        assert status == 422 and refused_field(answer) == "url", url
    assert other.seen == [] and own.seen == []


async def test_unsafe_methods_are_replayed_only_when_the_service_opted_in(
        api: Api, targets: tuple[Target, Target]) -> None:
    own, _ = targets
    log_id = await stored_log(api, own.base, method="DELETE")
    status, answer = await replay(api, log_id)
    assert status == 403 and refused_field(answer) == "method" and "DELETE is not replayed" in answer["error"]
    status, answer = await replay(api, log_id, method="post")
    assert status == 403 and refused_field(answer) == "method"
    assert own.seen == []
    status, _ = await replay(api, log_id, method="GET")
    assert status == 201 and [s["method"] for s in own.seen] == ["GET"]
    async with api.pool.connection() as conn:
        await conn.execute("UPDATE services SET replay_methods = '{DELETE}'")
    status, _ = await replay(api, log_id)
    assert status == 201 and [s["method"] for s in own.seen] == ["GET", "DELETE"]


async def test_a_forged_host_header_does_not_change_the_target(api: Api, targets: tuple[Target, Target]) -> None:
    own, other = targets
    forged = f"127.0.0.1:{other.server.port}"
    log_id = await stored_log(api, own.base, method="GET", request_headers={"Host": forged, "host ": forged})
    status, _ = await replay(api, log_id)
    assert status == 201
    assert own.seen[0]["headers"]["Host"] == f"127.0.0.1:{own.server.port}"
    for name in ("Host", "host", " HOST", "Transfer-Encoding"):
        status, answer = await replay(api, log_id, headers={name: forged})
        assert status == 422 and refused_field(answer) == f"headers.{name}", name
    assert len(own.seen) == 1 and other.seen == []


async def test_a_redirect_to_another_origin_is_not_followed(api: Api, targets: tuple[Target, Target]) -> None:
    own, other = targets
    log_id = await stored_log(api, own.base, method="GET", url=f"{own.base}/redirect")
    status, replayed = await replay(api, log_id)
    assert status == 201 and replayed["status_code"] == 302
    assert replayed["response_headers"]["Location"] == f"{other.base}/stolen"
    assert [s["path"] for s in own.seen] == ["/redirect"] and other.seen == []


async def test_a_host_name_is_connected_to_at_the_addresses_that_were_checked(
        api: Api, targets: tuple[Target, Target]) -> None:
    own, _ = targets
    base = f"http://localhost:{own.server.port}"  # a loopback service, reached by name
    log_id = await stored_log(api, base, method="GET", url=f"{base}/by-name")
    status, replayed = await replay(api, log_id)
    assert status == 201 and replayed["status_code"] == 418, replayed
    assert [s["path"] for s in own.seen] == ["/by-name"] and own.seen[0]["headers"]["Host"] == base[7:]


async def test_loopback_link_local_and_metadata_addresses_are_refused(
        api: Api, targets: tuple[Target, Target]) -> None:
    own, _ = targets
    port = own.server.port
    allowed = [f"localhost:{port}", f"http://127.0.0.1:{port}", "http://169.254.169.254",
               "http://[fd00:ec2::254]", "http://[::ffff:169.254.169.254]", "http://[fe80::1]", "0.0.0.0:80",
               "http://100.100.100.200"]
    # A service that does not live on loopback: a name (or literal) on its allow-list that reaches
    # this machine is refused; the request never leaves.
    log_id = await stored_log(api, "http://192.0.2.10", {"allowed_hosts": allowed}, method="GET",
                              url="http://192.0.2.10/x")
    for url, reason in [(f"http://localhost:{port}/x", "loopback"), (f"http://127.0.0.1:{port}/x", "loopback"),
                        ("http://169.254.169.254/latest/meta-data/", "metadata"),
                        ("http://[fd00:ec2::254]/", "metadata"), ("http://[::ffff:169.254.169.254]/", "metadata"),
                        ("http://[fe80::1]/", "link-local"), ("http://0.0.0.0/", "unicast"),
                        ("http://100.100.100.200/", "metadata")]:
        status, answer = await replay(api, log_id, url=url)
        assert status == 403 and refused_field(answer) == "url" and reason in answer["error"], (url, answer)
    assert own.seen == []


ENTRIES = [
    ("shop.internal", ["http://shop.internal:80", "https://shop.internal:443"]),
    ("Shop.Internal.:8443", ["http://shop.internal:8443", "https://shop.internal:8443"]),
    ("https://shop.internal", ["https://shop.internal:443"]),
    ("http://[::1]:8080/", ["http://[::1]:8080"]),
]


@pytest.mark.parametrize(("entry", "allowed"), ENTRIES, ids=["bare-host", "host-port", "origin", "ipv6-origin"])
def test_an_allow_list_entry_stands_for_exact_origins(entry: str, allowed: list[str]) -> None:
    assert [str(o) for o in origins.allowed_entry(entry)] == allowed


async def test_allow_list_entries_are_checked_when_the_service_is_created(api: Api) -> None:
    for entries in (["h:1/x"], ["http://h/path"], ["a b"], ["http://u:p@h"]):
        resp = await api.client.post("/services", json={"name": "shop", "allowed_hosts": entries},
                                     headers=api.admin)
        assert resp.status == 422, entries
        assert [d["field"] for d in (await resp.json())["details"]] == ["allowed_hosts"]
    resp = await api.client.post("/services", headers=api.admin, json={
        "name": "shop", "allowed_hosts": ["Shop.Internal", "https://shop.internal:8443"], "replay_methods": ["post"]})
    assert resp.status == 201
    assert (await resp.json())["replay_methods"] == ["POST"]


async def test_replay_needs_the_admin_token_and_records_network_errors(api: Api) -> None:
    log_id = await stored_log(api, "http://127.0.0.1:9", method="GET")
    key_headers = {"Authorization": "Bearer " + (await api.service("other"))}
    assert (await api.client.post(f"/logs/{log_id}/replay", headers=key_headers)).status == 401
    assert (await api.client.post("/logs/999999/replay", headers=api.admin)).status == 404
    resp = await api.client.post(f"/logs/{log_id}/replay", headers=api.admin)
    assert resp.status == 201
    replayed = await resp.json()
    assert replayed["status_code"] is None and "Connect" in replayed["error"]
