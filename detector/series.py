"""What the detector models, and the SQL that reads each series' rows.

Series names are stable keys in detector_models / anomalies / incidents:
  endpoint:<name>:latency         latency_ms of successful checks, one row per check, with its phases
                                  (dns_ms ... transfer_ms, NaN where not measured: detector.phases)
  endpoint:<name>:failure_rate    share of failed checks per complete minute
  service:<name>:<route>:p95_latency_ms / :error_rate   from request_rollup_1m, per complete minute
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from psycopg import AsyncConnection, sql

from detector.phases import PHASES

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


# Each query yields (timestamptz, float8[, the phases' float8]) with no NULLs (a missing value is
# NaN, as features.prepare would make it), so fetch can pack every row into one fixed-width record.
_QUERIES = {
    "latency": (
        "SELECT time, latency_ms::float8, coalesce(dns_ms::float8, 'NaN'), coalesce(connect_ms::float8, 'NaN'),"
        " coalesce(tls_ms::float8, 'NaN'), coalesce(ttfb_ms::float8, 'NaN'), coalesce(transfer_ms::float8, 'NaN')"
        " FROM probe_results WHERE endpoint_id = %(endpoint_id)s AND ok"
        " AND latency_ms IS NOT NULL AND time > %(since)s AND time <= %(until)s ORDER BY time"
    ),
    "failure_rate": (
        "SELECT date_trunc('minute', time), avg(CASE WHEN ok THEN 0.0 ELSE 1.0 END)::float8"
        " FROM probe_results WHERE endpoint_id = %(endpoint_id)s AND time >= date_trunc('minute', %(since)s)"
        " AND time < date_trunc('minute', %(until)s - %(settle)s)"
        " GROUP BY 1 HAVING date_trunc('minute', time) > %(since)s ORDER BY 1"
    ),
    "p95_latency_ms": (
        "SELECT bucket, coalesce(max(p95_latency_ms)::float8, 'NaN') FROM request_rollup_1m"
        " WHERE service_id = %(service_id)s AND route = %(route)s AND bucket > %(since)s"
        " AND bucket <= %(until)s - %(settle)s GROUP BY bucket ORDER BY bucket"
    ),
    "error_rate": (
        "SELECT bucket, coalesce(sum(error_count)::float8 / nullif(sum(count), 0), 'NaN') FROM request_rollup_1m"
        " WHERE service_id = %(service_id)s AND route = %(route)s AND bucket > %(since)s"
        " AND bucket <= %(until)s - %(settle)s GROUP BY bucket ORDER BY bucket"
    ),
}

# A series' rows travel as one bytea of 16-byte records, timestamptz_send (big-endian microseconds
# since 2000-01-01 UTC) then float8send: one value to read instead of ~46,000 rows of Python
# objects (or, with COPY, ~46,000 messages) for a week's window.
_PACKED = ("SELECT string_agg(timestamptz_send(q.t) || float8send(q.v), ''::bytea ORDER BY q.t)"
           " FROM ({}) AS q(t, v)")
_PACKED_PHASES = ("SELECT string_agg(timestamptz_send(q.t) || float8send(q.v) || float8send(q.dns)"
                  " || float8send(q.connect) || float8send(q.tls) || float8send(q.ttfb) || float8send(q.transfer),"
                  " ''::bytea ORDER BY q.t) FROM ({}) AS q(t, v, dns, connect, tls, ttfb, transfer)")
# Value columns of each metric's records, in query order.
COLUMNS: dict[str, tuple[str, ...]] = {"latency": ("value", *PHASES)}
_PG_EPOCH = pd.Timestamp("2000-01-01", tz="UTC")


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
    # As Python tuples and datetimes a week's window cost ~0.2 s of the event loop's CPU per
    # series; packed and read into numpy, a few ms (bench/detector_speed.py).
    packed = _PACKED_PHASES if series.metric in COLUMNS else _PACKED
    statement = sql.SQL(packed).format(sql.SQL(_QUERIES[series.metric]))
    async with conn.cursor(binary=True) as cur:
        await cur.execute(statement, params)
        row = await cur.fetchone()
    return _frame(row[0] if row is not None and row[0] is not None else b"", COLUMNS.get(series.metric, ("value",)))


def _frame(packed: bytes, columns: tuple[str, ...]) -> pd.DataFrame:
    """A DataFrame (timestamp UTC, then `columns` float64) from packed (timestamptz, float8...) records."""
    records = np.frombuffer(packed, dtype=np.dtype([("time_us", ">i8"), *((c, ">f8") for c in columns)]))
    stamps = _PG_EPOCH + pd.to_timedelta(records["time_us"].astype("int64"), unit="us")
    return pd.DataFrame({"timestamp": pd.DatetimeIndex(stamps).as_unit("us"),
                         **{c: records[c].astype("float64") for c in columns}})


async def endpoints_with_new_latency(conn: AsyncConnection, watermarks: dict[int, datetime]) -> list[int]:
    """Endpoints with a latency row past their watermark: one query (an index probe per endpoint)."""
    ids = sorted(watermarks)
    cur = await conn.execute(
        "SELECT e.id FROM unnest(%s::int[], %s::timestamptz[]) AS e(id, since) WHERE EXISTS ("
        " SELECT 1 FROM probe_results p WHERE p.endpoint_id = e.id AND p.time > e.since AND p.ok"
        " AND p.latency_ms IS NOT NULL)", (ids, [watermarks[i] for i in ids]))
    return [int(row[0]) for row in await cur.fetchall()]
