"""Secrets are masked before storage wherever they are in a pushed record or a replay, so the
read-only role (Grafana's) never sees one; names are matched by tokens, not substrings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from push.masking import masking
from tests.push.conftest import Api

MASKING = masking(["X-Session"], ["tenant-ref"])

SECRET_NAMES = ["Authorization", "authorization ", " X-Api-Key", "x_api_key", "apiKey", "APIKEY", "access_token",
                "accessToken", "accesstoken", "X-Amz-Signature", "sig", "client_secret", "db_password", "passwd",
                "PHPSESSID", "JSESSIONID", "connect.sid", "X-CSRFToken", "refresh-token", "Set-Cookie",
                "user[password]", "private_key", "X-Auth-Token", "tenant_ref", "TenantRef"]
PLAIN_NAMES = ["keyboard", "monkey", "author", "tokenizer", "page", "q", "User-Agent", "Content-Type",
               "Keep-Alive", "keys", "secretary", "passwordless", "tenant", "X-Request-Id"]


@pytest.mark.parametrize("name", SECRET_NAMES, ids=SECRET_NAMES)
def test_secret_looking_names_are_masked(name: str) -> None:
    assert MASKING.header(name) and MASKING.json({name: "v"}) == {name: "***"}


@pytest.mark.parametrize("name", PLAIN_NAMES, ids=PLAIN_NAMES)
def test_ordinary_names_are_kept(name: str) -> None:
    assert not MASKING.header(name) and MASKING.json({name: "v"}) == {name: "v"}


URLS = [
    ("https://bot:hunter2@shop.test/a?token=t1&page=2#id_token=t2&x=1",
     "https://***@shop.test/a?token=***&page=2#id_token=***&x=1"),
    ("/login?user=bob&Pass%77ord=p1&next=%2Fhome", "/login?user=bob&Pass%77ord=***&next=%2Fhome"),
    ("/plain?keyboard=qwerty&empty_token=", "/plain?keyboard=qwerty&empty_token="),
    ("/no/query", "/no/query"),
    ("/cart;jsessionid=j1;v=2/items?x=1", "/cart;jsessionid=***;v=2/items?x=1"),
]


@pytest.mark.parametrize(("url", "stored"), URLS, ids=["userinfo-query-fragment", "encoded-name", "kept", "plain",
                                                      "path-parameter"])
def test_urls_keep_everything_but_the_secrets_byte_for_byte(url: str, stored: str) -> None:
    assert MASKING.url(url) == stored


BODIES = [
    ('{"user": {"name": "bob", "password": "p1"}, "keyboard": "k"}',
     '{"user":{"name":"bob","password":"***"},"keyboard":"k"}'),
    ('  {"ok": true}', '  {"ok": true}'),  # nothing secret: kept as sent
    ('{"password": "p1", "note": "cut sho', '{"password": "***", "note": "cut sho'),  # not valid JSON
    ("username=bob&pwd=p1&next=%2F", "username=bob&pwd=***&next=%2F"),
    ("hello token=x world", "hello token=x world"),  # prose, not a form
    ({"auth": {"user": "a", "pass": "b"}, "has_token": True, "session": None},
     {"auth": "***", "has_token": True, "session": None}),
    ('[' * 5000 + '{"token": "t1"}' + ']' * 5000, '[' * 5000 + '{"token": "***"}' + ']' * 5000),
]


@pytest.mark.parametrize(("body", "stored"), BODIES, ids=["json-text", "json-kept", "cut-json", "form", "prose",
                                                          "json-value", "too-deep-to-parse"])
def test_bodies_are_masked_by_field_name(body: Any, stored: Any) -> None:
    assert MASKING.body(body) == stored


# Every raw secret below contains this marker; none may be readable after storage.
MARK = "SeKrEt"


def record(n: int) -> dict[str, Any]:
    return {
        "method": "POST",
        "url": f"https://bot:{MARK}pw{n}@shop.test/api?access_token={MARK}q{n}&page=2#id_token={MARK}f{n}",
        "path": f"/api?apiKey={MARK}p{n}",
        "query_params": {"access_token": f"{MARK}qp{n}", "page": "2", "filter": {"client_secret": [f"{MARK}n{n}"]}},
        "request_headers": {"Authorization ": f"Bearer {MARK}a{n}", " x-api-key": f"{MARK}k{n}",
                            "X-Auth-Token": f"{MARK}t{n}", "x-SESSION": f"{MARK}s{n}", "X-Trace": "trace-1"},
        "request_body": {"user": {"name": "bob", "credentials": {"password": f"{MARK}b{n}"}},
                         "items": [{"refreshToken": f"{MARK}r{n}", "keyboard": "qwerty"}]},
        "response_headers": {"Set-Cookie ": f"sid={MARK}c{n}", "Content-Type": "application/json"},
        "response_body": f'{{"session": {{"id": "{MARK}sb{n}"}}, "ok": true}}',
        "tags": {"sessionid": f"{MARK}tag{n}", "env": "prod"},
    }


def reader_rows(database_url: str, table: str) -> list[str]:
    """Every row of `table` as JSON text, read as the read-only role Grafana uses."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET ROLE upwatch_reader")
        query = psycopg.sql.SQL("SELECT row_to_json(t)::text FROM {} t").format(psycopg.sql.Identifier(table))
        return [r[0] for r in conn.execute(query).fetchall()]


async def test_no_raw_secret_reaches_the_database(api: Api, database_url: str) -> None:
    key = await api.service("shop")
    form = {"method": "POST", "path": "/login", "request_body": f"username=bob&pwd={MARK}form&next=%2F",
            "request_headers": {"Content-Type": "application/x-www-form-urlencoded"}}
    resp = await api.client.post("/logs", json=[record(1), record(2), form], headers={"X-API-Key": key})
    assert resp.status == 202, await resp.text()
    await api.writer.flush()
    rows = reader_rows(database_url, "request_logs")
    assert len(rows) == 3
    assert not [r for r in rows if MARK in r]
    stored = await api.rows("SELECT url, path, query_params, request_headers, request_body, tags"
                            " FROM request_logs WHERE url IS NOT NULL ORDER BY id LIMIT 1")
    url, path, params, headers, _, tags = stored[0]
    assert url == "https://***@shop.test/api?access_token=***&page=2#id_token=***" and path == "/api?apiKey=***"
    assert params == {"access_token": "***", "page": "2", "filter": {"client_secret": "***"}}
    assert headers["X-Trace"] == "trace-1" and headers["Authorization "] == "***" and headers[" x-api-key"] == "***"
    assert tags == {"sessionid": "***", "env": "prod"}
    ((form_body,),) = await api.rows("SELECT request_body FROM request_logs WHERE path = '/login'")
    assert form_body == "username=bob&pwd=***&next=%2F"


@pytest.fixture
async def leaky() -> AsyncIterator[TestServer]:
    """A real server that answers with secrets in its headers and body."""

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"token": f"{MARK}resp", "data": {"api_key": f"{MARK}resp2"}, "n": 1},
                                 headers={"X-Auth-Token": f"{MARK}rh"})

    server = TestServer(web.Application(), host="127.0.0.1")
    server.app.router.add_get("/{tail:.*}", handler)
    await server.start_server()
    yield server
    await server.close()


async def test_a_replay_stores_no_raw_secret(api: Api, database_url: str, leaky: TestServer) -> None:
    base = f"http://127.0.0.1:{leaky.port}"
    key = await api.service("shop", base_url=base)
    resp = await api.client.post("/logs", json={"method": "GET", "url": f"{base}/x?page=1"}, headers={"X-API-Key": key})
    assert resp.status == 202
    ((log_id,),) = await api.rows("SELECT id FROM request_logs")
    resp = await api.client.post(f"/logs/{log_id}/replay", headers=api.admin,
                                 json={"url": f"{base}/x?signature={MARK}u", "headers": {"X-Api-Key": f"{MARK}h"}})
    assert resp.status == 201, await resp.text()
    answer = await resp.json()
    assert MARK not in str(answer) and answer["response_headers"]["X-Auth-Token"] == "***"
    rows = reader_rows(database_url, "request_replays")
    # The body was cut at max_stored_body_bytes before masking, so it is no longer valid JSON.
    assert len(rows) == 1 and MARK not in rows[0] and '\\"api_key\\": \\"***\\"' in rows[0]
