import uuid
from datetime import timedelta

import psycopg
import pytest

from upwatch.config.storage import Retention
from upwatch.storage import purge


def seed(url: str) -> None:
    with psycopg.connect(url) as conn:
        endpoint = conn.execute("INSERT INTO endpoints (name, kind) VALUES ('e', 'http') RETURNING id").fetchone()[0]
        service = conn.execute(
            "INSERT INTO services (name, retention_days) VALUES ('s', 3) RETURNING id").fetchone()[0]
        for age in (1, 5, 100):
            conn.execute("INSERT INTO probe_results (time, endpoint_id, id, ok) VALUES (now() - %s::interval, %s, %s, true)",
                         (timedelta(days=age), endpoint, uuid.uuid4()))
            conn.execute("INSERT INTO request_logs (time, service_id, method) VALUES (now() - %s::interval, %s, 'GET')",
                         (timedelta(days=age), service))


async def test_purge_deletes_only_rows_past_retention(pool, database_url: str) -> None:  # type: ignore[no-untyped-def]
    seed(database_url)
    deleted = await purge(pool, Retention(probe_results="90d", request_logs="30d"), skip_hypertables=False)
    # probe_results: the 100-day-old row; request_logs: 100 days (global) + 5 days (service keeps 3 days)
    assert deleted["probe_results"] == 1
    assert deleted["request_logs"] == 2
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM probe_results").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM request_logs").fetchone() == (1,)


async def test_timescaledb_retention_policies_follow_the_config(pool, database_url: str, pg_server) -> None:  # type: ignore[no-untyped-def]
    from upwatch.storage import apply_policies

    if not pg_server.timescaledb(database_url):
        pytest.skip("needs UPWATCH_TEST_DATABASE_URL pointing at a server with the timescaledb extension")
    assert await apply_policies(pool, Retention(probe_results="14d"))
    assert await apply_policies(pool, Retention(probe_results="21d"))  # re-applying replaces, never duplicates
    with psycopg.connect(database_url) as conn:
        jobs = dict(conn.execute(
            "SELECT hypertable_name, config->>'drop_after' FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_retention'").fetchall())
    assert jobs["probe_results"] == "21 days"
    assert jobs["request_logs"] == "30 days"
    assert set(jobs) == {"probe_results", "request_logs", "probe_rollup_1m", "request_rollup_1m", "anomalies"}


async def test_plain_postgres_has_no_policies(pool, database_url: str, pg_server) -> None:  # type: ignore[no-untyped-def]
    from upwatch.storage import apply_policies

    if pg_server.timescaledb(database_url):
        pytest.skip("server has TimescaleDB (UPWATCH_TEST_DATABASE_URL): the plain-PostgreSQL path is not testable here")
    assert await apply_policies(pool, Retention()) is False


async def test_hourly_rollups_are_filled_from_the_minute_rollups(pool, database_url: str) -> None:  # type: ignore[no-untyped-def]
    from upwatch.storage import refresh_hourly_rollups

    with psycopg.connect(database_url) as conn:
        endpoint = conn.execute("INSERT INTO endpoints (name, kind) VALUES ('e', 'http') RETURNING id").fetchone()[0]
        conn.execute(
            "INSERT INTO probe_rollup_1m (bucket, endpoint_id, count, ok_count, avg_latency_ms, max_latency_ms)"
            " SELECT date_trunc('hour', now()) - interval '3 hours' + m * interval '1 minute', %s, 4, 3, 100, 200"
            " FROM generate_series(0, 119) m", (endpoint,))
    assert await refresh_hourly_rollups(pool) > 0
    with psycopg.connect(database_url) as conn:
        hours = conn.execute("SELECT count(*), sum(count), sum(ok_count) FROM probe_rollup_1h").fetchone()
    assert hours == (2, 480, 360)


async def test_storage_jobs_survive_a_database_outage(server_dir, caplog) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    import logging

    from upwatch.db import open_pool
    from upwatch.embedded import EmbeddedPostgres
    from upwatch.migrate import migrate
    from upwatch.storage import run_retention

    server = EmbeddedPostgres(server_dir / "pg", settings={"fsync": "off"})
    url = server.start()
    stop = asyncio.Event()
    try:
        await migrate(url)
        pool = await open_pool(url, max_size=2)
        pool.timeout = 1.0
        task = asyncio.create_task(run_retention(pool, Retention(), stop, every=timedelta(milliseconds=200)))
        await asyncio.sleep(0.5)
        server.stop()
        with caplog.at_level(logging.WARNING, logger="upwatch.storage"):
            for _ in range(100):  # bounded (10 s): until a run has failed against the stopped server
                if any("retention failed, retrying" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.1)
        assert not task.done(), "the retention job must outlive a database outage"
        assert any("retention failed, retrying" in r.getMessage() for r in caplog.records)
        server.start()
        seed(url)  # old rows appear once the database is back; the job purges them
        for _ in range(100):
            with psycopg.connect(url) as conn:
                if conn.execute("SELECT count(*) FROM probe_results").fetchone() == (2,):
                    break
            await asyncio.sleep(0.1)
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM probe_results").fetchone() == (2,)
        stop.set()
        await asyncio.wait_for(task, 5)
        await pool.close()
    finally:
        stop.set()
        server.stop()
