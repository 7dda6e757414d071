"""Badges: SVG with the figures of the read API, cache headers, 304 on a matching ETag, private ones guarded."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from aiohttp.test_utils import TestClient

from tests.pages.conftest import TOKEN, roll_up, seed
from upwatch.runtime import Runtime


@pytest.fixture
def seeded(runtime: Runtime) -> None:
    now = dt.datetime.now(dt.UTC)
    seed(runtime.database_url, "api", days=8, every=dt.timedelta(minutes=20), now=now, fail_every=4)
    seed(runtime.database_url, "secret-db", days=1, every=dt.timedelta(minutes=20), now=now)
    roll_up(runtime.database_url, now)
    with psycopg.connect(runtime.database_url, autocommit=True) as conn:  # api's newest 3 checks failed: down
        conn.execute("INSERT INTO probe_results (time, endpoint_id, id, ok, error_kind, error)"
                     " SELECT now() - k * interval '1 s', id, gen_random_uuid(), false, 'http', 'HTTP 503'"
                     " FROM endpoints, generate_series(0, 2) k WHERE name = 'api'")


async def test_uptime_badge_shows_the_read_api_figure(seeded: None, client: TestClient) -> None:
    figures = (await (await client.get("/api/read/v1/endpoints/api")).json())["windows"]["7d"]
    resp = await client.get("/badge/api/uptime/7d.svg")
    svg = await resp.text()
    assert resp.status == 200 and resp.content_type == "image/svg+xml"
    share = int(figures["ok"] / figures["checks"] * 100_000) / 1000
    assert f">{share:.3f}".rstrip("0").rstrip(".") + "%<" in svg and ">uptime 7d<" in svg
    assert resp.headers["Cache-Control"] == "public, max-age=60"
    again = await client.get("/badge/api/uptime/7d.svg", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304


@pytest.mark.parametrize(("path", "text"), [
    ("/badge/api/status.svg", ">down<"),
    ("/badge/api/response/24h.svg", " ms<"),
    ("/badge/web/uptime/30d.svg", ">no data<"),
], ids=["status", "response", "no-data"])
async def test_badges(seeded: None, client: TestClient, path: str, text: str) -> None:
    resp = await client.get(path)
    assert resp.status == 200 and text in await resp.text()


async def test_private_badge_needs_the_token(seeded: None, client: TestClient) -> None:
    assert (await client.get("/badge/secret-db/status.svg")).status == 404
    resp = await client.get("/badge/secret-db/status.svg", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200 and resp.headers["Cache-Control"] == "private, max-age=60"
    assert (await client.get("/badge/api/uptime/5d.svg")).status == 404
