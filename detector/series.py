"""What the detector models, and the SQL that reads each series' rows.

Series names are stable keys in detector_models / anomalies / incidents:
  endpoint:<name>:latency         latency_ms of successful checks, one row per check
  endpoint:<name>:failure_rate    share of failed checks per complete minute
  service:<name>:<route>:p95_latency_ms / :error_rate   from request_rollup_1m, per complete minute
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from psycopg import AsyncConnection

logger = logging.getLogger(__name__)

# Per-minute series only read minutes this old, so a bucket is complete before it is judged.
SETTLE = timedelta(minutes=2)


@dataclass(frozen=True)
class Series:
    """One modelled metric: its key, what it belongs to and how to say its values."""

    key: str
    metric: str  # latency | failure_rate | p95_latency_ms | error_rate
    label: str
    unit: str
    endpoint_id: int | None = None
    service_id: int | None = None
    route: str | None = None


_QUERIES = {
    "latency": (
        "SELECT time, latency_ms FROM probe_results WHERE endpoint_id = %(endpoint_id)s AND ok"
        " AND latency_ms IS NOT NULL AND time > %(since)s AND time <= %(until)s ORDER BY time"
    ),
    "failure_rate": (
        "SELECT date_trunc('minute', time) AS t, avg(CASE WHEN ok THEN 0.0 ELSE 1.0 END)"
        " FROM probe_results WHERE endpoint_id = %(endpoint_id)s AND time >= date_trunc('minute', %(since)s)"
        " AND time < date_trunc('minute', %(until)s - %(settle)s)"
        " GROUP BY 1 HAVING date_trunc('minute', time) > %(since)s ORDER BY 1"
    ),
    "p95_latency_ms": (
        "SELECT bucket, max(p95_latency_ms) FROM request_rollup_1m WHERE service_id = %(service_id)s"
        " AND route = %(route)s AND bucket > %(since)s AND bucket <= %(until)s - %(settle)s"
        " GROUP BY bucket ORDER BY bucket"
    ),
    "error_rate": (
        "SELECT bucket, sum(error_count)::float8 / nullif(sum(count), 0) FROM request_rollup_1m"
        " WHERE service_id = %(service_id)s AND route = %(route)s AND bucket > %(since)s"
        " AND bucket <= %(until)s - %(settle)s GROUP BY bucket ORDER BY bucket"
    ),
}


async def discover(conn: AsyncConnection, lookback: timedelta) -> list[Series]:
    """Every series that should be modelled now: enabled endpoints, and service routes seen within `lookback`."""
    out: list[Series] = []
    cur = await conn.execute("SELECT id, name FROM endpoints WHERE enabled ORDER BY name")
    for endpoint_id, name in await cur.fetchall():
        out.append(Series(f"endpoint:{name}:latency", "latency", "latency", "ms", endpoint_id=endpoint_id))
        out.append(Series(f"endpoint:{name}:failure_rate", "failure_rate", "failure rate", "", endpoint_id=endpoint_id))
    cur = await conn.execute(
        "SELECT DISTINCT r.service_id, s.name, r.route FROM request_rollup_1m r JOIN services s ON s.id = r.service_id"
        " WHERE r.bucket > now() - %s ORDER BY 2, 3", (lookback,))
    for service_id, name, route in await cur.fetchall():
        for metric, label, unit in (("p95_latency_ms", "p95 latency", "ms"), ("error_rate", "error rate", "")):
            out.append(Series(f"service:{name}:{route}:{metric}", metric, label, unit,
                              service_id=service_id, route=route))
    return out


async def fetch(conn: AsyncConnection, series: Series, since: datetime, until: datetime) -> pd.DataFrame:
    """Rows of `series` with since < time <= until (per-minute series: settled minutes only), oldest first."""
    params = {"endpoint_id": series.endpoint_id, "service_id": series.service_id, "route": series.route,
              "since": since, "until": until, "settle": SETTLE}
    cur = await conn.execute(_QUERIES[series.metric], params)  # type: ignore[arg-type]
    rows = await cur.fetchall()
    frame = pd.DataFrame(rows, columns=["timestamp", "value"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    return frame


async def endpoints_with_new_latency(conn: AsyncConnection, watermarks: dict[int, datetime]) -> list[int]:
    """Endpoints with a latency row past their watermark: one query (an index probe per endpoint)."""
    ids = sorted(watermarks)
    cur = await conn.execute(
        "SELECT e.id FROM unnest(%s::int[], %s::timestamptz[]) AS e(id, since) WHERE EXISTS ("
        " SELECT 1 FROM probe_results p WHERE p.endpoint_id = e.id AND p.time > e.since AND p.ok"
        " AND p.latency_ms IS NOT NULL)", (ids, [watermarks[i] for i in ids]))
    return [int(row[0]) for row in await cur.fetchall()]
