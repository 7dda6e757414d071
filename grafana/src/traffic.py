"""API traffic: the request logs a pushed service ($service) sent to upwatch."""

from __future__ import annotations

from panels import (
    RAW,
    REQUEST_ROLLUP,
    ROLLUP,
    Json,
    dashboard,
    override,
    piechart,
    query_variable,
    stat,
    table,
    timeseries,
)

THIS = "s.name = '$service'"
# A request failed when the service answered 5xx or reported an error (no response).
FAILED = "(l.status_code >= 500 OR l.error IS NOT NULL)"
RAW_ROWS = f"FROM request_logs l JOIN services s ON s.id = l.service_id WHERE {THIS} AND $__timeFilter(l.time)"
ROLLUP_ROWS = f"FROM {REQUEST_ROLLUP} u JOIN services s ON s.id = u.service_id WHERE {THIS}"


def _weighted(column: str) -> str:
    return f"sum(u.{column} * u.count) / NULLIF(sum(u.count) FILTER (WHERE u.{column} IS NOT NULL), 0)"


SUMMARY = f"""
SELECT sum(n) AS requests, 100.0 * sum(failed) / NULLIF(sum(n), 0) AS "error %",
       sum(avg_ms * n) / NULLIF(sum(n) FILTER (WHERE avg_ms IS NOT NULL), 0) AS "avg ms"
FROM (
    SELECT count(*) AS n, count(*) FILTER (WHERE {FAILED}) AS failed, avg(l.latency_ms) AS avg_ms
    {RAW_ROWS} AND {RAW}
    UNION ALL
    SELECT sum(u.count), sum(u.error_count), {_weighted("avg_latency_ms")}
    {ROLLUP_ROWS} AND {ROLLUP}
) x
"""

REQUESTS = f"""
SELECT $__timeGroupAlias(l.time, $__interval), count(*) * 60000.0 / $__interval_ms AS "requests/min",
       count(*) FILTER (WHERE {FAILED}) * 60000.0 / $__interval_ms AS "failed/min"
{RAW_ROWS} AND {RAW}
GROUP BY 1
UNION ALL
SELECT $__timeGroupAlias(u.bucket, $__interval), sum(u.count) * 60000.0 / $__interval_ms,
       sum(u.error_count) * 60000.0 / $__interval_ms
{ROLLUP_ROWS} AND {ROLLUP}
GROUP BY 1
ORDER BY 1
"""

ERROR_RATE = f"""
SELECT $__timeGroupAlias(l.time, $__interval), 100.0 * count(*) FILTER (WHERE {FAILED}) / count(*) AS "error %"
{RAW_ROWS} AND {RAW}
GROUP BY 1
UNION ALL
SELECT $__timeGroupAlias(u.bucket, $__interval), 100.0 * sum(u.error_count) / NULLIF(sum(u.count), 0)
{ROLLUP_ROWS} AND {ROLLUP}
GROUP BY 1
ORDER BY 1
"""

LATENCY = f"""
SELECT $__timeGroupAlias(l.time, $__interval), avg(l.latency_ms) AS avg,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY l.latency_ms) AS p95
{RAW_ROWS} AND {RAW}
GROUP BY 1
UNION ALL
SELECT $__timeGroupAlias(u.bucket, $__interval), {_weighted("avg_latency_ms")}, {_weighted("p95_latency_ms")}
{ROLLUP_ROWS} AND {ROLLUP}
GROUP BY 1
ORDER BY 1
"""

ROUTES = f"""
SELECT route, method, sum(n) AS requests, sum(failed) AS errors, 100.0 * sum(failed) / NULLIF(sum(n), 0) AS "error %",
       sum(avg_ms * n) / NULLIF(sum(n) FILTER (WHERE avg_ms IS NOT NULL), 0) AS "avg ms",
       sum(p95_ms * n) / NULLIF(sum(n) FILTER (WHERE p95_ms IS NOT NULL), 0) AS "p95 ms",
       max(max_ms) AS "max ms"
FROM (
    SELECT coalesce(l.route, l.path, '') AS route, coalesce(l.method, '') AS method, count(*) AS n,
           count(*) FILTER (WHERE {FAILED}) AS failed, avg(l.latency_ms) AS avg_ms,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY l.latency_ms) AS p95_ms, max(l.latency_ms) AS max_ms
    {RAW_ROWS} AND {RAW}
    GROUP BY 1, 2
    UNION ALL
    SELECT u.route, u.method, sum(u.count), sum(u.error_count), {_weighted("avg_latency_ms")},
           {_weighted("p95_latency_ms")}, max(u.max_latency_ms)
    {ROLLUP_ROWS} AND {ROLLUP}
    GROUP BY 1, 2
) x
GROUP BY route, method
ORDER BY requests DESC, route, method
LIMIT 200
"""

# The range's whole UTC hours [FIRST_HOUR, LAST_HOUR) and the raw rows at its two edges: the hourly
# counts push.rollup keeps (exact, as the raw logs') instead of a scan of every log in a month.
FROM_TIME, TO_TIME = "$__timeFrom()::timestamptz", "$__timeTo()::timestamptz"
FROM_HOUR = f"date_trunc('hour', {FROM_TIME}, 'UTC')"
FIRST_HOUR = f"({FROM_HOUR} + CASE WHEN {FROM_HOUR} < {FROM_TIME} THEN interval '1 hour' ELSE interval '0' END)"
LAST_HOUR = f"greatest({FIRST_HOUR}, date_trunc('hour', {TO_TIME}, 'UTC'))"
EDGE_ROWS = (f"FROM request_logs l JOIN services s ON s.id = l.service_id WHERE {THIS}"
             f" AND ((l.time >= {FROM_TIME} AND l.time < {FIRST_HOUR} AND l.time <= {TO_TIME})"
             f" OR (l.time >= {LAST_HOUR} AND l.time <= {TO_TIME}))")
HOURS = f"u.bucket >= {FIRST_HOUR} AND u.bucket < {LAST_HOUR}"

# Grouped by the integer code first, then by class: a text label per group, not per log row.
# request_status_1h has no row for "no response" (no status code): in whole hours it is the hours'
# requests (request_rollup: hourly rows, then the minutes not yet in them) minus those with a code.
STATUS_CLASSES = f"""
SELECT CASE WHEN x.status_code IS NULL THEN 'no response' ELSE (x.status_code / 100)::text || 'xx' END AS status,
       sum(x.n)::bigint AS requests
FROM (
    SELECT l.status_code, count(*) AS n {EDGE_ROWS} GROUP BY 1
    UNION ALL
    SELECT u.status_code, sum(u.count)
    FROM request_status_1h u JOIN services s ON s.id = u.service_id WHERE {THIS} AND {HOURS}
    GROUP BY 1
    UNION ALL
    SELECT NULL, coalesce((SELECT sum(u.count)
                           FROM request_rollup({FIRST_HOUR}, {LAST_HOUR} - interval '1 minute', 3600000) u
                           JOIN services s ON s.id = u.service_id WHERE {THIS}), 0)
                 - coalesce((SELECT sum(u.count) FROM request_status_1h u JOIN services s ON s.id = u.service_id
                             WHERE {THIS} AND {HOURS}), 0)
) x
GROUP BY 1
HAVING sum(x.n) > 0
ORDER BY 1
"""

METHODS = f"""
SELECT method, sum(n) AS requests
FROM (
    SELECT coalesce(l.method, '') AS method, count(*) AS n {RAW_ROWS} AND {RAW} GROUP BY 1
    UNION ALL
    SELECT u.method, sum(u.count) {ROLLUP_ROWS} AND {ROLLUP} GROUP BY 1
) x
GROUP BY method
ORDER BY requests DESC
"""

# Grouped by the inet, formatted after: host() per group, not per log row.
CLIENTS = f"""
SELECT coalesce(host(x.source_ip), 'unknown') AS client_ip, x.requests, x.errors, x."avg ms", x.last_seen
FROM (
    SELECT l.source_ip, count(*) AS requests, count(*) FILTER (WHERE {FAILED}) AS errors,
           avg(l.latency_ms) AS "avg ms", max(l.time) AS last_seen
    {RAW_ROWS}
    GROUP BY l.source_ip
) x
ORDER BY x.requests DESC, client_ip
LIMIT 20
"""

RECENT_ERRORS = f"""
SELECT l.time, l.method, l.path, l.route, l.status_code, l.latency_ms, coalesce(l.error, '') AS error,
       coalesce(host(l.source_ip), '') AS client_ip, coalesce(l.user_agent, '') AS user_agent
{RAW_ROWS} AND {FAILED}
ORDER BY l.time DESC
LIMIT 200
"""


def build() -> Json:
    """The API traffic dashboard."""
    panels = [
        stat("Requests in range", "Requests logged, share that failed (5xx or no response) and mean latency.",
             SUMMARY, size=(24, 4), decimals=2),
        timeseries("Requests", "Requests per minute, and how many failed.", REQUESTS, unit="short", size=(8, 8)),
        timeseries("Error rate", "Share of requests answered 5xx or not answered.", ERROR_RATE, unit="percent",
                   size=(8, 8)),
        timeseries("Latency", "Mean and p95 (from a day up: count-weighted means of per-minute values).", LATENCY,
                   unit="ms", size=(8, 8)),
        table("Routes", "Per route and method over the range, busiest first.", ROUTES,
              ("route", "method", "requests", "errors", "error %", "avg ms", "p95 ms", "max ms"), size=(24, 9),
              overrides=[override(name, unit="ms") for name in ("avg ms", "p95 ms", "max ms")]
              + [override("error %", unit="percent", decimals=2)]),
        piechart("Status codes", "Responses by status class: hourly counts for the whole hours of the range, raw "
                 "request logs at its edges.", STATUS_CLASSES),
        piechart("Methods", "Requests by HTTP method.", METHODS),
        table("Top clients", "The 20 client IPs with the most requests in the range.", CLIENTS,
              ("client_ip", "requests", "errors", "avg ms", "last_seen"), size=(8, 8),
              overrides=[override("avg ms", unit="ms")]),
        table("Recent errors", "Failed requests in the range, newest first.", RECENT_ERRORS,
              ("time", "method", "path", "route", "status_code", "latency_ms", "error", "client_ip", "user_agent"),
              size=(24, 9),
              overrides=[override("latency_ms", unit="ms")]),
    ]
    return dashboard("upwatch-traffic", "upwatch / API traffic",
                     "Pushed request logs of one service: volume, errors, latency, routes and clients.", panels,
                     variables=[query_variable("service", "Service", "SELECT name FROM services ORDER BY name")])
