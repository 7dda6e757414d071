"""Report fixtures: the real push API (tests/push's), seeded over HTTP, with its rollup job running."""

from __future__ import annotations

import asyncio
import math
import random
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from tests.push.conftest import Api, start_api

# Three whole UTC days ending at today's midnight (in the past, inside the 30-day retention).
TO = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
FROM = TO - timedelta(days=3)
ROUTES = [("GET", "/users/{id}"), ("POST", "/orders"), ("GET", "/health")]


@pytest.fixture
async def api(database_url: str, pool: AsyncConnectionPool, tmp_path: Path) -> AsyncIterator[Api]:
    running, _ = await start_api(database_url, pool, tmp_path)
    yield running
    await running.client.close()
    await running.writer.stop()


def seeded_records(count: int = 240) -> list[dict[str, Any]]:
    """Requests every 17 minutes from FROM: three routes, statuses with 5xx and transport errors, a
    dozen client IPs (some rows without one), latencies spread over two orders of magnitude."""
    rng = random.Random(19)
    out = []
    for i in range(count):
        method, route = ROUTES[i % 3]
        status = 503 if i % 11 == 0 else 500 if i % 17 == 0 else 404 if i % 7 == 0 else 200
        record: dict[str, Any] = {
            "timestamp": (FROM + timedelta(minutes=17 * i)).isoformat(), "method": method,
            "path": route.replace("{id}", str(i)), "route": route, "status_code": status,
            "latency_ms": round(math.exp(rng.uniform(1.0, 6.0)), 3)}
        if i % 13 == 5:
            record["error"] = "connection reset"
        if i % 9 != 4:
            record["source_ip"] = f"10.1.{i % 3}.{(i * 7) % 12}"
        out.append(record)
    return out


def outside_records() -> list[dict[str, Any]]:
    """Rows just outside [FROM, TO): an hour before, and exactly at TO (the end is exclusive)."""
    return [{"timestamp": t.isoformat(), "method": "GET", "route": "/outside", "status_code": 500,
             "latency_ms": 99999.0, "source_ip": "192.0.2.99"} for t in (FROM - timedelta(minutes=30), TO)]


@dataclass
class Seeded:
    """What a report test seeded: the service's key and the in-range rows."""

    key: str
    records: list[dict[str, Any]]


async def post(api: Api, key: str, records: list[dict[str, Any]]) -> None:
    for i in range(0, len(records), 100):  # the test config's max_batch_records
        resp = await api.client.post("/logs", json=records[i:i + 100], headers={"Authorization": f"Bearer {key}"})
        assert resp.status == 202, await resp.text()
    await api.writer.flush()


async def rolled_up(api: Api) -> None:
    """Wait (bounded) until the app's rollup job has taken in every stored log row."""
    for _ in range(300):
        (pending,), = await api.rows(
            "SELECT count(*) FROM request_logs WHERE id > coalesce("
            "(SELECT last_id FROM rollup_watermarks WHERE name = 'request_rollup_1m'), 0)")
        if pending == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the rollup job did not catch up in 15 s")


@pytest.fixture
async def seeded(api: Api) -> Seeded:
    key = await api.service("shop")
    other = await api.service("other")
    records = seeded_records()
    await post(api, key, records + outside_records())
    await post(api, other, seeded_records(30))  # another service's traffic in the same range
    await rolled_up(api)
    return Seeded(key, records)


POPPLER = shutil.which("pdftoppm") and shutil.which("pdftotext") and shutil.which("pdfinfo")
needs_poppler = pytest.mark.skipif(not POPPLER, reason="poppler-utils (pdftoppm, pdftotext, pdfinfo) not installed")


def pdf_pages(pdf: Path) -> int:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    return int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))


def pdf_text(pdf: Path, page: int) -> str:
    return subprocess.run(["pdftotext", "-layout", "-f", str(page), "-l", str(page), str(pdf), "-"],
                          capture_output=True, text=True, check=True).stdout
