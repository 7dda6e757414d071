"""The OpenAPI document matches the router, and no generated request makes the server answer 5xx.

The seeded random generator here is driven by the document itself; test_schemathesis.py runs
schemathesis against it too. The mismatches schemathesis found each have a plain test below.
"""

from __future__ import annotations

import json
import random
import string
from typing import Any

from aiohttp import web

from tests.push.conftest import Api


def routes_of(app: web.Application) -> set[tuple[str, str]]:
    return {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
            if r.method != "HEAD" and r.resource is not None}


async def test_every_route_is_documented_and_every_documented_route_exists(api: Api) -> None:
    resp = await api.client.get("/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == routes_of(api.client.server.app)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (method, path)
            for param in op.get("parameters", []):
                if param["in"] == "path":
                    assert "{" + param["name"] + "}" in path
    schemas = doc["components"]["schemas"]
    assert {"LogRecord", "Error", "ServiceIn", "CheckIn"} <= set(schemas)
    assert set(schemas["LogRecord"]["properties"]) >= {"timestamp", "status_code", "latency_ms", "route"}


# ---- seeded random requests from the document -------------------------------------------------

def junk(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value, biased toward awkward ones."""
    choices: list[Any] = [None, True, -1, 0, 10**20, 1.5, -0.0, "", "\x00", "\ud800x", "🙂" * 3, "a" * 300,
                          "2026-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "1e309", "5xx"]
    kind = rng.random()
    if depth < 2 and kind < 0.15:
        return [junk(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 2 and kind < 0.3:
        return {rng.choice(["a", "ok", "name", "\x00"]): junk(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if kind < 0.5:
        return "".join(rng.choice(string.printable) for _ in range(rng.randint(0, 12)))
    return rng.choice(choices)


def from_schema(rng: random.Random, schema: dict[str, Any], schemas: dict[str, Any], depth: int = 0) -> Any:
    """Mostly valid values for `schema`, sometimes junk."""
    if rng.random() < 0.15 or depth > 4:
        return junk(rng)
    if "$ref" in schema:
        return from_schema(rng, schemas[schema["$ref"].rsplit("/", 1)[1]], schemas, depth + 1)
    for combo in ("anyOf", "oneOf"):
        if combo in schema:
            return from_schema(rng, rng.choice(schema[combo]), schemas, depth + 1)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        chosen = [k for k in props if k in schema.get("required", []) or rng.random() < 0.5]
        return {k: from_schema(rng, props[k], schemas, depth + 1) for k in chosen}
    if kind == "array":
        return [from_schema(rng, schema.get("items", {}), schemas, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "integer":
        return rng.choice([schema.get("minimum", 0), schema.get("maximum", 600), rng.randint(-5, 700)])
    if kind == "number":
        return rng.choice([0, 0.5, 12.25, 1e6, -1.0])
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if schema.get("format") == "date-time":
        return rng.choice(["2026-11-22T10:00:00Z", "2026-11-22T10:00:00", "1999-01-01T00:00:00+05:00"])
    if schema.get("format") == "ipvanyaddress" or "ip" in schema.get("title", "").lower():
        return rng.choice(["10.0.0.1", "::1", "300.1.1.1"])
    return rng.choice(["x", "/users/{id}", "GET", "prod", "shop", "nightly-backup", "a b"])


def query_value(rng: random.Random, schema: dict[str, Any], schemas: dict[str, Any]) -> str:
    value = from_schema(rng, schema, schemas)
    return value if isinstance(value, str) else json.dumps(value) if rng.random() < 0.5 else str(value)


def path_value(rng: random.Random, name: str, ids: list[int]) -> str:
    options = ["nightly-backup", "shop", "nope", "%00", "%F0%9F%99%82", "9" * 30, "-1", "uwk_x", "a.b"]
    if name == "id":
        options += [str(i) for i in ids] + ["0", "18446744073709551616"]
    return rng.choice(options)


async def test_random_requests_never_get_a_server_error(api: Api) -> None:
    rng = random.Random(20261122)
    key = await api.service("shop", base_url="http://127.0.0.1:9")
    resp = await api.client.post("/logs", json=[{"path": "/seed", "url": "http://127.0.0.1:9/seed"}] * 3,
                                 headers={"X-API-Key": key})
    assert resp.status == 202
    ids = [row[0] for row in await api.rows("SELECT id FROM request_logs")]
    doc = await (await api.client.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    operations = [(path, method, op) for path, ops in doc["paths"].items() for method, op in ops.items()]
    seen: dict[int, int] = {}
    for _ in range(500):
        path, method, op = rng.choice(operations)
        url = path
        for param in (p for p in op.get("parameters", []) if p["in"] == "path"):
            url = url.replace("{" + param["name"] + "}", path_value(rng, param["name"], ids))
        params = {p["name"]: query_value(rng, p["schema"], schemas) for p in op.get("parameters", [])
                  if p["in"] == "query" and rng.random() < 0.4}
        headers = rng.choice([{}, api.admin, {"Authorization": f"Bearer {key}"}, {"X-API-Key": "uwk_garbage"},
                              {"Authorization": "Basic abc"}])
        data: bytes | None = None
        if "requestBody" in op or rng.random() < 0.1:
            content = op.get("requestBody", {}).get("content", {"application/json": {"schema": {}}})
            ctype = rng.choice([*content, "text/plain", "application/json"])
            schema = content.get(ctype, {}).get("schema", {})
            body = from_schema(rng, schema, schemas) if schema else junk(rng)
            text = json.dumps(body) if rng.random() < 0.9 else json.dumps(body)[:-1]
            if ctype == "application/x-ndjson" and isinstance(body, list):
                text = "\n".join(json.dumps(b) for b in body)
            data = text.encode("utf-8", "surrogatepass")
            headers = {**headers, "Content-Type": ctype}
        resp = await api.client.request(method.upper(), url, params=params, data=data, headers=headers)
        seen[resp.status] = seen.get(resp.status, 0) + 1
        assert resp.status < 500 or resp.status == 503, (method, url, params, data, await resp.text())
        if resp.status == 503:
            assert "queue" in (await resp.text()), (method, url)
        documented = {int(s) for s in op["responses"]}
        assert resp.status in documented | {404}, (method, url, params, data, resp.status, await resp.text())
    assert len(seen) >= 5, seen  # the generator reached many different answers


async def test_app_works_mounted_under_api_v1(api: Api) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from push import setup

    key = await api.service("shop")
    root = web.Application()
    setup(root, api.runtime, api.writer)  # the prober listener's extension hook
    client = TestClient(TestServer(root, host="127.0.0.1"))
    await client.start_server()
    try:
        resp = await client.post("/api/v1/logs", json={"path": "/mounted"}, headers={"X-API-Key": key})
        assert resp.status == 202
        assert (await client.get("/api/v1/openapi.json")).status == 200
        assert (await client.get("/api/v1/services", headers={"Authorization": "Bearer not-it"})).status == 401
    finally:
        await client.close()
    assert await api.rows("SELECT path FROM request_logs") == [("/mounted",)]


async def test_what_the_document_promises_is_accepted(api: Api) -> None:
    key = await api.service("shop")
    headers = {"Authorization": f"Bearer {key}"}
    resp = await api.client.post("/logs", json={"path": "/a", "status_code": 100.0, "user_id": 7.0}, headers=headers)
    assert resp.status == 202, await resp.text()  # JSON Schema's integer includes 100.0
    assert await api.rows("SELECT status_code, user_id FROM request_logs") == [(100, "7")]
    for bad in (100.5, True, "100"):
        resp = await api.client.post("/logs", json={"status_code": bad}, headers=headers)
        assert resp.status == 422, bad
    resp = await api.client.get("/analytics", params={"bucket": "PT1H"}, headers=headers)  # format: duration
    assert resp.status == 200 and (await resp.json())["bucket"] == "1h"
    resp = await api.client.get("/logs", params={"status": ""}, headers=headers)  # status is any string or null
    assert resp.status == 200 and len((await resp.json())["items"]) == 1
    resp = await api.client.post("/services", json={"name": "other", "retention_days": 7.0}, headers=api.admin)
    assert resp.status == 201 and (await resp.json())["retention_days"] == 7


async def test_what_the_document_forbids_is_refused(api: Api) -> None:
    key = await api.service("shop")
    headers = {"Authorization": f"Bearer {key}"}
    resp = await api.client.post("/logs", json={"path": "/a"}, headers=headers)
    await api.writer.flush()
    for params in ({"to": "0.5"}, {"from": "1700000000"}, {"status": "2٠٠"}):  # a number is no date-time
        assert (await api.client.get("/logs", params=params, headers=headers)).status == 422, params
    assert (await api.client.get("/analytics", params={"to": "0.5"}, headers=headers)).status == 422
    resp = await api.client.delete("/services/shop?purge=maybe", headers=api.admin)  # purge is a boolean
    assert resp.status == 422 and (await resp.json())["details"][0]["field"] == "purge"
    assert (await api.client.get("/services/shop", headers=api.admin)).status == 200
    resp = await api.client.get("/logs/123456/replays", headers=api.admin)  # was 200 []
    assert resp.status == 404
    for body, field in (({"name": "x", "description": "a\u0000b"}, "description"),  # was a 500
                        ({"name": "x", "allowed_hosts": ["a\u0000"]}, "allowed_hosts.0"),
                        ({"name": "x", "base_url": "http://[9]:1"}, "base_url"),
                        ({"name": "shop\n"}, "name")):
        resp = await api.client.post("/services", json=body, headers=api.admin)
        assert resp.status == 422 and field in [d["field"] for d in (await resp.json())["details"]], body
    resp = await api.client.post("/services", headers=api.admin)  # the body is required
    assert resp.status == 415
    doc = await (await api.client.get("/openapi.json")).json()
    assert doc["paths"]["/services"]["post"]["requestBody"]["required"] is True


async def test_long_request_lines_are_a_documented_400(api: Api) -> None:
    resp = await api.client.get("/logs", params={"path": "x" * 9000})
    assert resp.status == 400 and resp.content_type == "text/plain"
    doc = await (await api.client.get("/openapi.json")).json()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if path != "/openapi.json":
                assert "text/plain" in op["responses"]["400"]["content"], (method, path)
