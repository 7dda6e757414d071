"""The push API against its own OpenAPI document, checked by schemathesis over real HTTP.

schemathesis runs as a subprocess (its CLI), so its imports and warnings stay out of this
process; the server is the real app on 127.0.0.1 with the real writer and database.
Bounded: a fixed seed, a few examples per operation, one worker, no example database.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.push.conftest import Api

SEED = 20261201
EXAMPLES = 3
# Constraints JSON Schema cannot state, so schema-valid input may be refused with 422 (docs/push.md, OpenAPI):
# a log's timestamp inside its service's retention, `from` before `to` and at most 5000 buckets, and the
# cursor being one this API issued, a deletion naming a range or all=true, a report's range being dates or whole
# UTC hours (and naming a service for the admin), a rule following the rule grammar and naming exactly one
# endpoint or service that exists. Only these operations may answer 422 to schema-valid data.
CONFIG = """
[[operations]]
include-operation-id = "{op}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429"]
"""
SEMANTIC_422 = ("post_logs", "get_analytics", "get_logs", "delete_logs", "get_reports", "post_rules", "put_rules_name")


async def schemathesis(api: Api, tmp_path: Path, name: str, auth: str, scheme: str) -> tuple[int, str]:
    """Run schemathesis over the operations this credential (security scheme) may call, and those
    without authentication when it is a service key; its exit code and output."""
    doc = await (await api.client.get("/openapi.json")).json()
    operations = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()
                  if any(scheme in s for s in op["security"]) or (scheme == "apiKey" and not op["security"])]
    schema = tmp_path / f"{name}-openapi.json"
    schema.write_text(json.dumps(doc))
    base = str(api.client.make_url("/")).rstrip("/")
    config = tmp_path / "schemathesis.toml"
    config.write_text("".join(CONFIG.format(op=op) for op in SEMANTIC_422))
    args = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", str(schema), "--url", base,
            "--checks", "all", "--seed", str(SEED), "--max-examples", str(EXAMPLES), "--workers", "1",
            "--generation-database", "none", "--no-color", "--request-timeout", "15",
            "--header", f"Authorization: Bearer {auth}"]
    for op in operations:
        args += ["--include-operation-id", op]
    # subprocess.run in a thread (the loop keeps serving the API): it closes its pipes itself, where an
    # asyncio subprocess transport can outlive the test and warn.
    done = await asyncio.to_thread(subprocess.run, args, cwd=tmp_path, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"}, timeout=150)
    return done.returncode, done.stdout.decode(errors="replace")


async def seed(api: Api) -> str:
    # Replays may only call the allow-listed host: 127.0.0.1, on a port where nothing listens.
    key = await api.service("shop", base_url="http://127.0.0.1:9", allowed_hosts=["127.0.0.1"])
    resp = await api.client.post("/logs", json=[{"path": f"/seed/{i}", "url": f"http://127.0.0.1:9/seed/{i}",
                                                 "status_code": 200, "latency_ms": 1.5} for i in range(3)],
                                 headers={"X-API-Key": key})
    assert resp.status == 202
    await api.writer.flush()
    return key


# schemathesis runs as a subprocess bounded at 150 s (about 40 s on 2 idle cores); the default 60 s
# per-test limit cut it short on a loaded machine.
@pytest.mark.timeout(180)
async def test_schemathesis_finds_no_failures_with_a_service_key_and_the_admin_token(
        api: Api, tmp_path: Path) -> None:
    key = await seed(api)
    code, out = await schemathesis(api, tmp_path, "key", key, "apiKey")
    assert code == 0, out
    code, out = await schemathesis(api, tmp_path, "admin", api.admin["Authorization"].removeprefix("Bearer "),
                                   "adminToken")
    assert code == 0, out
    urls = [row[0] for row in await api.rows("SELECT url FROM request_replays")]
    assert all(urlsplit(url).hostname == "127.0.0.1" for url in urls), urls
