"""Log search: client IP / CIDR, hostname, user agent and user id filters, and every `order` paged by cursor."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from push.cli import register
from push.pages import encode_cursor
from tests.push.conftest import Api

BASE = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
HOSTS = ["shop.example.com", "API.example.com:8443", "[2001:db8::1]"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0", "curl/8.4.0", "python-requests/2.31"]


def record(i: int) -> dict[str, Any]:
    # Latencies repeat (i % 7) and some are missing, so the latency orders need the id tie-break.
    return {"timestamp": (BASE + timedelta(seconds=i // 2)).isoformat(), "method": "GET",
            "url": f"https://{'user:pw@' if i % 5 == 0 else ''}{HOSTS[i % 3]}/items/{i}?q=1",
            "path": f"/items/{i}", "status_code": 200,
            "latency_ms": None if i % 6 == 0 else float(i % 7),
            "source_ip": "2001:db8::abcd" if i % 8 == 0 else f"10.{i % 2}.0.{i}",
            "user_agent": AGENTS[i % 3], "user_id": f"u{i % 4}"}


async def seed(api: Api, count: int = 41) -> str:
    key = await api.service("shop")
    resp = await api.client.post("/logs", json=[record(i) for i in range(count)], headers={"X-API-Key": key})
    assert resp.status == 202, await resp.text()
    await api.writer.flush()
    return key


async def get(api: Api, key: str, **params: Any) -> tuple[int, Any]:
    resp = await api.client.get("/logs", params={k: str(v) for k, v in params.items()},
                                headers={"X-API-Key": key})
    return resp.status, await resp.json()


def expected(keep: Any, count: int = 41) -> set[str]:
    return {f"/items/{i}" for i in range(count) if keep(i)}


FILTERS = [
    ({"client_ip": "10.1.0.0/16"}, lambda i: i % 2 == 1 and i % 8 != 0),
    ({"client_ip": "10.0.0.4"}, lambda i: i == 4),
    ({"client_ip": "10.0.0.9/8"}, lambda i: i % 8 != 0),  # host bits are ignored: 10.0.0.0/8
    ({"client_ip": "2001:db8::/32"}, lambda i: i % 8 == 0),
    ({"hostname": "shop.example.com"}, lambda i: i % 3 == 0),
    ({"hostname": "api.EXAMPLE.com"}, lambda i: i % 3 == 1),  # case-insensitive, without the port
    ({"hostname": "[2001:db8::1]"}, lambda i: i % 3 == 2),
    ({"hostname": "pw"}, lambda i: False),  # user info is not the host
    ({"user_agent": "FIREFOX"}, lambda i: i % 3 == 0),
    ({"user_agent": "l/8"}, lambda i: i % 3 == 1),
    ({"user_agent": "%"}, lambda i: False),  # LIKE wildcards are literal
    ({"user_id": "u2"}, lambda i: i % 4 == 2),
    ({"client_ip": "10.0.0.0/8", "user_agent": "curl", "user_id": "u1"},
     lambda i: i % 8 != 0 and i % 3 == 1 and i % 4 == 1),
]


@pytest.mark.parametrize(("params", "keep"), FILTERS, ids=[str(f[0]) for f in FILTERS])
async def test_search_filters(api: Api, params: dict[str, str], keep: Any) -> None:
    key = await seed(api)
    status, body = await get(api, key, limit=500, **params)
    assert status == 200, body
    assert {item["path"] for item in body["items"]} == expected(keep)


def sort_key(order: str, item: dict[str, Any]) -> tuple[Any, int]:
    value = item["time"] if order.endswith("time") else (-1.0 if item["latency_ms"] is None else item["latency_ms"])
    return value, item["id"]


@pytest.mark.parametrize("order", ["-time", "time", "-latency", "latency"])
@pytest.mark.parametrize("limit", [1, 4, 7])
async def test_every_order_pages_through_all_rows_once(api: Api, order: str, limit: int) -> None:
    key = await seed(api)
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(100):  # bounded: 41 rows in pages of at least 1
        status, body = await get(api, key, order=order, limit=limit, **({"cursor": cursor} if cursor else {}))
        assert status == 200, body
        assert len(body["items"]) <= limit
        pages += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    ids = [item["id"] for item in pages]
    assert len(ids) == len(set(ids)) == 41
    assert {item["path"] for item in pages} == expected(lambda i: True)
    keys = [sort_key(order, item) for item in pages]
    assert keys == sorted(keys, reverse=order.startswith("-"))
    if order.endswith("latency"):  # ties on latency are many: the id breaks them
        assert len({k[0] for k in keys}) < len(keys)


BAD = [
    ({"client_ip": "10.0.0.256"}, "client_ip"), ({"client_ip": "10.0.0.0/33"}, "client_ip"),
    ({"client_ip": "10.0.0.0/255.0.0.0"}, "client_ip"), ({"client_ip": ":::"}, "client_ip"),
    ({"client_ip": "fe80::1%eth0"}, "client_ip"), ({"client_ip": "shop"}, "client_ip"),
    ({"hostname": "a/b"}, "hostname"), ({"hostname": "x" * 256}, "hostname"),
    ({"user_agent": "x" * 1025}, "user_agent"), ({"order": "size"}, "order"), ({"order": "TIME"}, "order"),
    ({"order": "latency", "cursor": encode_cursor(BASE, 1)}, "cursor"),
    ({"order": "-time", "cursor": encode_cursor(1.5, 1, "latency")}, "cursor"),
    ({"order": "latency", "cursor": encode_cursor(float("inf"), 1, "latency")}, "cursor"),
    ({"order": "time", "cursor": encode_cursor(1.5, 1, "time")}, "cursor"),
]


async def test_bad_search_parameters_are_422_naming_the_field(api: Api) -> None:
    key = await seed(api, 1)
    for params, field in BAD:
        status, body = await get(api, key, **params)
        assert status == 422, (params, body)
        assert [d["field"] for d in body["details"]] == [field], params


async def test_new_parameters_are_in_the_openapi_document(api: Api) -> None:
    doc = await (await api.client.get("/openapi.json")).json()
    params = {p["name"]: p["schema"] for p in doc["paths"]["/logs"]["get"]["parameters"]}
    assert params["order"]["enum"] == ["-time", "time", "-latency", "latency"]
    assert params["order"]["default"] == "-time"
    assert {"client_ip", "hostname", "user_agent", "user_id"} <= params.keys()
    assert params["user_agent"]["anyOf"][0]["maxLength"] == 1024
    assert "pattern" in params["client_ip"]["anyOf"][0] and "pattern" in params["hostname"]["anyOf"][0]


def run_cli(config_path: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["-c", str(config_path), *argv])
    return int(args.handler(args))


async def test_cli_searches_with_the_same_filters_and_orders(api: Api, database_url: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    await seed(api)
    cfg = tmp_path / "upwatch.yaml"
    cfg.write_text(f"storage:\n  database_url: {database_url}\n")
    argv = ("logs", "search", "--service", "shop", "--client-ip", "10.1.0.0/16", "--user-agent", "curl",
            "--order=latency", "--limit", "3", "--json")
    # The CLI runs its own event loop (asyncio.run), so it runs in a thread beside the test's.
    assert await asyncio.to_thread(run_cli, cfg, *argv) == 0
    out = capsys.readouterr()
    page = json.loads(out.out)
    want = sorted((-1.0 if record(i)["latency_ms"] is None else record(i)["latency_ms"], i) for i in range(41)
                  if i % 2 == 1 and i % 8 != 0 and i % 3 == 1)
    assert [item["path"] for item in page["items"]] == [f"/items/{i}" for _, i in want[:3]]
    assert page["next_cursor"] and f"--cursor {page['next_cursor']}" in out.err
    rest = await asyncio.to_thread(run_cli, cfg, *argv, "--cursor", page["next_cursor"])
    assert rest == 0
    assert [item["path"] for item in json.loads(capsys.readouterr().out)["items"]] == \
        [f"/items/{i}" for _, i in want[3:6]]
    assert await asyncio.to_thread(run_cli, cfg, "logs", "search", "--hostname", "shop.example.com",
                                   "--limit", "2") == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["ID", "TIME", "SERVICE"] and len(table) == 3
    assert all("https://shop.example.com/" in line or "***@shop.example.com" in line for line in table[1:])
    assert await asyncio.to_thread(run_cli, cfg, "logs", "search", "--client-ip", "10.0.0.0/99") == 2
    assert "--client-ip: " in capsys.readouterr().err
