"""User-agent families parsed at ingest, stored beside the log, searchable and groupable."""

from __future__ import annotations

from typing import Any

from push import useragents
from tests.push.conftest import Api

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
          " Version/17.1 Mobile/15E148 Safari/604.1")
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
RECORDS: list[dict[str, Any]] = [
    {"path": "/a", "user_agent": IPHONE}, {"path": "/b", "user_agent": IPHONE},
    {"path": "/c", "request_headers": {"User-Agent": FIREFOX}},  # taken from the header when the field is absent
    {"path": "/d", "user_agent": BOT}, {"path": "/e", "user_agent": "curl/8.4.0"}, {"path": "/f"},
]
EXPECTED = {"/a": ("Mobile Safari", "iOS", "iPhone"), "/b": ("Mobile Safari", "iOS", "iPhone"),
            "/c": ("Firefox", "Linux", None), "/d": ("Googlebot", None, "Spider"), "/e": ("curl", None, None),
            "/f": (None, None, None)}


async def test_families_are_stored_at_ingest_and_group_and_filter(api: Api) -> None:
    key = await api.service("shop")
    resp = await api.client.post("/logs", json=RECORDS, headers={"X-API-Key": key})
    assert resp.status == 202, await resp.text()
    rows = await api.rows("SELECT path, ua_browser, ua_os, ua_device FROM request_logs ORDER BY path")
    assert {r[0]: r[1:] for r in rows} == EXPECTED
    grouped = await api.rows("SELECT ua_browser, count(*) FROM request_logs WHERE ua_browser IS NOT NULL"
                             " GROUP BY 1 ORDER BY 2 DESC, 1")
    assert grouped == [("Mobile Safari", 2), ("Firefox", 1), ("Googlebot", 1), ("curl", 1)]
    for params, paths in (({"browser": "mobile safari"}, {"/a", "/b"}), ({"os": "Linux"}, {"/c"}),
                          ({"device": "spider"}, {"/d"}), ({"os": "iOS", "device": "iPhone"}, {"/a", "/b"})):
        found = await api.client.get("/logs", params=params, headers={"X-API-Key": key})
        body = await found.json()
        assert found.status == 200, body
        assert {item["path"] for item in body["items"]} == paths, params
        assert all(item["ua_browser"] == EXPECTED[item["path"]][0] for item in body["items"])


def test_each_distinct_user_agent_is_parsed_once() -> None:
    useragents.families.cache_clear()
    for _ in range(50):
        assert useragents.families(FIREFOX) == ("Firefox", "Linux", None)
    info = useragents.families.cache_info()
    assert (info.misses, info.hits) == (1, 49)
    assert useragents.families(None) == useragents.families("") == (None, None, None)
