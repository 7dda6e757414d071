"""Operator incidents over the real HTTP API and on the page, and the alerter's DOWN alerts as incidents."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from prober import pages
from tests.pages.conftest import AS_ADMIN, CONFIG, TOKEN
from upwatch.runtime import Runtime

AS_READER = {"Authorization": f"Bearer {TOKEN}"}  # the private page's token


async def _post(client: TestClient, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    resp = await client.post(f"/api/status/v1{path}", json=body, headers=AS_ADMIN if headers is None else headers)
    return resp.status, await resp.json()


async def test_an_operator_posts_updates_and_resolves_an_incident(admin: TestClient) -> None:
    status, made = await _post(admin, "/incidents", {"title": "Checkout errors", "endpoints": ["api"],
                                                     "message": "We see <script>x</script> errors"})
    assert status == 201
    updates = f"/incidents/{made['id']}/updates"
    assert (await _post(admin, updates, {"message": "Bad deploy", "state": "identified"}))[0] == 201
    html = await (await admin.get("/status/public")).text()
    shown = html[html.index(f'data-incident="{made["id"]}"'):]
    shown = shown[:shown.index("</article>")]
    assert "Checkout errors" in shown and "Identified" in shown and "affects api" in shown
    assert "Bad deploy" in shown and "&lt;script&gt;x&lt;/script&gt;" in shown and "<script>x" not in shown
    listed = await (await admin.get("/api/read/v1/status-incidents")).json()
    assert [(n["title"], n["state"], n["active"]) for n in listed] == [("Checkout errors", "identified", True)]
    assert [u["message"] for u in listed[0]["updates"]] == ["Bad deploy", "We see <script>x</script> errors"]

    assert (await _post(admin, updates, {"message": "Rolled back", "state": "resolved"}))[0] == 201
    page = await (await admin.get("/api/read/v1/pages/public")).json()
    (resolved,) = page["incidents"]
    assert resolved["state"] == "resolved" and not resolved["active"] and resolved["resolved_at"]
    assert "resolved" in (await (await admin.get("/status/public")).text()).split('data-incident=')[1][:600]


async def test_posting_needs_the_admin_token(admin: TestClient) -> None:
    body = {"title": "t", "message": "m"}
    assert (await _post(admin, "/incidents", body, headers={}))[0] == 401
    assert (await _post(admin, "/incidents", body, headers={"Authorization": f"Bearer {TOKEN}"}))[0] == 401
    assert (await _post(admin, "/incidents/999/updates", {"message": "m"}))[1] == {"error": "id: no incident 999"}


async def test_without_an_admin_token_nobody_posts(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pages.ADMIN_TOKEN_ENV, raising=False)
    app = web.Application()
    pages.setup(app, runtime, None)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        for headers in ({}, {"Authorization": "Bearer "}, AS_ADMIN):
            status, err = await _post(c, "/incidents", {"title": "t", "message": "m"}, headers=headers)
            assert status == 403 and err["error"].startswith("authorization: posting incidents needs UPWATCH_ADMIN")


@pytest.mark.parametrize(("body", "error"), [
    ({"message": "m"}, "title: Field required"),
    ({"title": "t", "message": "m", "state": "fixed"}, "state: Input should be 'investigating'"),
    ({"title": "t", "message": "m", "endpoints": ["nope"]}, "endpoints.0: no endpoint 'nope' in the config"),
    ({"title": "t", "message": "m", "severity": "high"}, "severity: Extra inputs are not permitted"),
    ({"title": "", "message": "m"}, "title: String should have at least 1 character"),
])
async def test_a_bad_incident_is_a_400_naming_the_field(admin: TestClient, body: dict[str, Any], error: str) -> None:
    status, err = await _post(admin, "/incidents", body)
    assert status == 400 and err["error"].startswith(error)


async def test_private_endpoints_incidents_need_the_pages_token(admin: TestClient) -> None:
    await _post(admin, "/incidents", {"title": "DB failover", "message": "m", "endpoints": ["secret-db"]})
    assert await (await admin.get("/api/read/v1/status-incidents")).json() == []
    private = await (await admin.get("/api/read/v1/status-incidents", headers=AS_READER)).json()
    assert [n["title"] for n in private] == ["DB failover"]
    assert "DB failover" not in await (await admin.get("/status/public")).text()


async def test_the_alerters_down_alerts_appear_where_the_page_asks_for_them(runtime: Runtime,
                                                                          admin: TestClient) -> None:
    with psycopg.connect(runtime.database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO alert_state (fingerprint, kind, endpoint_id, status, since, last_error)"
                     " SELECT 'down:api', 'down', id, 'firing', now() - interval '5 min', 'HTTP 503'"
                     " FROM endpoints WHERE name = 'api'")
    public = await (await admin.get("/api/read/v1/pages/public")).json()
    assert [(n["title"], n["source"], n["updates"][0]["message"]) for n in public["incidents"]] == [
        ("api is down", "alerter", "Detected by upwatch: HTTP 503")]
    assert "api is down" in await (await admin.get("/status/public")).text()
    internal = await (await admin.get("/api/read/v1/pages/internal", headers=AS_READER)).json()
    assert internal["incidents"] == []  # alert_incidents: false


async def _cli(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> tuple[int, str, str]:
    """Parse and run like `upwatch --config CONFIG ARGV…`, in a thread (handlers run their own loop)."""
    from upwatch.cli import build_parser

    args = build_parser().parse_args(["--config", str(config), *argv])
    code = await asyncio.to_thread(args.handler, args)
    out, err = capsys.readouterr()
    return int(code), out, err


async def test_the_cli_posts_updates_resolves_and_lists(runtime: Runtime, client: TestClient, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "upwatch.yaml"
    config.write_text(CONFIG.format(url=runtime.database_url, token=TOKEN))
    assert await _cli(capsys, config, "incident", "add", "Slow search", "-m", "Looking", "--endpoint", "web") == (
        0, "incident 1 posted\n", "")
    assert await _cli(capsys, config, "incident", "add", "x", "-m", "m", "--endpoint", "nope") == (
        2, "", "upwatch: --endpoint: no endpoint 'nope' in the config\n")
    assert (await _cli(capsys, config, "incident", "update", "1", "-m", "Index rebuilt", "--state", "monitoring"))[:2] \
        == (0, "incident 1 updated\n")
    code, out, _ = await _cli(capsys, config, "incident", "list")
    assert code == 0 and out.splitlines()[1].split()[:2] == ["1", "monitoring"] and "Slow search" in out
    page = await (await client.get("/api/read/v1/pages/public")).json()
    assert [[u["message"] for u in n["updates"]] for n in page["incidents"]] == [["Index rebuilt", "Looking"]]
    assert (await _cli(capsys, config, "incident", "resolve", "1"))[:2] == (0, "incident 1 resolved\n")
    assert (await _cli(capsys, config, "incident", "resolve", "7")) == (1, "", "upwatch: no incident with id 7\n")
    page = await (await client.get("/api/read/v1/pages/public")).json()
    assert [(n["state"], n["updates"][0]["message"]) for n in page["incidents"]] == [("resolved", "Resolved.")]
