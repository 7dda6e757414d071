"""Overview: every endpoint's state now, and how the whole fleet did over the range."""

from __future__ import annotations

from panels import PROBE_ROLLUP, RAW, ROLLUP, Json, bargauge, dashboard, override, stat, steps, table, timeseries

# One row per enabled endpoint: its latest result (the primary key index finds
# it without scanning), whether the detector flagged it in the last 10 minutes,
# and any alert the alerter currently holds open for it.
STATUS_NOW = """
SELECT e.name AS endpoint,
       CASE WHEN last.time IS NULL THEN 'NO DATA'
            WHEN NOT last.ok THEN 'DOWN'
            WHEN EXISTS (SELECT 1 FROM anomalies a
                         WHERE a.endpoint_id = e.id AND a.time > now() - interval '10 minutes') THEN 'ANOMALOUS'
            ELSE 'UP' END AS status,
       last.time AS last_check,
       last.latency_ms,
       last.status_code,
       coalesce(last.error_kind || ': ' || last.error, last.error, '') AS error,
       coalesce((SELECT string_agg(s.kind || ' ' || s.status, ', ' ORDER BY s.kind)
                 FROM alert_state s WHERE s.endpoint_id = e.id AND s.status <> 'ok'), '') AS open_alerts,
       e.kind,
       e.target
FROM endpoints e
LEFT JOIN LATERAL (
    SELECT r.time, r.ok, r.latency_ms, r.status_code, r.error_kind, r.error
    FROM probe_results r
    WHERE r.endpoint_id = e.id AND r.time > now() - interval '8 days'
    ORDER BY r.time DESC
    LIMIT 1
) last ON true
WHERE e.enabled
"""

STATUS_COLORS = [{"type": "value", "options": {
    "UP": {"color": "green", "index": 0}, "DOWN": {"color": "red", "index": 1},
    "ANOMALOUS": {"color": "orange", "index": 2}, "NO DATA": {"color": "text", "index": 3}}}]

ENDPOINT_LINK = [{"title": "Endpoint detail",
                  "url": "/d/upwatch-endpoint?var-endpoint=${__value.raw}&${__url_time_range}"}]

COUNTS_NOW = f"""
WITH now_status AS ({STATUS_NOW})
SELECT count(*) FILTER (WHERE status = 'UP') AS "up",
       count(*) FILTER (WHERE status = 'DOWN') AS "down",
       count(*) FILTER (WHERE status = 'ANOMALOUS') AS "anomalous",
       count(*) FILTER (WHERE status = 'NO DATA') AS "no data"
FROM now_status
"""

STATUS_TABLE = f"""
WITH now_status AS ({STATUS_NOW})
SELECT * FROM now_status
ORDER BY CASE status WHEN 'DOWN' THEN 0 WHEN 'ANOMALOUS' THEN 1 WHEN 'NO DATA' THEN 2 ELSE 3 END, endpoint
"""

# Per prober location (several probers can probe the same endpoints, see docs/production.md): the
# locations that probed it in the last 15 minutes (the per-minute rollup, by its bucket index), and
# each one's latest result.
STATUS_BY_LOCATION = """
SELECT e.name AS endpoint, l.location,
       CASE WHEN last.ok THEN 'UP' ELSE 'DOWN' END AS status,
       last.time AS last_check,
       last.latency_ms,
       coalesce(last.error_kind || ': ' || last.error, last.error, '') AS error
FROM endpoints e
CROSS JOIN LATERAL (
    SELECT DISTINCT m.location FROM probe_rollup_1m m
    WHERE m.endpoint_id = e.id AND m.bucket > now() - interval '15 minutes'
) l
CROSS JOIN LATERAL (
    SELECT r.time, r.ok, r.latency_ms, r.error_kind, r.error FROM probe_results r
    WHERE r.endpoint_id = e.id AND r.location = l.location AND r.time > now() - interval '1 day'
      AND r.error_kind IS DISTINCT FROM 'skipped'
    ORDER BY r.time DESC
    LIMIT 1
) last
WHERE e.enabled
ORDER BY CASE WHEN last.ok THEN 1 ELSE 0 END, e.name, l.location
"""

UPTIME_BY_ENDPOINT = f"""
SELECT e.name AS endpoint, 100.0 * sum(x.ok) / NULLIF(sum(x.n), 0) AS uptime
FROM endpoints e
JOIN (
    SELECT endpoint_id, count(*) AS n, count(*) FILTER (WHERE ok) AS ok
    FROM probe_results WHERE {RAW} AND $__timeFilter(time) GROUP BY endpoint_id
    UNION ALL
    SELECT endpoint_id, sum(count), sum(ok_count)
    FROM {PROBE_ROLLUP} WHERE {ROLLUP} GROUP BY endpoint_id
) x ON x.endpoint_id = e.id
GROUP BY e.name
ORDER BY uptime, e.name
"""

UPTIME_OVERALL = f"""
SELECT 100.0 * sum(ok) / NULLIF(sum(n), 0) AS uptime
FROM (
    SELECT count(*) AS n, count(*) FILTER (WHERE ok) AS ok
    FROM probe_results WHERE {RAW} AND $__timeFilter(time)
    UNION ALL
    SELECT sum(count), sum(ok_count)
    FROM {PROBE_ROLLUP} WHERE {ROLLUP}
) x
"""

# Grouped by endpoint id, then named: the join runs once per point, not once per rollup row.
P95_BY_ENDPOINT = f"""
SELECT x.time, e.name AS metric, x.p95
FROM (
    SELECT $__timeGroupAlias(r.time, $__interval), r.endpoint_id,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY r.latency_ms) AS p95
    FROM probe_results r
    WHERE {RAW} AND $__timeFilter(r.time)
    GROUP BY 1, 2
    UNION ALL
    SELECT $__timeGroupAlias(u.bucket, $__interval), u.endpoint_id,
           sum(u.p95_latency_ms * u.count) / NULLIF(sum(u.count) FILTER (WHERE u.p95_latency_ms IS NOT NULL), 0)
    FROM {PROBE_ROLLUP} u
    WHERE {ROLLUP}
    GROUP BY 1, 2
) x JOIN endpoints e ON e.id = x.endpoint_id
ORDER BY 1, 2
"""

ERROR_RATE = f"""
SELECT $__timeGroupAlias(time, $__interval), 100.0 * count(*) FILTER (WHERE NOT ok) / count(*) AS "failed checks"
FROM probe_results WHERE {RAW} AND $__timeFilter(time)
GROUP BY 1
UNION ALL
SELECT $__timeGroupAlias(bucket, $__interval), 100.0 * (sum(count) - sum(ok_count)) / NULLIF(sum(count), 0)
FROM {PROBE_ROLLUP} WHERE {ROLLUP}
GROUP BY 1
ORDER BY 1
"""

CHECKS_PER_MINUTE = f"""
SELECT $__timeGroupAlias(time, $__interval), count(*) * 60000.0 / $__interval_ms AS "checks/min",
       count(*) FILTER (WHERE NOT ok) * 60000.0 / $__interval_ms AS "failed/min"
FROM probe_results WHERE {RAW} AND $__timeFilter(time)
GROUP BY 1
UNION ALL
SELECT $__timeGroupAlias(bucket, $__interval), sum(count) * 60000.0 / $__interval_ms,
       (sum(count) - sum(ok_count)) * 60000.0 / $__interval_ms
FROM {PROBE_ROLLUP} WHERE {ROLLUP}
GROUP BY 1
ORDER BY 1
"""

ANOMALIES_AND_ALERTS = """
SELECT (SELECT count(*) FROM anomalies WHERE $__timeFilter(time)) AS "anomalies",
       (SELECT count(*) FROM incidents WHERE started_at <= $__timeTo() AND ended_at >= $__timeFrom()) AS "incidents",
       (SELECT count(*) FROM alerts WHERE $__timeFilter(created_at) AND state = 'sent') AS "alerts sent",
       (SELECT count(*) FROM alerts WHERE $__timeFilter(created_at) AND state = 'failed') AS "alerts failed"
"""

# Only https endpoints have certificates; the 1-day window bounds the index scan
# for one whose recent checks all failed before the TLS handshake.
CERT_DAYS_LEFT = """
SELECT e.name AS endpoint, extract(epoch FROM c.cert_not_after - now()) / 86400 AS days_left
FROM endpoints e
CROSS JOIN LATERAL (
    SELECT r.cert_not_after FROM probe_results r
    WHERE r.endpoint_id = e.id AND r.time > now() - interval '1 day' AND r.cert_not_after IS NOT NULL
    ORDER BY r.time DESC
    LIMIT 1
) c
WHERE e.enabled AND e.target LIKE 'https://%'
ORDER BY days_left, e.name
"""


def build() -> Json:
    """The overview dashboard."""
    panels = [
        stat("Endpoints now", "Enabled endpoints by their latest result: DOWN when the latest check failed, "
             "ANOMALOUS when it passed but the detector flagged it in the last 10 minutes.", COUNTS_NOW,
             size=(10, 5), overrides=[override("up", color={"mode": "fixed", "fixedColor": "green"}),
                                      override("down", color={"mode": "fixed", "fixedColor": "red"}),
                                      override("anomalous", color={"mode": "fixed", "fixedColor": "orange"}),
                                      override("no data", color={"mode": "fixed", "fixedColor": "text"})]),
        stat("Uptime", "Share of passed checks over the selected range, all endpoints.", UPTIME_OVERALL,
             unit="percent", size=(4, 5), decimals=3,
             thresholds=steps(("red", None), ("orange", 99.0), ("green", 99.9))),
        stat("Anomalies and alerts", "Counted over the selected range.", ANOMALIES_AND_ALERTS, size=(10, 5)),
        table("Status now", "Latest result per endpoint. Click a name for its detail dashboard.", STATUS_TABLE,
              ("endpoint", "status", "last_check", "latency_ms", "status_code", "error", "open_alerts", "kind",
               "target"), size=(24, 9), overrides=[override("endpoint", links=ENDPOINT_LINK),
                                       override("status", mappings=STATUS_COLORS,
                                                **{"custom.cellOptions": {"type": "color-background"}}),
                                       override("latency_ms", unit="ms"),
                                       override("last_check", unit="dateTimeFromNow")]),
        table("Status per location", "Latest result per endpoint and prober location (locations that probed it "
              "in the last 15 minutes); alerting calls an endpoint down when alerting.min_locations agree.",
              STATUS_BY_LOCATION, ("endpoint", "location", "status", "last_check", "latency_ms", "error"),
              size=(24, 8), overrides=[override("endpoint", links=ENDPOINT_LINK),
                                       override("status", mappings=STATUS_COLORS,
                                                **{"custom.cellOptions": {"type": "color-background"}}),
                                       override("latency_ms", unit="ms"),
                                       override("last_check", unit="dateTimeFromNow")]),
        timeseries("p95 latency per endpoint", "Raw checks on short ranges; on ranges of a day or more, the "
                   "count-weighted mean of the per-minute p95 from the rollups.", P95_BY_ENDPOINT, unit="ms",
                   size=(24, 9), maxDataPoints=200),  # one line per endpoint: fewer points each
        bargauge("Uptime per endpoint", "Share of passed checks over the selected range, worst first.",
                 UPTIME_BY_ENDPOINT, unit="percent", size=(12, 9), minimum=90, maximum=100,
                 thresholds=steps(("red", None), ("orange", 99.0), ("green", 99.9))),
        bargauge("Certificate days left", "Days until the TLS certificate seen by the latest check expires "
                 "(https endpoints checked in the last day).", CERT_DAYS_LEFT, unit="d", size=(12, 9), minimum=0,
                 thresholds=steps(("red", None), ("orange", 14), ("green", 30))),
        timeseries("Failed checks", "Share of checks that failed, all endpoints.", ERROR_RATE, unit="percent"),
        timeseries("Checks per minute", "Checks stored per minute, and how many of them failed.",
                   CHECKS_PER_MINUTE, unit="short"),
    ]
    return dashboard("upwatch-overview", "upwatch / Overview",
                     "Every endpoint's state now, uptime, latency and errors over the selected range.", panels)
