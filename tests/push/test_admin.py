"""The admin HTTP API: the same service and key operations as the CLI, behind the admin token."""

from __future__ import annotations

from tests.push.conftest import Api


async def test_admin_routes_refuse_without_the_token(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "admin-secret-for-test"}):
        for method, path in [("GET", "/services"), ("POST", "/services"), ("DELETE", "/services/x"),
                             ("GET", "/services/x/keys"), ("POST", "/services/x/keys"), ("DELETE", "/keys/uwk_x")]:
            resp = await api.client.request(method, path, headers=headers)
            assert resp.status == 401, (method, path, headers)
            assert await resp.json() == {"error": "missing or invalid credentials"}


async def test_service_key_lifecycle_over_http(api: Api) -> None:
    resp = await api.client.post("/services", json={"name": "shop", "base_url": "http://127.0.0.1:9",
                                                    "privacy_level": 1}, headers=api.admin)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["privacy_level"] == 1
    assert (await api.client.post("/services", json={"name": "shop"}, headers=api.admin)).status == 409
    resp = await api.client.post("/services/shop/keys", json={"name": "ci"}, headers=api.admin)
    assert resp.status == 201
    key = (await resp.json())["key"]
    listed = await (await api.client.get("/services/shop/keys", headers=api.admin)).json()
    assert [k["prefix"] for k in listed["items"]] == [key[:12]] and "key" not in listed["items"][0]
    logged = await api.client.post("/logs", json={"path": "/x"}, headers={"Authorization": f"Bearer {key}"})
    assert logged.status == 202
    revoked = await api.client.delete(f"/keys/{key[:12]}", headers=api.admin)
    assert revoked.status == 200
    again = await api.client.post("/logs", json={"path": "/x"}, headers={"Authorization": f"Bearer {key}"})
    assert again.status == 401
    assert (await api.client.delete(f"/keys/{key[:12]}", headers=api.admin)).status == 404
    services = await (await api.client.get("/services", headers=api.admin)).json()
    assert [(s["name"], s["active_keys"]) for s in services["items"]] == [("shop", 0)]


async def test_delete_service_needs_purge_when_logs_exist(api: Api) -> None:
    key = await api.service("shop")
    assert (await api.client.post("/logs", json=[{"path": "/a"}, {"path": "/b"}],
                                  headers={"X-API-Key": key})).status == 202
    await api.writer.flush()
    resp = await api.client.delete("/services/shop", headers=api.admin)
    assert resp.status == 409 and "purge" in (await resp.json())["error"]
    resp = await api.client.delete("/services/shop?purge=true", headers=api.admin)
    assert resp.status == 200 and (await resp.json())["logs"] == 2
    assert await api.rows("SELECT count(*) FROM request_logs") == [(0,)]
    assert (await api.client.post("/logs", json={"path": "/a"}, headers={"X-API-Key": key})).status == 401
    assert (await api.client.delete("/services/shop", headers=api.admin)).status == 404


INVALID_SERVICES = [({"name": "bad name!"}, "name"), ({"name": "ok", "privacy_level": 3}, "privacy_level"),
                    ({"name": "ok", "base_url": "ftp://x"}, "base_url"), ({"name": "ok", "surprise": 1}, "surprise"),
                    ([], "(body)")]


async def test_invalid_service_is_422_naming_the_field(api: Api) -> None:
    for body, field in INVALID_SERVICES:
        resp = await api.client.post("/services", json=body, headers=api.admin)
        assert resp.status == 422, body
        assert field in [d["field"] for d in (await resp.json())["details"]]
    assert (await (await api.client.get("/services", headers=api.admin)).json())["items"] == []
