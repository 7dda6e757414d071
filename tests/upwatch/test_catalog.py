import json

import psycopg

from upwatch import config
from upwatch.catalog import sync_endpoints
from upwatch.masking import masking

BASE = """
endpoints:
  - name: api
    url: http://127.0.0.1:9/health
    headers: {Authorization: "Bearer very-secret", X-Trace: "1"}
    tags: [prod]
  - name: web
    url: http://127.0.0.1:9/
  - name: db
    kind: tcp
    host: 127.0.0.1
    port: 5432
"""


def rows(url: str) -> dict[str, tuple]:  # type: ignore[type-arg]
    with psycopg.connect(url) as conn:
        found = conn.execute("SELECT name, id, kind, target, config, tags, enabled FROM endpoints").fetchall()
    return {r[0]: r[1:] for r in found}


async def test_sync_adds_changes_and_disables_endpoints(pool, database_url: str) -> None:  # type: ignore[no-untyped-def]
    first = config.parse(BASE, "a.yaml", {})
    async with pool.connection() as conn:
        report = await sync_endpoints(conn, first.endpoints)
    assert sorted(report.added) == ["api", "db", "web"] and report.changed == [] and report.disabled == []
    before = rows(database_url)
    assert before["db"][1:3] == ("tcp", "127.0.0.1:5432")

    async with pool.connection() as conn:
        again = await sync_endpoints(conn, first.endpoints)
    assert again.added == again.changed == again.disabled == []
    assert again.ids == report.ids

    changed = BASE.replace("http://127.0.0.1:9/\n", "http://127.0.0.1:9/v2\n").split("  - name: db")[0]
    async with pool.connection() as conn:
        third = await sync_endpoints(conn, config.parse(changed, "b.yaml", {}).endpoints)
    assert third.changed == ["web"] and third.disabled == ["db"]
    after = rows(database_url)
    assert after["web"][2] == "http://127.0.0.1:9/v2"
    assert after["web"][0] == before["web"][0]  # same id: history stays attached
    assert after["db"][5] is False  # disabled, not deleted

    async with pool.connection() as conn:
        fourth = await sync_endpoints(conn, first.endpoints)
    assert fourth.changed == ["web", "db"] and rows(database_url)["db"][5] is True


async def test_stored_config_masks_secrets(pool, database_url: str) -> None:  # type: ignore[no-untyped-def]
    cfg = config.parse(BASE.replace("tags: [prod]", "tags: [prod]\n    auth: {bearer: tok123}"), "a.yaml", {})
    async with pool.connection() as conn:
        await sync_endpoints(conn, cfg.endpoints)
    stored = rows(database_url)["api"][3]
    assert stored["headers"] == {"Authorization": "***", "X-Trace": "1"}
    assert stored["auth"] == "***"
    assert "very-secret" not in json.dumps(stored) and "tok123" not in json.dumps(stored)


async def test_sync_since_a_report_writes_only_what_changed(pool, database_url: str) -> None:  # type: ignore[no-untyped-def]
    many = "endpoints:\n" + "".join(f"  - {{name: ep{i}, url: 'http://127.0.0.1:9/{i}'}}\n" for i in range(300))
    async with pool.connection() as conn:
        first = await sync_endpoints(conn, config.parse(many, "a.yaml", {}).endpoints)
    assert len(first.added) == 300
    with psycopg.connect(database_url) as conn:
        stamps = dict(conn.execute("SELECT name, updated_at FROM endpoints").fetchall())

    edited = many.replace("/7'", "/7b'").replace("  - {name: ep9, url: 'http://127.0.0.1:9/9'}\n", "")
    async with pool.connection() as conn:
        second = await sync_endpoints(conn, config.parse(edited, "b.yaml", {}).endpoints, since=first)
    assert (second.added, second.changed, second.disabled) == ([], ["ep7"], ["ep9"])
    assert second.ids == {n: i for n, i in first.ids.items() if n != "ep9"}
    with psycopg.connect(database_url) as conn:
        after = dict(conn.execute("SELECT name, updated_at FROM endpoints").fetchall())
    assert sorted(n for n in after if after[n] != stamps[n]) == ["ep7", "ep9"]

    async with pool.connection() as conn:  # a fresh process compares with the table instead
        third = await sync_endpoints(conn, config.parse(many, "a.yaml", {}).endpoints)
    assert (third.added, third.changed, third.disabled) == ([], ["ep7", "ep9"], [])
    assert third.ids == first.ids


SECRETS = """
endpoints:
  - name: api
    url: "https://bob:pw-1@api.test/x?api_key=key-2&page=2&dbPassword=pw-3#id_token=tok-4"
    headers: {" Authorization ": "Bearer tok-5", "X-AUTH-token": "tok-6", X-Trace: "1"}
    json: {user: bob, nested: {client_secret: sec-7}, list: [{apiKey: key-8}]}
  - name: form
    method: POST
    url: "https://api.test/login"
    body: "user=bob&password=pw-9&x_internal_id=id-10"
"""


async def test_every_stored_field_is_masked_and_an_unchanged_sync_writes_nothing(
        pool, database_url: str) -> None:  # type: ignore[no-untyped-def]
    endpoints = config.parse(SECRETS, "a.yaml", {}).endpoints
    masks = masking(names=["x-internal-id"])
    async with pool.connection() as conn:
        await sync_endpoints(conn, endpoints, masks=masks)
    stored = rows(database_url)
    text = json.dumps({name: list(row[2:4]) for name, row in stored.items()})
    assert [s for s in ("pw-1", "key-2", "pw-3", "tok-4", "tok-5", "tok-6", "sec-7", "key-8", "pw-9", "id-10")
            if s in text] == []
    api = stored["api"]
    assert api[2] == api[3]["url"] == "https://***@api.test/x?api_key=***&page=2&dbPassword=***#id_token=***"
    assert api[3]["headers"] == {" Authorization ": "***", "X-AUTH-token": "***", "X-Trace": "1"}
    assert api[3]["json"] == {"user": "bob", "nested": {"client_secret": "***"}, "list": [{"apiKey": "***"}]}
    assert stored["form"][3]["body"] == "user=bob&password=***&x_internal_id=***"
    with psycopg.connect(database_url) as conn:
        stamps = conn.execute("SELECT name, updated_at FROM endpoints ORDER BY name").fetchall()

    async with pool.connection() as conn:  # compared with the table, as at a restart
        again = await sync_endpoints(conn, config.parse(SECRETS, "a.yaml", {}).endpoints, masks=masks)
    assert again.added == again.changed == []
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT name, updated_at FROM endpoints ORDER BY name").fetchall() == stamps


async def test_stored_config_holds_the_common_keys_and_the_kinds_own(pool, database_url: str) -> None:  # type: ignore[no-untyped-def]
    cfg = config.parse(BASE, "a.yaml", {})
    async with pool.connection() as conn:
        await sync_endpoints(conn, cfg.endpoints)
    stored = rows(database_url)["db"][3]
    assert stored == {"interval": "15s", "timeout": "10s", "assertions": [], "degraded": [], "depends_on": [],
                      "host": "127.0.0.1", "port": 5432}  # no url, record_type or grace of other kinds
