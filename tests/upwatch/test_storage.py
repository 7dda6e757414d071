import uuid
from datetime import timedelta

import psycopg

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
