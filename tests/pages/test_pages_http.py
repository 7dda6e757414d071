"""Status pages, the read API and badges over real HTTP on seeded, rolled-up data."""

from __future__ import annotations

import base64
import datetime as dt
import re

import psycopg
import pytest
from aiohttp.test_utils import TestClient

from tests.pages.conftest import TOKEN, roll_up, seed
from upwatch.runtime import Runtime


def _prepare(runtime: Runtime) -> dt.datetime:
    now = dt.datetime.now(dt.UTC)
    seed(runtime.database_url, "api", days=10, every=dt.timedelta(minutes=30), now=now)
    seed(runtime.database_url, "secret-db", days=2, every=dt.timedelta(minutes=30), now=now)
    roll_up(runtime.database_url, now)
    with psycopg.connect(runtime.database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO probe_results (time, endpoint_id, id, ok, latency_ms) SELECT now(), id,"
                     " gen_random_uuid(), true, 120 FROM endpoints WHERE name = 'api'")
        conn.execute("INSERT INTO incidents (series, endpoint_id, started_at, ended_at, peak_score, severity, reason)"
                     " SELECT 'latency:api', id, now() - interval '10 min', now(), 0.9, 'high',"
                     " 'latency 870 ms vs usual 120±15 ms' FROM endpoints WHERE name = 'api'")
    return now


async def test_public_page_shows_state_uptime_history_and_the_detector_reason(runtime: Runtime,
                                                                             client: TestClient) -> None:
    _prepare(runtime)
    resp = await client.get("/status/public")
    html = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html"
    api = html[html.index('data-endpoint="api"'):html.index('data-endpoint="web"')]
    assert "Degraded" in api and "Unusual for this endpoint: latency 870 ms vs usual 120±15 ms" in api
    assert len(re.findall(r"<rect ", api)) == 90
    assert re.search(r'data-window="7d">\d+(\.\d+)?%<', api)
    web = html[html.index('data-endpoint="web"'):]
    assert "No data" in web and web.count("no checks") == 90
    assert "secret-db" not in html  # not on this page


async def test_user_text_is_escaped(runtime: Runtime, client: TestClient) -> None:
    html = await (await client.get("/status/public")).text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Example &lt;b&gt;status&lt;/b&gt;" in html


async def test_private_page_needs_its_token(runtime: Runtime, client: TestClient) -> None:
    _prepare(runtime)
    denied = await client.get("/status/internal")
    assert denied.status == 401 and denied.headers["WWW-Authenticate"].startswith("Basic ")
    wrong = await client.get("/status/internal", headers={"Authorization": "Bearer not-the-token-at-all"})
    assert wrong.status == 401
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    for header in (f"Bearer {TOKEN}", f"Basic {basic}"):
        resp = await client.get("/status/internal", headers={"Authorization": header})
        assert resp.status == 200 and "secret-db" in await resp.text()
        assert resp.headers["Cache-Control"] == "private, no-store"
    assert (await client.get("/status/nope")).status == 404


async def test_read_api_shows_only_what_the_caller_may_read(runtime: Runtime, client: TestClient) -> None:
    _prepare(runtime)
    anonymous = await (await client.get("/api/read/v1/endpoints")).json()
    assert [e["name"] for e in anonymous] == ["api", "web"]
    api = anonymous[0]
    assert api["state"] == "degraded" and api["windows"]["24h"]["checks"] > 0
    assert api["incidents"][0]["reason"].startswith("latency 870 ms")
    assert (await client.get("/api/read/v1/endpoints/secret-db")).status == 404
    auth = {"Authorization": f"Bearer {TOKEN}"}
    private = await (await client.get("/api/read/v1/endpoints/secret-db", headers=auth)).json()
    assert private["name"] == "secret-db" and len(private["days"]) == 90
    results = await client.get("/api/read/v1/endpoints/api/results?limit=5")
    rows = await results.json()
    assert len(rows) == 5 and rows[0]["ok"] is True and rows[0]["latency_ms"] == 120
    bad = await client.get("/api/read/v1/endpoints/api/results?limit=0")
    assert bad.status == 400 and (await bad.json())["error"].startswith("limit:")
    page = await (await client.get("/api/read/v1/pages/public")).json()
    assert page["groups"][0]["name"] == "Core" and page["state"] == "degraded"
    incidents = await (await client.get("/api/read/v1/incidents")).json()
    assert [i["endpoint"] for i in incidents] == ["api"]
    spec = await (await client.get("/api/read/v1/openapi.json")).json()
    assert "/endpoints/{name}/results" in spec["paths"]


def test_example_config_has_a_status_page_of_its_endpoints() -> None:
    from pathlib import Path

    from prober.pages.data import layout
    from upwatch import config

    path = Path(__file__).parents[2] / "examples" / "upwatch.yaml"
    cfg = config.parse(path.read_text(), str(path), {})
    page = cfg.status_pages[0]
    names = [n for _, members in layout(page, cfg) for n in members]
    assert page.public and names and set(names) <= {e.name for e in cfg.endpoints}


async def test_index_lists_the_pages_the_caller_may_read(client: TestClient) -> None:
    anonymous = await (await client.get("/status")).text()
    assert 'href="/status/public"' in anonymous and "/status/internal" not in anonymous
    assert "Example &lt;b&gt;status&lt;/b&gt;" in anonymous
    with_token = await (await client.get("/status", headers={"Authorization": f"Bearer {TOKEN}"})).text()
    assert 'href="/status/internal"' in with_token
    listed = await (await client.get("/api/read/v1/pages")).json()
    assert [p["slug"] for p in listed] == ["public"]


async def test_down_takes_the_alerters_failure_threshold_in_a_row(runtime: Runtime, client: TestClient) -> None:
    async def state_after(failures: int) -> str:
        with psycopg.connect(runtime.database_url, autocommit=True) as conn:
            conn.execute("INSERT INTO probe_results (time, endpoint_id, id, ok) SELECT now() - interval '1 min', id,"
                         " gen_random_uuid(), true FROM endpoints WHERE name = 'web'")
            conn.execute("INSERT INTO probe_results (time, endpoint_id, id, ok, error_kind, error)"
                         " SELECT now() - interval '30 s' + k * interval '1 s', id, gen_random_uuid(), false, 'http',"
                         " 'HTTP 503' FROM endpoints, generate_series(1, %s) k WHERE name = 'web'", (failures,))
        return str((await (await client.get("/api/read/v1/endpoints/web")).json())["state"])

    assert runtime.config.alerting.failure_threshold == 3
    assert await state_after(1) == "degraded"  # a blip, or a failure not confirmed yet
    assert await state_after(2) == "down"  # 1 + 2 newest: three in a row


async def test_a_successful_check_that_meets_a_degraded_condition_is_degraded(runtime: Runtime,
                                                                             client: TestClient) -> None:
    async def after(latency: float, ok: bool = True, cert_days: float = 90) -> dict[str, object]:
        with psycopg.connect(runtime.database_url, autocommit=True) as conn:
            conn.execute("INSERT INTO probe_results (time, endpoint_id, id, ok, latency_ms, status_code,"
                         " cert_not_after, error_kind, error) SELECT now(), id, gen_random_uuid(), %s, %s, 200,"
                         " now() + %s * interval '1 day', %s, %s FROM endpoints WHERE name = 'web'",
                         (ok, latency, cert_days, None if ok else "http", None if ok else "HTTP 503"))
        body: dict[str, object] = await (await client.get("/api/read/v1/endpoints/web")).json()
        return body

    fast = await after(120)
    assert (fast["state"], fast["degraded_by"]) == ("up", None)
    slow = await after(950)
    assert slow["state"] == "degraded" and str(slow["degraded_by"]).startswith("[RESPONSE_TIME] > 800 (was 950")
    html = await (await client.get("/status/public")).text()
    web = html[html.index('data-endpoint="web"'):]
    assert "Degraded: [RESPONSE_TIME] &gt; 800 (was 950" in web[:web.index("</article>")]
    expiring = await after(120, cert_days=2)
    assert expiring["state"] == "degraded" and str(expiring["degraded_by"]).startswith("[CERTIFICATE_EXPIRATION] < 72h")
    failed = await after(950, ok=False)  # a failure is judged by failure_threshold, not by these conditions
    assert (failed["state"], failed["degraded_by"]) == ("degraded", None)


@pytest.mark.parametrize(("item", "why"), [
    ("'[BODY].status == DOWN'", "may use [STATUS], [RESPONSE_TIME], [CERTIFICATE_EXPIRATION] only"),
    ("'[STATUS] = 200'", "condition '[STATUS] = 200'"),
    ("{max_latency: 300ms}", "a string that holds when degraded"),
])
def test_degraded_conditions_use_stored_fields_only(item: str, why: str) -> None:
    from upwatch import config

    text = f"endpoints:\n  - name: a\n    url: http://127.0.0.1:9/\n    degraded: [{item}]\n"
    with pytest.raises(config.ConfigError) as raised:
        config.parse(text, "t.yaml", {})
    assert str(raised.value).startswith("t.yaml:4: endpoints[0].degraded[0]:") and why in str(raised.value)


async def test_each_location_has_its_own_state_and_min_locations_decides_down(runtime: Runtime,
                                                                              client: TestClient) -> None:
    from prober.pages import data

    with psycopg.connect(runtime.database_url, autocommit=True) as conn:
        for location, ok in (("eu-west", False), ("us-east", True)):
            conn.execute("INSERT INTO probe_results (time, endpoint_id, id, location, ok, error_kind, error)"
                         " SELECT now() - k * interval '10 s', id, gen_random_uuid(), %s, %s, %s, %s"
                         " FROM endpoints, generate_series(0, 3) k WHERE name = 'web'",
                         (location, ok, None if ok else "http", None if ok else "HTTP 503"))
    roll_up(runtime.database_url, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2))
    body = await (await client.get("/api/read/v1/endpoints/web")).json()
    assert body["locations"] == {"eu-west": "down", "us-east": "up"}
    assert body["state"] == "down"  # min_locations: 1, as the alerter decides
    html = await (await client.get("/status/public")).text()
    web = html[html.index('data-endpoint="web"'):]
    assert "eu-west: Down" in web[:web.index("</article>")] and "us-east: Operational" in web[:web.index("</article>")]
    both = runtime.config.model_copy(update={"alerting": runtime.config.alerting.model_copy(
        update={"min_locations": 2})})
    async with runtime.pool.connection() as conn:
        shown = await data.load_endpoints(conn, ["web", "api"], both, dt.datetime.now(dt.UTC))
    assert shown["web"].state == "degraded"  # down in one of the two locations it needs
    assert shown["api"].locations == {}  # never probed: no per-location state
