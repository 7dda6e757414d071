"""A service's report over [from, to): one function from the rollup tables to a typed Report.

Reports cover whole UTC hours, the unit of the hourly rollups, so that every figure comes from
request_rollup_1m, request_client_ips_1h and request_status_1h (kept after the raw logs expire)
and is exact, except the percentiles, which are the rows' latency sketches merged (sql/0090): within
1% of the raw logs' percentile_cont, clamped into the exact [min, max]. Rows pushed in the last few
seconds appear once the rollup job has seen them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection, sql

TOP_CLIENTS = 10
MAX_ROUTES = 200
MAX_RANGE = timedelta(days=366)


class ReportError(ValueError):
    """A report that cannot be made as asked (unknown service, bad range): the field and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


@dataclass(frozen=True)
class Latency:
    """Latency figures in milliseconds; None where no request had a latency."""

    min_ms: float | None = None
    avg_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None


@dataclass(frozen=True)
class Summary:
    """Totals over the whole range."""

    requests: int
    errors: int
    error_rate: float
    unique_clients: int
    latency: Latency


@dataclass(frozen=True)
class RouteRow:
    """One (method, route) pair; route '' is requests pushed without a route."""

    method: str
    route: str
    requests: int
    errors: int
    error_rate: float
    avg_latency_ms: float | None
    p95_latency_ms: float | None
    max_latency_ms: float | None


@dataclass(frozen=True)
class ClientRow:
    """Requests from one client IP."""

    ip: str
    requests: int


@dataclass(frozen=True)
class StatusRow:
    """Requests answered with one status code."""

    status_code: int
    requests: int


@dataclass(frozen=True)
class DayRow:
    """One UTC day of the range (days without traffic included, with zeros)."""

    day: date
    requests: int
    errors: int
    error_rate: float
    avg_latency_ms: float | None
    p95_latency_ms: float | None


@dataclass(frozen=True)
class Report:
    """Everything a report shows, for one service over [from_, to)."""

    service: str
    from_: datetime
    to: datetime
    generated_at: datetime
    summary: Summary
    routes: list[RouteRow]
    status_codes: list[StatusRow]
    top_clients: list[ClientRow]
    days: list[DayRow]


# Plain literals (no string building): every value is a parameter; the weighted mean is
# avg_latency_ms weighted by each minute's count, which equals the mean of the raw latencies.
_TOTALS = """
SELECT coalesce(sum(l.count), 0), coalesce(sum(l.error_count), 0), min(l.min_latency_ms),
       sum(l.avg_latency_ms * l.count) / nullif(sum(l.count) FILTER (WHERE l.avg_latency_ms IS NOT NULL), 0),
       max(l.max_latency_ms)
FROM request_rollup_1m l WHERE l.service_id = %(service)s AND l.bucket >= %(from)s AND l.bucket < %(to)s"""

# Sketches merged per group, then read at the quantiles; {group} is one of QUANTILE_GROUPS.
_QUANTILES = sql.SQL("""
WITH keys AS (
    SELECT {group} AS g, u.k, sum(u.n)::bigint AS n
    FROM request_rollup_1m l, unnest(l.latency_sketch_keys, l.latency_sketch_counts) AS u(k, n)
    WHERE l.service_id = %(service)s AND l.bucket >= %(from)s AND l.bucket < %(to)s
GROUP BY 1, 2
)
SELECT g, latency_sketch_quantiles(array_agg(k), array_agg(n), %(qs)s::double precision[]) FROM keys GROUP BY g""")
# HTTP methods are tokens without spaces, so "method route" names a route row unambiguously.
QUANTILE_GROUPS = {"all": sql.SQL("NULL::text"), "route": sql.SQL("l.method || ' ' || l.route"),
                   "day": sql.SQL("date_trunc('day', l.bucket, 'UTC')")}

_ROUTES = """
SELECT l.method, l.route, sum(l.count), sum(l.error_count),
       sum(l.avg_latency_ms * l.count) / nullif(sum(l.count) FILTER (WHERE l.avg_latency_ms IS NOT NULL), 0),
       max(l.max_latency_ms), min(l.min_latency_ms)
FROM request_rollup_1m l WHERE l.service_id = %(service)s AND l.bucket >= %(from)s AND l.bucket < %(to)s
GROUP BY 1, 2 ORDER BY 3 DESC, 2, 1 LIMIT %(max_routes)s"""

_DAYS = """
SELECT date_trunc('day', l.bucket, 'UTC'), sum(l.count), sum(l.error_count),
       sum(l.avg_latency_ms * l.count) / nullif(sum(l.count) FILTER (WHERE l.avg_latency_ms IS NOT NULL), 0),
       max(l.max_latency_ms), min(l.min_latency_ms)
FROM request_rollup_1m l WHERE l.service_id = %(service)s AND l.bucket >= %(from)s AND l.bucket < %(to)s
GROUP BY 1 ORDER BY 1"""

# Each row also carries the number of distinct IPs (all rows, before LIMIT).
_CLIENTS = """
SELECT host(l.source_ip), sum(l.count), count(*) OVER ()
FROM request_client_ips_1h l WHERE l.service_id = %(service)s AND l.bucket >= %(from)s AND l.bucket < %(to)s
GROUP BY l.source_ip ORDER BY 2 DESC, 1 LIMIT %(top_clients)s"""

_STATUSES = """
SELECT l.status_code, sum(l.count) FROM request_status_1h l
WHERE l.service_id = %(service)s AND l.bucket >= %(from)s AND l.bucket < %(to)s
GROUP BY 1 ORDER BY 1"""


def parse_bound(text: str, field: str, *, end: bool = False) -> datetime:
    """A range bound from the command line or a query: YYYY-MM-DD (as `to`, the end of that day, so
    --from 2026-11-01 --to 2026-11-30 is all of November) or an ISO 8601 time; no zone means UTC."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC) + (timedelta(days=1) if end else timedelta())
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(field, f"{text!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def whole_hour(value: datetime, field: str) -> datetime:
    """value in UTC, refused unless it is on a whole UTC hour (the rollups' unit)."""
    if value.tzinfo is None:
        raise ReportError(field, "needs a time zone (use Z or +00:00)")
    value = value.astimezone(UTC)
    if value.minute or value.second or value.microsecond:
        raise ReportError(field, f"must be on a whole UTC hour, e.g. {value:%Y-%m-%dT%H}:00:00Z")
    return value


def check_range(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """The range in UTC, or ReportError naming the field that is wrong."""
    since, until = whole_hour(since, "from"), whole_hour(until, "to")
    if since >= until:
        raise ReportError("from", "must be before to")
    if until - since > MAX_RANGE:
        raise ReportError("to", f"the range may span at most {MAX_RANGE.days} days")
    return since, until


async def _rows(conn: AsyncConnection, query: str | sql.Composed, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    cur = await conn.execute(query, params)
    return await cur.fetchall()


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _rate(errors: int, requests: int) -> float:
    return errors / requests if requests else 0.0


def _clamp(value: float | None, low: Any, high: Any) -> float | None:
    """A sketch quantile kept inside the exact [min, max] (a sketch bucket may reach past them)."""
    if value is None or low is None or high is None:
        return value
    return min(max(value, float(low)), float(high))


async def _quantiles(conn: AsyncConnection, p: dict[str, Any], group: str, qs: list[float]) -> dict[Any, list[float]]:
    query = _QUANTILES.format(group=QUANTILE_GROUPS[group])
    return {g: list(q) for g, q in await _rows(conn, query, {**p, "qs": qs})}


async def _summary(conn: AsyncConnection, p: dict[str, Any]) -> Summary:
    (requests, errors, low, avg, high), = await _rows(conn, _TOTALS, p)
    found = (await _quantiles(conn, p, "all", [0.5, 0.95, 0.99])).get(None)
    p50, p95, p99 = (_clamp(v, low, high) for v in found) if found else (None, None, None)
    clients = await _rows(conn, _CLIENTS, p)
    latency = Latency(_num(low), _num(avg), p50, p95, p99, _num(high))
    return Summary(int(requests), int(errors), _rate(int(errors), int(requests)),
                   int(clients[0][2]) if clients else 0, latency)


async def _routes(conn: AsyncConnection, p: dict[str, Any]) -> list[RouteRow]:
    p95 = await _quantiles(conn, p, "route", [0.95])
    rows = []
    for method, route, n, errors, avg, high, low in await _rows(conn, _ROUTES, p):
        q = p95.get(f"{method} {route}")
        rows.append(RouteRow(method, route, int(n), int(errors), _rate(int(errors), int(n)), _num(avg),
                             _clamp(q[0] if q else None, low, high), _num(high)))
    return rows


async def _days(conn: AsyncConnection, p: dict[str, Any]) -> list[DayRow]:
    p95 = await _quantiles(conn, p, "day", [0.95])
    stored = {day: (n, e, a, hi, lo) for day, n, e, a, hi, lo in await _rows(conn, _DAYS, p)}
    days, day = [], p["from"].replace(hour=0)
    while day < p["to"]:
        n, errors, avg, high, low = stored.get(day, (0, 0, None, None, None))
        q = p95.get(day)
        days.append(DayRow(day.date(), int(n), int(errors), _rate(int(errors), int(n)), _num(avg),
                           _clamp(q[0] if q else None, low, high)))
        day += timedelta(days=1)
    return days


async def build(conn: AsyncConnection, service: str, since: datetime, until: datetime,
                now: datetime | None = None) -> Report:
    """The report of `service` over [since, until); ReportError for an unknown service or a bad range.
    A range without traffic gives a valid report with zeros and no rows."""
    since, until = check_range(since, until)
    cur = await conn.execute("SELECT id FROM services WHERE name = %s", (service,))
    found = await cur.fetchone()
    if found is None:
        raise ReportError("service", f"no service named {service!r}")
    p = {"service": found[0], "from": since, "to": until, "max_routes": MAX_ROUTES, "top_clients": TOP_CLIENTS}
    statuses = [StatusRow(int(s), int(n)) for s, n in await _rows(conn, _STATUSES, p)]
    clients = [ClientRow(ip, int(n)) for ip, n, _ in await _rows(conn, _CLIENTS, p)]
    return Report(service, since, until, now or datetime.now(UTC), await _summary(conn, p), await _routes(conn, p),
                  statuses, clients, await _days(conn, p))
