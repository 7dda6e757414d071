import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from prober.spool import SPOOL_NAME, encode
from prober.writer import BatchWriter
from tests.prober.conftest import fetch, insert_endpoints, result_row
from upwatch.db import ROWS_CHANNEL, open_pool
from upwatch.embedded import EmbeddedPostgres
from upwatch.migrate import migrate
from upwatch.rows import PROBE_RESULTS, REQUEST_LOGS, Batch, new_ids

UNREACHABLE_URL = "postgresql://postgres@127.0.0.1:1/upwatch"


async def unreachable_pool() -> AsyncConnectionPool:
    pool = AsyncConnectionPool(UNREACHABLE_URL, min_size=1, max_size=2, open=False, reconnect_timeout=3600)
    await pool.open(wait=False)
    return pool


async def test_offered_rows_are_copied_with_defaults(pool: AsyncConnectionPool, database_url: str,
                                                     endpoint_ids: list[int], tmp_path: Path) -> None:
    writer = BatchWriter(pool, tmp_path, flush_interval_s=0.05)
    await writer.start()
    rows = [result_row(endpoint_ids[0], i, assertions=[{"ok": True}]) for i in range(3)]
    assert writer.offer("probe_results", rows)
    await writer.flush()
    await writer.stop()
    stored = fetch(database_url, "SELECT latency_ms, location, source, assertions FROM probe_results ORDER BY time")
    assert stored == [(0.0, "", "active", [{"ok": True}]), (1.0, "", "active", [{"ok": True}]),
                      (2.0, "", "active", [{"ok": True}])]
    assert writer.stats.rows_written == 3 and writer.queue_rows == 0


async def test_offer_accepts_all_rows_or_none(pool: AsyncConnectionPool, endpoint_ids: list[int],
                                              tmp_path: Path) -> None:
    writer = BatchWriter(pool, tmp_path, queue_size=100, batch_rows=1000, flush_interval_s=60)
    await writer.start()
    assert writer.offer("probe_results", [result_row(endpoint_ids[0], i) for i in range(60)])
    assert not writer.offer("probe_results", [result_row(endpoint_ids[0], i) for i in range(41)])
    assert writer.queue_rows == 60 and writer.stats.rows_refused == 41
    assert writer.offer("probe_results", [result_row(endpoint_ids[0], i) for i in range(40)])
    await writer.stop()
    assert writer.stats.rows_written == 100


async def test_unknown_column_or_table_is_refused_at_offer(pool: AsyncConnectionPool, tmp_path: Path) -> None:
    writer = BatchWriter(pool, tmp_path)
    with pytest.raises(ValueError, match="no column"):
        writer.offer("probe_results", [{"time": dt.datetime.now(dt.UTC), "bogus": 1}])
    with pytest.raises(ValueError, match="does not write"):
        writer.offer("endpoints", [])


async def test_request_logs_are_written_with_json_and_inet(pool: AsyncConnectionPool, database_url: str,
                                                          tmp_path: Path) -> None:
    service_id = fetch(database_url, "INSERT INTO services (name) VALUES ('shop') RETURNING id")[0][0]
    writer = BatchWriter(pool, tmp_path, flush_interval_s=0.05)
    await writer.start()
    row = {"time": dt.datetime.now(dt.UTC), "service_id": service_id, "method": "GET", "path": "/a",
           "status_code": 200, "latency_ms": 12.5, "request_headers": {"accept": "*/*"}, "source_ip": "10.0.0.1"}
    assert writer.offer("request_logs", [row])
    await writer.stop()
    stored = fetch(database_url, "SELECT path, request_headers, host(source_ip), ingest_id IS NOT NULL"
                                 " FROM request_logs")
    assert stored == [("/a", {"accept": "*/*"}, "10.0.0.1", True)]


@pytest.mark.parametrize("table", ["probe_results", "request_logs"])
async def test_replaying_an_already_committed_batch_stores_nothing_twice(
        pool: AsyncConnectionPool, database_url: str, endpoint_ids: list[int], tmp_path: Path, table: str) -> None:
    # The commit went through but its acknowledgement was lost: the same batch is also in the spool.
    if table == "probe_results":
        spec, rows = PROBE_RESULTS, [PROBE_RESULTS.prepare(result_row(endpoint_ids[0], i)) for i in range(5)]
    else:
        sid = fetch(database_url, "INSERT INTO services (name) VALUES ('s') RETURNING id")[0][0]
        spec = REQUEST_LOGS
        rows = [REQUEST_LOGS.prepare({"time": dt.datetime(2026, 1, 1, 0, 0, i, tzinfo=dt.UTC), "service_id": sid,
                                      "tags": {"i": i}}) for i in range(5)]
    first = BatchWriter(pool, tmp_path / "a", flush_interval_s=0.05)
    await first.start()
    first.offer(table, rows)
    await first.stop()
    columns = spec.order(rows[0].keys())
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / SPOOL_NAME).write_bytes(encode(Batch(table, columns, [spec.values(columns, r) for r in rows])))
    second = BatchWriter(pool, tmp_path / "b", flush_interval_s=0.05)
    await second.start()
    await second.flush()
    await second.stop()
    assert fetch(database_url, f"SELECT count(*) FROM {table}") == [(5,)]
    assert second.stats.rows_replayed == 5
    assert (tmp_path / "b" / SPOOL_NAME).stat().st_size == 0


async def test_row_the_database_refuses_is_set_aside_and_the_rest_written(
        pool: AsyncConnectionPool, database_url: str, endpoint_ids: list[int], tmp_path: Path) -> None:
    writer = BatchWriter(pool, tmp_path, flush_interval_s=0.05)
    await writer.start()
    rows = [result_row(endpoint_ids[0], 0), result_row(999_999, 1), result_row(endpoint_ids[1], 2)]
    assert writer.offer("probe_results", rows)
    await writer.stop()
    assert fetch(database_url, "SELECT latency_ms FROM probe_results ORDER BY time") == [(0.0,), (2.0,)]
    assert writer.stats.rows_rejected == 1
    rejected = (tmp_path / "rejected.jsonl").read_text()
    assert "999999" in rejected and "foreign key" in rejected


async def test_spool_cap_keeps_oldest_and_counts_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pool = await unreachable_pool()
    writer = BatchWriter(pool, tmp_path, batch_rows=10, flush_interval_s=0.01, spool_max_bytes=4096,
                         connect_timeout_s=0.05)
    await writer.start()
    for chunk in range(20):
        writer.offer("probe_results", [result_row(1, chunk * 10 + i) for i in range(10)])
        await writer.flush()
    await writer.stop()
    await pool.close()
    spooled = (tmp_path / SPOOL_NAME).read_bytes()
    assert 0 < len(spooled) <= 4096
    assert writer.stats.rows_dropped > 0
    assert writer.stats.rows_spooled + writer.stats.rows_dropped == 200
    assert b'"2026-01-01T00:00:00+00:00"' in spooled  # the first row is kept
    assert "SPOOL FULL" in caplog.text


async def test_database_outage_loses_nothing_and_keeps_order(own_pg: EmbeddedPostgres, tmp_path: Path) -> None:
    url = own_pg.url
    await migrate(url)
    [endpoint] = insert_endpoints(url, 1)
    pool = await open_pool(url, max_size=3, name="outage")
    writer = BatchWriter(pool, tmp_path / "spool", batch_rows=20, flush_interval_s=0.02, connect_timeout_s=0.2,
                         retry_max_s=0.2)
    await writer.start()
    seq = 0

    async def produce(count: int) -> None:
        nonlocal seq
        for _ in range(count):
            assert writer.offer("probe_results", [result_row(endpoint, seq)])
            seq += 1
            await asyncio.sleep(0.002)

    await produce(100)
    await writer.flush()
    await asyncio.to_thread(own_pg.stop)
    await produce(300)
    await writer.flush()
    assert writer.spool_bytes > 0 and not writer.stats.database_ok
    await asyncio.to_thread(own_pg.start)
    await produce(100)
    for _ in range(200):
        await writer.flush()
        if not writer.spool_bytes:
            break
        await asyncio.sleep(0.05)
    await writer.stop()
    await pool.close()
    stored = [r[0] for r in fetch(url, "SELECT latency_ms FROM probe_results ORDER BY time")]
    assert stored == [float(i) for i in range(500)]
    assert writer.stats.rows_spooled > 0 and writer.stats.rows_dropped == 0


KILLED_WRITER = """
import asyncio, datetime as dt, os, signal, sys
from psycopg_pool import AsyncConnectionPool
from prober.writer import BatchWriter

async def main():
    pool = AsyncConnectionPool(sys.argv[1], min_size=1, open=False, reconnect_timeout=3600)
    await pool.open(wait=False)
    writer = BatchWriter(pool, sys.argv[2], flush_interval_s=0.01, connect_timeout_s=0.05, batch_rows=7)
    await writer.start()
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for i in range(50):
        writer.offer("probe_results", [{"time": base + dt.timedelta(seconds=i), "endpoint_id": int(sys.argv[3]),
                                        "ok": i % 2 == 0, "latency_ms": float(i)}])
    await writer.flush()
    print(writer.stats.rows_spooled, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def spool_of_a_killed_writer(spool_dir: Path, endpoint_id: int) -> None:
    """A writer process killed while spooling 50 rows, and a batch cut short mid-append after them."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, UNREACHABLE_URL, str(spool_dir), str(endpoint_id)],
                          capture_output=True, text=True, env=env, timeout=30, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.strip() == "50"
    with open(spool_dir / SPOOL_NAME, "ab") as f:
        f.write(b'{"table":"probe_results","columns":["ti')


async def test_spool_left_by_a_killed_writer_is_replayed_on_start(
        pool: AsyncConnectionPool, database_url: str, endpoint_ids: list[int], tmp_path: Path) -> None:
    await asyncio.to_thread(spool_of_a_killed_writer, tmp_path, endpoint_ids[0])
    writer = BatchWriter(pool, tmp_path, flush_interval_s=0.05)
    await writer.start()
    await writer.flush()
    await writer.stop()
    stored = fetch(database_url, "SELECT latency_ms, ok FROM probe_results ORDER BY time")
    assert stored == [(float(i), i % 2 == 0) for i in range(50)]
    assert (tmp_path / SPOOL_NAME).stat().st_size == 0


async def test_second_writer_on_the_same_spool_is_refused(pool: AsyncConnectionPool, tmp_path: Path) -> None:
    from prober.spool import SpoolLocked

    first = BatchWriter(pool, tmp_path)
    await first.start()
    with pytest.raises(SpoolLocked):
        await BatchWriter(pool, tmp_path).start()
    await first.stop()


async def test_writer_column_lists_match_the_schema(database_url: str) -> None:
    for spec in (PROBE_RESULTS, REQUEST_LOGS):
        cols = fetch(database_url, "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
                                   " AND is_identity = 'NO'", spec.name)
        assert set(spec.columns) == {c[0] for c in cols}
    _ = uuid, psycopg


async def test_offered_batch_is_written_and_spools_json_as_values(pool: AsyncConnectionPool, database_url: str,
                                                                  tmp_path: Path) -> None:
    from upwatch.rows import json_text

    sid = fetch(database_url, "INSERT INTO services (name) VALUES ('s') RETURNING id")[0][0]
    columns = ("time", "service_id", "ingest_id", "tags")
    rows = [(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), sid, i, json_text({"n": n})) for n, i in enumerate(new_ids(3))]
    batch = Batch("request_logs", columns, rows)
    assert b'"rows":[["2026-01-01T00:00:00+00:00",' in encode(batch) and b',{"n":0}]' in encode(batch)
    writer = BatchWriter(pool, tmp_path, flush_interval_s=0.05)
    await writer.start()
    with pytest.raises(ValueError, match="cannot write"):
        writer.offer_batch(Batch("request_logs", ("time", "service_id", "tags"), rows))  # no idempotency key
    assert writer.offer_batch(batch)
    await writer.flush()
    await writer.stop()
    assert fetch(database_url, "SELECT tags FROM request_logs ORDER BY tags->>'n'") == [({"n": 0},), ({"n": 1},),
                                                                                         ({"n": 2},)]


async def test_spool_fsync_runs_while_the_event_loop_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A disk whose fsync only returns once the event loop has done something: with the fsync on the
    # loop's thread the loop could not, and the fsync would give up waiting.
    import threading

    entered, released, waited = threading.Event(), threading.Event(), []
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        entered.set()
        waited.append(released.wait(timeout=10))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    pool = await unreachable_pool()
    writer = BatchWriter(pool, tmp_path, flush_interval_s=0.01, connect_timeout_s=0.05)
    await writer.start()
    try:
        assert writer.offer("probe_results", [result_row(1, i) for i in range(3)])
        for _ in range(1000):  # bounded: the loop runs this while the spool is being fsync'd
            if entered.is_set():
                break
            await asyncio.sleep(0.01)
        released.set()
        await writer.flush()
    finally:
        released.set()
        await writer.stop()
        await pool.close()
    assert waited and all(waited) and writer.stats.rows_spooled == 3


def _push_row_batch(service_id: int, n: int) -> Batch:
    """A one-row push batch with path /n, as a single-record request offers it."""
    columns = ("time", "service_id", "ingest_id", "path")
    return Batch("request_logs", columns, [(dt.datetime.now(dt.UTC), service_id, new_ids(1)[0], f"/{n}")])


async def test_probe_results_commits_are_notified_and_pushed_rows_are_not(
        pool: AsyncConnectionPool, database_url: str, endpoint_ids: list[int], tmp_path: Path) -> None:
    sid = fetch(database_url, "INSERT INTO services (name) VALUES ('s') RETURNING id")[0][0]
    writer = BatchWriter(pool, tmp_path, flush_interval_s=60)
    await writer.start()
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listener:
        await listener.execute(f"LISTEN {ROWS_CHANNEL}")
        assert writer.offer_batch(_push_row_batch(sid, 0), external=True)
        await writer.flush()  # committed (and would be notified) before the probe result below
        assert writer.offer("probe_results", [result_row(endpoint_ids[0], 0)])
        await writer.flush()
        payloads = [note.payload async for note in listener.notifies(timeout=10.0, stop_after=1)]
    await writer.stop()
    assert payloads == ["probe_results"]  # notifications arrive in commit order
    assert fetch(database_url, "SELECT path FROM request_logs") == [("/0",)]


async def test_pushed_rows_are_committed_on_a_pool_without_autocommit(database_url: str, tmp_path: Path) -> None:
    # A push batch alone is written as one COPY: committed whether or not the connections autocommit.
    sid = fetch(database_url, "INSERT INTO services (name) VALUES ('s') RETURNING id")[0][0]
    pool = AsyncConnectionPool(database_url, min_size=1, max_size=1, open=False)
    await pool.open(wait=True)
    try:
        writer = BatchWriter(pool, tmp_path, flush_interval_s=60)
        await writer.start()
        for n in range(2):
            assert writer.offer_batch(_push_row_batch(sid, n), external=True)
            await writer.flush()
        await writer.stop()
        assert fetch(database_url, "SELECT path FROM request_logs ORDER BY path") == [("/0",), ("/1",)]
        assert writer.stats.rows_written == 2
    finally:
        await pool.close()
