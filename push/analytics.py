"""GET /analytics: traffic, errors and latency of a service over a range, in SQL.

Ranges up to RAW_MAX_RANGE are computed from the raw logs (exact). Longer
ranges read request_rollup_1m for totals, latency, methods, routes and the
series; there p50/p95/p99 come from the rows' latency sketches merged
(sql/0090), within 1% of the exact percentiles of the raw logs. Client IPs
and status codes come from the raw logs for short ranges; for longer ones
from request_client_ips_1h and request_status_1h for the whole UTC hours
inside the range and from the raw logs for the partial hours at its edges,
which keeps them exact (distinct IPs of the union; sums of the hourly counts
per IP and per status code).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from aiohttp import web
from psycopg import AsyncConnection, sql
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from push.bodies import DATE_TIME_TEXT, Refusal
from push.context import reply
from push.keys import DB_TIMEOUT_S
from push.operations import Call
from push.query import ERROR_CONDITION, Reader, as_utc, named_scope
from push.rollup import hour_ceil, hour_floor
from upwatch import durations

RAW_MAX_RANGE = timedelta(hours=6)
MAX_BUCKETS = 5000
TOP_IPS = 10
_ISO_DURATION = TypeAdapter(timedelta)  # the document says format: duration, which is ISO 8601


def _is_iso(value: Any) -> bool:
    return isinstance(value, str) and value.lstrip("+-")[:1] in ("P", "p")


class AnalyticsQuery(BaseModel):
    """Parameters of GET /analytics."""

    model_config = ConfigDict(extra="forbid")

    service: Annotated[str, Field(max_length=100, pattern=r"^[^\x00]*$")] | None = None
    from_: Annotated[datetime, DATE_TIME_TEXT] | None = Field(default=None, alias="from")
    to: Annotated[datetime, DATE_TIME_TEXT] | None = None
    bucket: Annotated[timedelta, Field(description="1m to 31d: 15m, 1h, 1d or ISO 8601 (PT15M)")] = timedelta(
        hours=1)

    @field_validator("bucket", mode="before")
    @classmethod
    def _bucket(cls, value: Any) -> timedelta:
        try:
            parsed = _ISO_DURATION.validate_python(value) if _is_iso(value) else durations.parse(value)
        except OverflowError:
            raise ValueError("is too large") from None
        except ValidationError:
            raise ValueError(f"{value!r} is not an ISO 8601 duration") from None
        if parsed < timedelta(minutes=1) or parsed > timedelta(days=31):
            raise ValueError("must be between 1m and 31d")
        return parsed

    @field_validator("from_", "to")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return as_utc(value)


async def _rows(conn: AsyncConnection, query: sql.Composed, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    cur = await conn.execute(query, params)
    rows: list[tuple[Any, ...]] = await cur.fetchall()
    return rows


# SQL is composed with psycopg.sql from these constant fragments; every value is a %(name)s parameter.
_SCOPE = sql.SQL("(%(service)s::int IS NULL OR l.service_id = %(service)s)"
                 " AND l.time >= %(from)s AND l.time < %(to)s")
_RSCOPE = sql.SQL("(%(service)s::int IS NULL OR l.service_id = %(service)s)"
                  " AND l.bucket >= %(from)s AND l.bucket < %(to)s")
_ERROR = sql.SQL(ERROR_CONDITION)


def _raw(template: str) -> sql.Composed:
    """A query of the raw logs in the range: {scope} and {error} filled in."""
    return sql.SQL(template).format(scope=_SCOPE, error=_ERROR)


_RAW_TOTALS = _raw("""
    SELECT count(*), count(*) FILTER (WHERE {error}), avg(latency_ms), min(latency_ms),
           max(latency_ms), percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms),
           percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms)
    FROM request_logs l WHERE {scope}""")
_RAW_ROUTES = _raw("""
    SELECT coalesce(route, ''), count(*), avg(latency_ms),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms), count(*) FILTER (WHERE {error})
    FROM request_logs l WHERE {scope} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 500""")
_RAW_METHODS = _raw("SELECT coalesce(method, ''), count(*) FROM request_logs l WHERE {scope}"
                    " GROUP BY 1 ORDER BY 2 DESC")
_RAW_SERIES = _raw("""
    SELECT date_bin(%(bucket)s, time, '2000-01-01 00:00:00+00'), count(*), avg(latency_ms),
           count(*) FILTER (WHERE {error})::float / count(*)
    FROM request_logs l WHERE {scope} GROUP BY 1 ORDER BY 1""")


async def _raw_stats(conn: AsyncConnection, p: dict[str, Any]) -> dict[str, Any]:
    (total, errors, avg, low, high, p50, p95, p99), = await _rows(conn, _RAW_TOTALS, p)
    routes = await _rows(conn, _RAW_ROUTES, p)
    methods = await _rows(conn, _RAW_METHODS, p)
    series = await _rows(conn, _RAW_SERIES, p)
    return _shape(total, errors, (avg, low, high, p50, p95, p99), routes, methods, series)


def _weighted(column: str) -> sql.Composed:
    """The count-weighted mean of a per-minute column of request_rollup_1m."""
    return sql.SQL("sum({c} * count) / nullif(sum(count) FILTER (WHERE {c} IS NOT NULL), 0)").format(
        c=sql.Identifier(column))


def _rollup(template: str) -> sql.Composed:
    """A query of request_rollup_1m in the range: {scope} and the weighted means {avg}, {p50}, {p95}, {p99}."""
    return sql.SQL(template).format(scope=_RSCOPE, **{name: _weighted(f"{name}_latency_ms")
                                                      for name in ("avg", "p50", "p95", "p99")})


_TOTALS = _rollup("""
SELECT coalesce(sum(count), 0), coalesce(sum(error_count), 0), {avg},
       min(min_latency_ms), max(max_latency_ms), ARRAY[{p50}, {p95}, {p99}]
FROM request_rollup_1m l WHERE {scope}""")

_ROUTES = _rollup("""
SELECT route, sum(count), {avg}, {p95}, sum(error_count)
FROM request_rollup_1m l WHERE {scope} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 500""")

_METHODS = _rollup("SELECT method, sum(count) FROM request_rollup_1m l WHERE {scope} GROUP BY 1 ORDER BY 2 DESC")

_SERIES = _rollup("""
SELECT date_bin(%(bucket)s, bucket, '2000-01-01 00:00:00+00'), sum(count), {avg},
       sum(error_count)::float / nullif(sum(count), 0)
FROM request_rollup_1m l WHERE {scope} GROUP BY 1 ORDER BY 1""")

# The rows' latency sketches (sql/0090) merged per route in one pass, then over all routes: a row with
# overall = true and p50/p95/p99, and one per route with its p95.
_SKETCH_QUANTILES = _rollup("""
WITH per_route AS MATERIALIZED (
    SELECT l.route, u.k, sum(u.n) AS n
    FROM request_rollup_1m l, unnest(l.latency_sketch_keys, l.latency_sketch_counts) AS u(k, n)
    WHERE {scope} GROUP BY 1, 2
)
SELECT true, NULL, latency_sketch_quantiles(array_agg(k), array_agg(n), ARRAY[0.5, 0.95, 0.99])
FROM (SELECT k, sum(n)::bigint AS n FROM per_route GROUP BY k) overall
UNION ALL
SELECT false, route, latency_sketch_quantiles(array_agg(k), array_agg(n), ARRAY[0.95]) FROM per_route GROUP BY route""")


def _clamped(value: float, low: Any, high: Any) -> float:
    return value if low is None or high is None else min(max(value, low), high)


async def _rollup_stats(conn: AsyncConnection, p: dict[str, Any]) -> dict[str, Any]:
    """Totals, routes, methods and series from request_rollup_1m; percentiles from the merged sketches,
    kept inside the exact [min, max], or the mean of per-minute percentiles where no minute has a sketch
    (rolled up before sql/0090 from logs since expired)."""
    (total, errors, avg, low, high, means), = await _rows(conn, _TOTALS, p)
    sketched = {(overall, route): q for overall, route, q in await _rows(conn, _SKETCH_QUANTILES, p)}
    overall = sketched.get((True, None))
    p50, p95, p99 = means if overall is None else [_clamped(v, low, high) for v in overall]
    routes = [(r, n, a, (sketched.get((False, r)) or [p95_mean])[0], e)
              for r, n, a, p95_mean, e in await _rows(conn, _ROUTES, p)]
    methods = await _rows(conn, _METHODS, p)
    series = await _rows(conn, _SERIES, p)
    return _shape(total, errors, (avg, low, high, p50, p95, p99), routes, methods, series)


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _shape(total: Any, errors: Any, latency: tuple[Any, ...], routes: list[tuple[Any, ...]],
           methods: list[tuple[Any, ...]], series: list[tuple[Any, ...]]) -> dict[str, Any]:
    total, errors = int(total or 0), int(errors or 0)
    return {
        "total_requests": total, "errors": errors, "error_rate": errors / total if total else 0.0,
        "latency_ms": dict(zip(("avg", "min", "max", "p50", "p95", "p99"), map(_num, latency), strict=True)),
        "methods": {m: int(n) for m, n in methods},
        "routes": [{"route": r, "requests": int(n), "avg_latency_ms": _num(a), "p95_latency_ms": _num(p95),
                    "errors": int(e)} for r, n, a, p95, e in routes],
        "series": [{"bucket": b, "requests": int(n), "avg_latency_ms": _num(a), "error_rate": _num(er) or 0.0}
                   for b, n, a, er in series],
    }


_SERVICE = sql.SQL("(%(service)s::int IS NULL OR l.service_id = %(service)s)")


def _edge(key: str, start: str, end: str) -> sql.Composed:
    """One (key, 1) row per raw log of the service in [%(start)s, %(end)s)."""
    return sql.SQL("SELECT l.{key}, 1 FROM request_logs l WHERE {service} AND l.{key} IS NOT NULL"
                   " AND l.time >= {start} AND l.time < {end}").format(
        key=sql.Identifier(key), service=_SERVICE, start=sql.Placeholder(start), end=sql.Placeholder(end))


def _hours_and_edges(table: str, key: str) -> sql.Composed:
    """(key, n) rows of the range: the hourly counts of its whole hours, one row per raw log at its edges."""
    return sql.SQL("SELECT l.{key} AS key, l.count AS n FROM {table} l"
                   " WHERE {service} AND l.bucket >= %(hours_from)s AND l.bucket < %(hours_to)s"
                   " UNION ALL {first} UNION ALL {last}").format(
        key=sql.Identifier(key), table=sql.Identifier(table), service=_SERVICE,
        first=_edge(key, "from", "hours_from"), last=_edge(key, "hours_to", "to"))


# Requests per client IP over the range; each output row also carries the number of distinct IPs
# (all rows, before LIMIT).
_IPS_FROM_HOURS = sql.SQL("""
SELECT host(key), n, count(*) OVER () FROM (
    SELECT key, sum(n) AS n FROM ({counts}) u GROUP BY key
) per_ip ORDER BY 2 DESC, 1 LIMIT {top}""").format(counts=_hours_and_edges("request_client_ips_1h", "source_ip"),
                                                   top=sql.Literal(TOP_IPS))

_STATUSES_FROM_HOURS = sql.SQL("SELECT key, sum(n) FROM ({counts}) u GROUP BY 1 ORDER BY 1").format(
    counts=_hours_and_edges("request_status_1h", "status_code"))

_STATUSES_FROM_RAW = _raw("""
SELECT status_code, count(*) FROM request_logs l WHERE {scope}
AND status_code IS NOT NULL GROUP BY 1 ORDER BY 1""")

_IPS_FROM_RAW = sql.SQL("""
SELECT host(source_ip), count(*), count(*) OVER () FROM request_logs l
WHERE {scope} AND source_ip IS NOT NULL GROUP BY source_ip ORDER BY 2 DESC, 1 LIMIT {top}""").format(
    scope=_SCOPE, top=sql.Literal(TOP_IPS))


async def _clients(conn: AsyncConnection, p: dict[str, Any], *, hourly: bool) -> dict[str, Any]:
    hours = {"hours_from": hour_ceil(p["from"]), "hours_to": hour_floor(p["to"])}
    if hourly and hours["hours_from"] < hours["hours_to"]:
        top = await _rows(conn, _IPS_FROM_HOURS, {**p, **hours})
        statuses = await _rows(conn, _STATUSES_FROM_HOURS, {**p, **hours})
    else:
        top = await _rows(conn, _IPS_FROM_RAW, p)
        statuses = await _rows(conn, _STATUSES_FROM_RAW, p)
    unique = top[0][2] if top else 0
    return {"unique_client_ips": int(unique), "top_client_ips": [{"ip": ip, "requests": int(n)} for ip, n, _ in top],
            "status_codes": {str(s): int(n) for s, n in statuses}}


async def analytics(call: Call[Reader, None, AnalyticsQuery]) -> web.Response:
    """Aggregates for one service (or all, for the admin) between from and to."""
    q = call.query
    service = await named_scope(call.context, call.caller, q.service)
    if isinstance(service, Refusal):
        return service.response()
    service_id, name = service if service is not None else (None, None)
    to = q.to or datetime.now(UTC)
    since = q.from_ or to - timedelta(hours=24)
    if since >= to:
        return Refusal(422, "invalid query parameters", [{"field": "from", "reason": "must be before to"}]).response()
    if (to - since) / q.bucket > MAX_BUCKETS:
        return Refusal(422, "invalid query parameters",
                       [{"field": "bucket", "reason": f"more than {MAX_BUCKETS} buckets; use a larger bucket"}]
                       ).response()
    params = {"service": service_id, "from": since, "to": to, "bucket": q.bucket}
    source = "raw" if to - since <= RAW_MAX_RANGE else "rollup"
    async with call.context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        stats = await (_raw_stats if source == "raw" else _rollup_stats)(conn, params)
        clients = await _clients(conn, params, hourly=source == "rollup")
    return reply({"service": name, "from": since, "to": to, "bucket": durations.format(q.bucket),
                  "source": source, **stats, **clients})
