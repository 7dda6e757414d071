"""series.fetch reads each kind of series from a real PostgreSQL: what a plain query returns, as floats, UTC times."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from psycopg_pool import AsyncConnectionPool

from detector.phases import PHASES
from detector.series import Series, fetch

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


async def _ids(pool: AsyncConnectionPool) -> tuple[int, int]:
    async with pool.connection() as conn:
        cur = await conn.execute("INSERT INTO endpoints (name, kind, target) VALUES ('api', 'http', 'http://127.0.0.1/')"
                                 " RETURNING id")
        endpoint_id = int((await cur.fetchone() or [0])[0])
        cur = await conn.execute("INSERT INTO services (name) VALUES ('shop') RETURNING id")
        service_id = int((await cur.fetchone() or [0])[0])
        checks = [(NOW - timedelta(minutes=30) + timedelta(seconds=15 * i, microseconds=i * 7), i % 9 != 0,
                   None if i % 13 == 0 else 100.0 + i * 0.123456789) for i in range(120)]
        for i, (at, ok, ms) in enumerate(checks):
            # Phase timings, some not measured (NULL: a plain http check has no TLS).
            timings = [None if (i + k) % 4 == 0 else k + i / 7 for k in range(len(PHASES))]
            await conn.execute("INSERT INTO probe_results (time, endpoint_id, id, ok, latency_ms, dns_ms, connect_ms,"
                               " tls_ms, ttfb_ms, transfer_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                               (at, endpoint_id, uuid.uuid4(), ok, ms, *timings))
        for i in range(20):
            bucket = NOW - timedelta(minutes=25 - i)
            # count 0 and a missing p95 are NULLs in the plain query: NaN in the frame.
            await conn.execute(
                "INSERT INTO request_rollup_1m (bucket, service_id, route, method, count, error_count, p95_latency_ms)"
                " VALUES (%s, %s, '/cart', 'GET', %s, %s, %s)",
                (bucket, service_id, 0 if i == 11 else 10 + i, 0 if i == 11 else i % 4, None if i == 13 else 80.0 + i))
            if i % 2 == 0:
                await conn.execute(
                    "INSERT INTO request_rollup_1m"
                    " (bucket, service_id, route, method, count, error_count, p95_latency_ms)"
                    " VALUES (%s, %s, '/cart', 'POST', 1, 1, 40.5)", (bucket, service_id))
    return endpoint_id, service_id


@pytest.mark.parametrize("metric", ["latency", "failure_rate", "p95_latency_ms", "error_rate"])
async def test_fetch_returns_what_a_plain_query_returns(pool: AsyncConnectionPool, metric: str) -> None:
    from detector.series import _QUERIES

    endpoint_id, service_id = await _ids(pool)
    endpoint = metric in ("latency", "failure_rate")
    series = Series(f"x:{metric}", metric, metric, "", endpoint_id=endpoint_id if endpoint else None,
                    service_id=None if endpoint else service_id, route=None if endpoint else "/cart")
    since, until = NOW - timedelta(minutes=20), NOW
    async with pool.connection() as conn:
        frame = await fetch(conn, series, since, until)
        cur = await conn.execute(_QUERIES[metric], {"endpoint_id": series.endpoint_id, "service_id": series.service_id,
                                                    "route": series.route, "since": since, "until": until,
                                                    "settle": timedelta(minutes=2)})
        rows = await cur.fetchall()
    assert len(frame) == len(rows) > 5
    assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]" and frame["value"].dtype == np.float64
    assert [t.to_pydatetime() for t in frame["timestamp"]] == [r[0] for r in rows]
    np.testing.assert_array_equal(frame["value"].to_numpy(), np.array([r[1] for r in rows], dtype="float64"))
    assert frame["timestamp"].is_monotonic_increasing and frame["timestamp"].iloc[0] > pd.Timestamp(since)
    if metric == "p95_latency_ms" or metric == "error_rate":
        assert frame["value"].isna().sum() == 1  # the NULL minute
    if metric == "latency":  # each check's phases, NaN where not measured
        expected = np.array([r[2:] for r in rows], dtype="float64")
        np.testing.assert_array_equal(frame[list(PHASES)].to_numpy(), expected)
        assert np.isnan(expected).any() and np.isfinite(expected).any()


async def test_fetch_of_an_empty_range_is_an_empty_frame(pool: AsyncConnectionPool) -> None:
    endpoint_id, _ = await _ids(pool)
    async with pool.connection() as conn:
        frame = await fetch(conn, Series("x", "latency", "latency", "ms", endpoint_id=endpoint_id),
                            NOW + timedelta(hours=1), NOW + timedelta(hours=2))
    assert frame.empty and list(frame.columns) == ["timestamp", "value", *PHASES]
