"""The pages' two OpenAPI documents (read API, incident writes) match the router, and schemathesis finds no
failures against them over real HTTP (its CLI in a subprocess, as tests/push/test_schemathesis.py runs it)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.pages.conftest import ADMIN, AS_ADMIN, TOKEN

SEED = 20261202
EXAMPLES = 3
DOCS = {"read": "/api/read/v1", "write": "/api/status/v1"}


async def _doc(client: TestClient, which: str) -> dict[str, Any]:
    resp = await client.get(f"{DOCS[which]}/openapi.json")
    assert resp.status == 200
    doc: dict[str, Any] = await resp.json()
    return doc


async def test_every_pages_api_route_is_documented_and_every_documented_route_exists(admin: TestClient) -> None:
    documented = set()
    for which in DOCS:
        doc = await _doc(admin, which)
        assert doc["openapi"].startswith("3.1") and doc["servers"] == [{"url": DOCS[which]}]
        documented |= {(m, doc["servers"][0]["url"] + path) for path, ops in doc["paths"].items() for m in ops}
    routes = {(r.method.lower(), r.resource.canonical) for r in admin.server.app.router.routes()
              if r.method != "HEAD" and r.resource is not None and r.resource.canonical.startswith("/api/")
              and not r.resource.canonical.endswith("/openapi.json")}
    # aiohttp's canonical form drops the `\d+` of {id:\d+}.
    assert documented == routes


async def test_the_write_document_has_the_validated_bodies_and_every_error(admin: TestClient) -> None:
    doc = await _doc(admin, "write")
    schemas = doc["components"]["schemas"]
    new = schemas["NewIncident"]
    assert new["required"] == ["title", "message"] and new["additionalProperties"] is False
    assert new["properties"]["endpoints"]["items"] == {"enum": ["api", "secret-db", "web"]}
    assert schemas["NewUpdate"]["properties"]["state"]["default"] is None
    post = doc["paths"]["/incidents"]["post"]
    update = doc["paths"]["/incidents/{id}/updates"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/NewIncident"}
    assert set(post["responses"]) == {"201", "400", "401", "403"}
    assert set(update["responses"]) == {"201", "400", "401", "403", "404"}
    assert post["security"] == [{"adminToken": []}]
    error = update["responses"]["404"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"} and schemas["Error"]["required"] == ["error"]


async def test_a_nul_in_an_incident_is_a_400_not_a_database_error(admin: TestClient) -> None:
    resp = await admin.post("/api/status/v1/incidents", json={"title": "a\x00b", "message": "m"}, headers=AS_ADMIN)
    assert resp.status == 400
    assert (await resp.json())["error"] == "title: Value error, must not contain the NUL character (U+0000)"


@pytest.mark.parametrize("raw", [str(2**63), "9" * 5000, "null,null", "0", "٣"], ids=[
    "beyond-bigint", "beyond-int-parsing", "not-a-number", "zero", "arabic-digit"])
async def test_an_id_that_names_no_incident_is_a_json_404(admin: TestClient, raw: str) -> None:
    resp = await admin.post(f"/api/status/v1/incidents/{raw}/updates", json={"message": "m"}, headers=AS_ADMIN)
    assert resp.status == 404 and await resp.json() == {"error": f"id: no incident {raw}"}


async def _schemathesis(client: TestClient, tmp_path: Path, which: str, token: str) -> tuple[int, str]:
    schema = tmp_path / f"{which}-openapi.json"
    schema.write_text(json.dumps(await _doc(client, which)))
    base = str(client.make_url(DOCS[which]))
    args = [sys.executable, "-m", "schemathesis.cli", "run", str(schema), "--url", base, "--checks", "all",
            "--seed", str(SEED), "--max-examples", str(EXAMPLES), "--workers", "1", "--generation-database", "none",
            "--no-color", "--request-timeout", "15", "--header", f"Authorization: Bearer {token}"]
    # In a thread, so the loop keeps serving the API while schemathesis calls it.
    done = await asyncio.to_thread(subprocess.run, args, cwd=tmp_path, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"}, timeout=150)
    return done.returncode, done.stdout.decode(errors="replace")


# Two schemathesis runs of a few examples per operation; bounded at 150 s each on a loaded machine.
@pytest.mark.timeout(320)
@pytest.mark.parametrize(("which", "token"), [("read", TOKEN), ("write", ADMIN)], ids=["read-api", "incident-writes"])
async def test_schemathesis_finds_no_failures(admin: TestClient, tmp_path: Path, which: str, token: str) -> None:
    code, out = await _schemathesis(admin, tmp_path, which, token)
    assert code == 0, out
