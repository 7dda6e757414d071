import datetime as dt
from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool

from prober.heartbeats import HeartbeatWatcher, missing_due
from prober.rollups import Rollups
from prober.spool import SPOOL_NAME, encode
from prober.writer import BatchWriter
from tests.prober.conftest import fetch
from upwatch.config.endpoints import Endpoint
from upwatch.rows import PROBE_RESULTS, Batch

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def row(endpoint_id: int, seconds: float, latency: float | None, ok: bool = True, **extra: object) -> dict:
    return {"time": T0 + dt.timedelta(seconds=seconds), "endpoint_id": endpoint_id, "ok": ok, "latency_ms": latency,
            "location": "eu", **extra}


async def test_settled_minutes_are_rolled_up_and_late_rows_recomputed(
        pool: AsyncConnectionPool, database_url: str, endpoint_ids: list[int], tmp_path: Path) -> None:
    rollups = Rollups(pool, settle_s=15)
    writer = BatchWriter(pool, tmp_path, flush_interval_s=0.02)
    writer.hooks["probe_results"].append(rollups.note)
    await writer.start()
    e = endpoint_ids[0]
    writer.offer("probe_results", [row(e, s, float(s)) for s in range(0, 60, 15)])  # 0, 15, 30, 45
    writer.offer("probe_results", [row(e, 61, None, ok=False, error_kind="timeout"),
                                   row(e, 58, None, ok=False, error_kind="skipped")])
    await writer.flush()
    await rollups.tick(T0 + dt.timedelta(seconds=70))  # minute 0 has not settled yet
    assert fetch(database_url, "SELECT count(*) FROM probe_rollup_1m") == [(0,)]
    await rollups.tick(T0 + dt.timedelta(seconds=76))
    assert fetch(database_url, "SELECT count FROM probe_rollup_1m") == [(4,)]
    writer.offer("probe_results", [row(e, 59, 100.0, ok=False, error_kind="http_status")])  # late, minute 0
    await writer.flush()
    await writer.stop()
    assert rollups.late == {(e, "eu", T0)}
    await rollups.tick(T0 + dt.timedelta(seconds=140))
    rollup = fetch(database_url, "SELECT bucket, count, ok_count, avg_latency_ms, p50_latency_ms, max_latency_ms"
                                 " FROM probe_rollup_1m WHERE location = 'eu' ORDER BY bucket")
    assert rollup == [(T0, 5, 4, 38.0, 30.0, 100.0), (T0 + dt.timedelta(minutes=1), 1, 0, None, None, None)]
    p95 = fetch(database_url, "SELECT p95_latency_ms FROM probe_rollup_1m WHERE bucket = %s", T0)[0][0]
    assert p95 == pytest.approx(89.0)  # percentile_cont: 45 + 0.8 * (100 - 45)


async def test_replayed_rows_for_rolled_up_minutes_are_recomputed(
        pool: AsyncConnectionPool, database_url: str, endpoint_ids: list[int], tmp_path: Path) -> None:
    rollups = Rollups(pool)
    await rollups.tick(T0 + dt.timedelta(minutes=5))  # minutes up to 12:04 are closed
    rows = [PROBE_RESULTS.prepare(row(endpoint_ids[1], s, 10.0)) for s in (1, 2, 3)]
    cols = PROBE_RESULTS.order(rows[0].keys())
    batch = Batch("probe_results", cols, [PROBE_RESULTS.values(cols, r) for r in rows])
    (tmp_path / SPOOL_NAME).write_bytes(encode(batch))
    writer = BatchWriter(pool, tmp_path, flush_interval_s=0.02)
    writer.hooks["probe_results"].append(rollups.note)
    await writer.start()
    await writer.flush()
    await writer.stop()
    await rollups.tick(T0 + dt.timedelta(minutes=5, seconds=5))
    assert fetch(database_url, "SELECT bucket, count, ok_count FROM probe_rollup_1m") == [(T0, 3, 3)]


async def test_start_catches_up_on_recent_minutes(pool: AsyncConnectionPool, database_url: str,
                                                 endpoint_ids: list[int], tmp_path: Path) -> None:
    writer = BatchWriter(pool, tmp_path, flush_interval_s=0.02)
    await writer.start()
    writer.offer("probe_results", [row(endpoint_ids[0], s, 1.0) for s in (0, 70, 130)])  # written, never rolled up
    await writer.stop()
    rollups = Rollups(pool)
    rollups.locations.add("eu")
    await rollups.tick(T0 + dt.timedelta(minutes=3))
    assert fetch(database_url, "SELECT bucket FROM probe_rollup_1m ORDER BY bucket") == [
        (T0,), (T0 + dt.timedelta(minutes=1),)]  # minute 2 has not settled


@pytest.mark.parametrize(("last_push", "last_missing", "now_s", "due"), [
    (0, None, 60 + 29, False),     # within period + grace
    (0, None, 60 + 30, True),      # late
    (0, 90, 100, False),           # already recorded, next one a period later
    (0, 90, 150, True),            # still missing a period later
    (100, 90, 150, False),         # a push arrived after the last missing record
    (None, None, 89, False),       # nothing pushed yet: counted from when the endpoint was created
    (None, None, 91, True),
], ids=["on-time", "late", "recorded", "repeat", "recovered", "new-on-time", "new-late"])
def test_missing_heartbeat_decision(last_push: int | None, last_missing: int | None, now_s: int, due: bool) -> None:
    def at(s: int | None) -> dt.datetime | None:
        return None if s is None else T0 + dt.timedelta(seconds=s)

    assert missing_due(T0 + dt.timedelta(seconds=now_s), dt.timedelta(minutes=1), dt.timedelta(seconds=30),
                       at(last_push), at(last_missing), since=T0) is due


async def test_missing_heartbeat_is_recorded_once_per_period(pool: AsyncConnectionPool, database_url: str,
                                                             tmp_path: Path) -> None:
    cron = Endpoint.model_validate({"name": "cron", "kind": "push", "period": "1m", "grace": "30s"})
    endpoint_id = fetch(database_url, "INSERT INTO endpoints (name, kind, created_at) VALUES ('cron', 'push', %s)"
                                      " RETURNING id", T0)[0][0]
    writer = BatchWriter(pool, tmp_path, flush_interval_s=0.02)
    await writer.start()
    writer.offer("probe_results", [{"time": T0 + dt.timedelta(seconds=10), "endpoint_id": endpoint_id, "ok": True,
                                    "source": "push"}])
    await writer.flush()
    watcher = HeartbeatWatcher(pool, writer, location="l", prober="p")
    watcher.apply([cron], {"cron": endpoint_id})
    assert await watcher.check(T0 + dt.timedelta(seconds=60)) == []
    assert await watcher.check(T0 + dt.timedelta(seconds=101)) == ["cron"]
    assert await watcher.check(T0 + dt.timedelta(seconds=105)) == []  # not yet flushed, still not twice
    await writer.flush()
    assert await watcher.check(T0 + dt.timedelta(seconds=150)) == []
    assert await watcher.check(T0 + dt.timedelta(seconds=161)) == ["cron"]
    await writer.stop()
    rows = fetch(database_url, "SELECT ok, error_kind, source, error FROM probe_results WHERE source = 'heartbeat'"
                               " ORDER BY time")
    assert [r[:3] for r in rows] == [(False, "missing_heartbeat", "heartbeat")] * 2
    assert rows[0][3] == "no result within 1m30s (last at 2026-03-01T12:00:10+00:00)"
