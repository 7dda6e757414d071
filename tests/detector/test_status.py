"""`upwatch detector status` against a real PostgreSQL: rows in the training window, disabled
endpoints, and what a learning series still needs."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from detector import store
from detector.series import Series
from detector.service import LiveDetector
from detector.status import needs, render, status
from upwatch.catalog import sync_endpoints
from upwatch.config.detector import Detector
from upwatch.config.endpoints import Endpoint

REPO = Path(__file__).parents[2]
MIN_ROWS = 500
CONFIG = f"""
endpoints:
  - {{name: api, url: "http://127.0.0.1:9/", interval: 15s}}
  - {{name: slow, url: "http://127.0.0.1:9/slow", interval: 30m}}
detector:
  min_training_rows: {MIN_ROWS}
  min_training_span: 1h
"""


def _endpoint(name: str, interval: str) -> Endpoint:
    return Endpoint.model_validate({"name": name, "url": f"http://127.0.0.1:9/{name}", "interval": interval})


@dataclass(frozen=True)
class Planted:
    now: datetime
    ids: dict[str, int]


async def _add_checks(pool: AsyncConnectionPool, endpoint_id: int, times: list[datetime], ok: list[bool]) -> None:
    query = "COPY probe_results (time, endpoint_id, id, ok, latency_ms) FROM STDIN"
    async with pool.connection() as conn, conn.cursor() as cur, cur.copy(query) as copy:
        for at, passed in zip(times, ok, strict=True):
            await copy.write_row((at, endpoint_id, uuid.uuid4(), passed, 100.0))


async def _add_service(conn: AsyncConnection, now: datetime) -> None:
    """shop: /a logged every minute for the last 40 minutes; /gone last seen 8 days ago, when the
    detector still modelled it."""
    cur = await conn.execute("INSERT INTO services (name) VALUES ('shop') RETURNING id")
    service_id = (await cur.fetchone() or [0])[0]
    buckets = [(now - timedelta(minutes=m), "/a") for m in range(1, 41)] + [(now - timedelta(days=8), "/gone")]
    for bucket, route in buckets:
        await conn.execute("INSERT INTO request_rollup_1m (bucket, service_id, route, method, count, error_count,"
                           " p95_latency_ms) VALUES (%s, %s, %s, 'GET', 10, 1, 50)", (bucket, service_id, route))
    gone = Series("service:shop:/gone:p95_latency_ms", "p95_latency_ms", "p95 latency", "ms",
                  service_id=service_id, route="/gone")
    await store.save_model(conn, gone, None, "learning")


@pytest.fixture
async def planted(pool: AsyncConnectionPool, tmp_path: Path) -> Planted:
    """api: 320 checks at 15 s over the last 2 h (every 16th failed) and 40 from 8 days ago; old: 100
    checks, then disabled; slow: checked every 30 min, no rows yet; the service shop. The real
    detector has run once."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    endpoints = [_endpoint("api", "15s"), _endpoint("old", "1m"), _endpoint("slow", "30m")]
    async with pool.connection() as conn:
        ids = (await sync_endpoints(conn, endpoints)).ids
    start = now - timedelta(hours=2)
    await _add_checks(pool, ids["api"], [start + timedelta(seconds=15 * i) for i in range(320)],
                      [i % 16 != 15 for i in range(320)])
    await _add_checks(pool, ids["api"], [now - timedelta(days=8, seconds=15 * i) for i in range(40)], [True] * 40)
    await _add_checks(pool, ids["old"], [start + timedelta(minutes=i) for i in range(100)], [True] * 100)
    async with pool.connection() as conn:
        await _add_service(conn, now)
    settings = Detector(min_training_rows=MIN_ROWS, min_training_span="1h", model_dir=tmp_path / "models")
    with ThreadPoolExecutor(max_workers=1) as executor:
        live = LiveDetector(pool, settings, executor)
        await live.tick(now)
        await live.drain()
    async with pool.connection() as conn:
        await sync_endpoints(conn, [endpoints[0], endpoints[2]])  # "old" left the config: disabled
    return Planted(now, ids)


async def test_status_counts_window_rows_marks_disabled_and_says_what_is_missing(
        pool: AsyncConnectionPool, planted: Planted) -> None:
    settings = Detector(min_training_rows=MIN_ROWS, min_training_span="1h")
    async with pool.connection() as conn:
        rows = {r.series: r for r in await status(conn, planted.now, settings)}
        cur = await conn.execute("SELECT count(*) FROM probe_results WHERE endpoint_id = %s AND ok"
                                 " AND time > %s - interval '7 days'", (planted.ids["api"], planted.now))
        in_window = (await cur.fetchone() or [0])[0]
    latency, failures = rows["endpoint:api:latency"], rows["endpoint:api:failure_rate"]
    assert latency.rows == in_window == 300  # successful checks only; the 8-day-old ones are outside
    assert (latency.status, latency.needs) == ("learning", "needs 200 more rows (about 50 min at 15s)")
    assert failures.rows == 80  # one row per complete minute with checks
    assert (failures.status, failures.needs) == ("learning", "needs 420 more rows (about 7 h at 1m)")
    old = rows["endpoint:old:latency"]
    assert (old.status, old.rows, old.needs) == ("disabled", 100, "")
    # Before #13 this said "never": a sparse series now trains on as long a window as its rows take.
    sparse = "needs 500 more rows (about 10 d at 30m)"
    assert rows["endpoint:slow:latency"].needs == rows["endpoint:slow:failure_rate"].needs == sparse
    # One row per minute at least 2 minutes old (a minute is judged once settled): 39 of the 40 logged.
    shop = rows["service:shop:/a:p95_latency_ms"]
    assert (shop.status, shop.rows, shop.needs) == ("learning", 39, "needs 461 more rows (about 8 h at 1m)")
    assert (rows["service:shop:/gone:p95_latency_ms"].status, rows["service:shop:/gone:p95_latency_ms"].rows) \
        == ("idle", 0)
    table = render(list(rows.values()))
    line = next(t for t in table.splitlines() if t.startswith("endpoint:old:latency "))
    assert line.split()[1:3] == ["disabled", "100"]


def test_cli_prints_rows_and_needs(planted: Planted, database_url: str, tmp_path: Path) -> None:
    (tmp_path / "upwatch.yaml").write_text(CONFIG)
    result = subprocess.run([sys.executable, "-m", "upwatch.cli", "--config", str(tmp_path / "upwatch.yaml"),
                             "detector", "status"], capture_output=True, text=True, cwd=REPO, timeout=60,
                            env={**os.environ, "UPWATCH_DATABASE_URL": database_url}, check=False)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("endpoint:")}
    assert lines["endpoint:api:latency"].split()[1:3] == ["learning", "300"]
    assert lines["endpoint:api:latency"].endswith("needs 200 more rows (about 50 min at 15s)")
    assert lines["endpoint:old:latency"].split()[1:3] == ["disabled", "100"]
    assert result.stdout.splitlines()[0].split() == ["SERIES", "STATUS", "ROWS", "MODEL", "AGE", "THRESHOLD",
                                                     "LAST", "SCORE", "ANOMALIES", "24H", "NEEDS"]


@pytest.mark.parametrize(("state", "rows", "step", "expected"), [
    ("ready", 10, timedelta(seconds=15), ""),
    ("disabled", 0, timedelta(seconds=15), ""),
    ("new", 0, timedelta(seconds=15), "needs 5,760 more rows (about 24 h at 15s)"),
    ("learning", 1000, timedelta(minutes=1), "needs 440 more rows (about 7 h at 1m)"),
    ("learning", 5760, timedelta(seconds=15), "has enough rows; training is retried every 5m"),
    ("learning", 5700, timedelta(seconds=15), "needs 60 more rows (about 15 min at 15s)"),
    ("learning", 0, timedelta(seconds=90), "needs 960 more rows (about 24 h at 1m30s)"),
    ("learning", 0, timedelta(minutes=2), "needs 720 more rows (about 24 h at 2m)"),
    # A day at 5 min is min_training_rows itself; hourly checks need 12 days for 288 rows.
    ("learning", 0, timedelta(minutes=5), "needs 288 more rows (about 24 h at 5m)"),
    ("learning", 100, timedelta(hours=1), "needs 188 more rows (about 8 d at 1h)"),
], ids=["ready", "disabled", "new", "per-minute", "enough", "almost", "90s", "2m", "5m", "1h"])
def test_needs_says_what_a_series_lacks_at_its_pace(state: str, rows: int, step: timedelta, expected: str) -> None:
    assert needs(state, rows, step, Detector()) == expected
