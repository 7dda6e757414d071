"""The route table applies each operation's auth, query and body before its handler (operations.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from prober.writer import BatchWriter
from push import create_app
from push.context import reply
from push.keys import Caller
from push.openapi import document
from push.operations import KEY, Call, Operation, json_body, operation, query_model
from push.routes import OPERATIONS
from tests.push.conftest import ADMIN_TOKEN, Api, make_config
from upwatch.runtime import Runtime

PATH_VALUES = {"{id}": "1", "{name}": "shop", "{prefix}": "uwk_abcdefgh"}
# Invalid for every query model of the table, so a query read before the credentials would answer 422.
BAD_QUERY = {"limit": "0", "from": "yesterday", "to": "x", "all": "maybe", "purge": "maybe", "bucket": "0s"}


def concrete(path: str) -> str:
    for param, value in PATH_VALUES.items():
        path = path.replace(param, value)
    return path


GUARDED = [op for op in OPERATIONS if op.auth.scheme != "none"]


@pytest.mark.parametrize("op", GUARDED, ids=[f"{op.method} {op.path}" for op in GUARDED])
async def test_credentials_are_checked_before_query_and_body(api: Api, op: Operation) -> None:
    resp = await api.client.request(op.method, concrete(op.path), params=BAD_QUERY, data=b"{not json",
                                     headers={"Content-Type": "application/json"})
    assert resp.status == 401
    assert await resp.json() == {"error": "missing or invalid credentials"}
    assert resp.headers["WWW-Authenticate"] == "Bearer"


async def test_a_wrong_key_is_refused_like_no_key(api: Api) -> None:
    await api.service()
    resp = await api.client.get("/logs", params={"limit": "0"}, headers={"X-API-Key": "uwk_" + "x" * 40})
    assert resp.status == 401 and await resp.json() == {"error": "missing or invalid credentials"}


async def test_the_admin_token_is_refused_by_delete_logs_before_its_query(api: Api) -> None:
    resp = await api.client.delete("/logs", params={"all": "maybe"}, headers=api.admin)
    assert resp.status == 403 and "purges a whole service" in (await resp.json())["error"]


# ---- a throw-away operation, declared like those of the table --------------------------------

class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Annotated[StrictStr, Field(min_length=1, max_length=20)]


class NoteQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    copies: Annotated[int, Field(ge=1, le=3)] = 1


seen: list[Call[Caller, NoteIn, NoteQuery]] = []


async def note(call: Call[Caller, NoteIn, NoteQuery]) -> web.Response:
    seen.append(call)
    return reply({"service": call.caller.service, "notes": [call.body.text] * call.query.copies}, status=201)


NOTE = operation("POST", "/notes/{name}", note, "Leave a note", {201: "noted"},
                 auth=KEY, body=json_body(NoteIn), query=query_model(NoteQuery))


@pytest.fixture
async def notes(database_url: str, pool: AsyncConnectionPool, tmp_path: Path) -> AsyncIterator[TestClient]:
    runtime = Runtime(make_config(database_url), tmp_path / "test.yaml", database_url, pool)
    writer = BatchWriter(pool, tmp_path / "notes-spool", flush_interval_s=0.05)  # `api` has its own
    await writer.start()
    app = create_app(runtime, writer, admin_token=ADMIN_TOKEN, background_every_s=0.2)
    app.router.add_routes([NOTE.route()])
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    seen.clear()
    yield client
    await client.close()
    await writer.stop()


async def test_a_declared_operation_gets_its_caller_body_and_query_typed(notes: TestClient, api: Api) -> None:
    key = {"Authorization": f"Bearer {await api.service('shop')}"}
    resp = await notes.post("/notes/x", params={"copies": "2"}, json={"text": "hi"}, headers=key)
    assert resp.status == 201
    assert await resp.json() == {"service": "shop", "notes": ["hi", "hi"]}
    (call,) = seen
    assert isinstance(call.caller, Caller) and call.body == NoteIn(text="hi") and call.query == NoteQuery(copies=2)


@pytest.mark.parametrize(("params", "body", "headers", "status", "field"), [
    ({}, b'{"text": "hi"}', {}, 401, None),
    ({"copies": "9"}, b'{"text": "hi"}', {"key": "yes"}, 422, "copies"),
    ({"colour": "red"}, b'{"text": "hi"}', {"key": "yes"}, 422, "colour"),
    ({}, b'{"text": ""}', {"key": "yes"}, 422, "text"),
    ({}, b'{"text": "hi", "extra": 1}', {"key": "yes"}, 422, "extra"),
    ({}, b'{"text": ', {"key": "yes"}, 400, None),
    ({}, b"text=hi", {"key": "yes", "Content-Type": "application/x-www-form-urlencoded"}, 415, None),
], ids=["no key", "query out of range", "unknown parameter", "empty text", "unknown field", "broken JSON",
        "form body"])
async def test_a_declared_operation_refuses_before_its_handler(notes: TestClient, api: Api, params: dict[str, str],
                                                              body: bytes, headers: dict[str, str], status: int,
                                                              field: str | None) -> None:
    sent = {"Content-Type": headers.get("Content-Type", "application/json")}
    if headers.get("key"):
        sent["X-API-Key"] = await api.service("shop")
    resp = await notes.post("/notes/x", params=params, data=body, headers=sent)
    assert resp.status == status
    answer = await resp.json()
    assert answer["error"]
    if field is not None:
        assert [d["field"] for d in answer["details"]] == [field]
    assert seen == []


def test_a_declared_operation_is_documented_from_its_declaration() -> None:
    doc = document((NOTE,))
    spec = doc["paths"]["/notes/{name}"]["post"]
    assert spec["security"] == [{"apiKey": []}, {"apiKeyHeader": []}]
    assert [(p["name"], p["in"]) for p in spec["parameters"]] == [("name", "path"), ("copies", "query")]
    assert spec["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/NoteIn"}
    assert "NoteIn" in doc["components"]["schemas"]
