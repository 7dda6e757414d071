"""Endpoint detail: one endpoint ($endpoint) in depth. The alerter links here with ?var-endpoint=NAME."""

from __future__ import annotations

from panels import (
    BELOW_HOURLY,
    HOURLY,
    PROBE_DETAIL,
    PROBE_ROLLUP,
    RAW,
    ROLLUP,
    Json,
    annotation,
    dashboard,
    override,
    query_variable,
    stat,
    steps,
    table,
    timeseries,
)

# The endpoint's rows come from the primary key index (endpoint_id, time).
THIS = "e.name = '$endpoint'"
# The endpoint's id as a value known when execution starts, not a join: newest-first tables with a
# LIMIT then read backwards through the (endpoint_id, time) index and stop at the limit; on
# TimescaleDB the ordered chunk append stops before the compressed chunks (5.4 s -> 20 ms on 30 d).
THIS_ID = "r.endpoint_id = (SELECT e.id FROM endpoints e WHERE e.name = '$endpoint')"

STATUS_NOW = f"""
SELECT coalesce((
    SELECT CASE WHEN last.time IS NULL THEN -1
                WHEN NOT last.ok THEN 0
                WHEN EXISTS (SELECT 1 FROM anomalies a
                             WHERE a.endpoint_id = e.id AND a.time > now() - interval '10 minutes') THEN 2
                ELSE 1 END
    FROM endpoints e
    LEFT JOIN LATERAL (
        SELECT r.time, r.ok FROM probe_results r
        WHERE r.endpoint_id = e.id AND r.time > now() - interval '8 days'
        ORDER BY r.time DESC LIMIT 1
    ) last ON true
    WHERE {THIS}
), -1) AS status
"""

STATUS_MAPPINGS = [{"type": "value", "options": {
    "1": {"text": "UP", "color": "green", "index": 0}, "0": {"text": "DOWN", "color": "red", "index": 1},
    "2": {"text": "ANOMALOUS", "color": "orange", "index": 2}, "-1": {"text": "NO DATA", "color": "text", "index": 3}}}]

SUMMARY = f"""
SELECT 100.0 * sum(x.ok) / NULLIF(sum(x.n), 0) AS "uptime %",
       sum(x.p95 * x.n) / NULLIF(sum(x.n) FILTER (WHERE x.p95 IS NOT NULL), 0) AS "p95 ms",
       sum(x.n) AS "checks"
FROM endpoints e
JOIN LATERAL (
    SELECT count(*) AS n, count(*) FILTER (WHERE r.ok) AS ok,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY r.latency_ms) AS p95
    FROM probe_results r WHERE {RAW} AND r.endpoint_id = e.id AND $__timeFilter(r.time)
    UNION ALL
    SELECT sum(u.count), sum(u.ok_count),
           sum(u.p95_latency_ms * u.count) / NULLIF(sum(u.count) FILTER (WHERE u.p95_latency_ms IS NOT NULL), 0)
    FROM {PROBE_ROLLUP} u WHERE {ROLLUP} AND u.endpoint_id = e.id
) x ON true
WHERE {THIS}
"""

CERT_DAYS_LEFT = f"""
SELECT extract(epoch FROM max(c.cert_not_after) - now()) / 86400 AS "certificate days left"
FROM endpoints e
LEFT JOIN LATERAL (
    SELECT r.cert_not_after FROM probe_results r
    WHERE r.endpoint_id = e.id AND r.time > now() - interval '1 day' AND r.cert_not_after IS NOT NULL
    ORDER BY r.time DESC LIMIT 1
) c ON true
WHERE {THIS}
"""

PHASES = f"""
SELECT $__timeGroupAlias(r.time, $__interval),
       avg(r.dns_ms) AS dns, avg(r.connect_ms) AS connect, avg(r.tls_ms) AS tls,
       avg(r.ttfb_ms) AS "time to first byte", avg(r.transfer_ms) AS transfer
FROM probe_results r JOIN endpoints e ON e.id = r.endpoint_id
WHERE {BELOW_HOURLY} AND {THIS} AND $__timeFilter(r.time)
GROUP BY 1
UNION ALL
SELECT $__timeGroupAlias(d.bucket, $__interval),
       sum(d.dns_ms_sum) / NULLIF(sum(d.dns_ms_n), 0), sum(d.connect_ms_sum) / NULLIF(sum(d.connect_ms_n), 0),
       sum(d.tls_ms_sum) / NULLIF(sum(d.tls_ms_n), 0), sum(d.ttfb_ms_sum) / NULLIF(sum(d.ttfb_ms_n), 0),
       sum(d.transfer_ms_sum) / NULLIF(sum(d.transfer_ms_n), 0)
FROM endpoints e CROSS JOIN LATERAL {PROBE_DETAIL} d
WHERE {HOURLY} AND {THIS}
GROUP BY 1
ORDER BY 1
"""

PERCENTILES = f"""
SELECT $__timeGroupAlias(r.time, $__interval),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY r.latency_ms) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY r.latency_ms) AS p95,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY r.latency_ms) AS p99
FROM probe_results r JOIN endpoints e ON e.id = r.endpoint_id
WHERE {RAW} AND {THIS} AND $__timeFilter(r.time)
GROUP BY 1
UNION ALL
SELECT $__timeGroupAlias(u.bucket, $__interval),
       sum(u.p50_latency_ms * u.count) / NULLIF(sum(u.count) FILTER (WHERE u.p50_latency_ms IS NOT NULL), 0),
       sum(u.p95_latency_ms * u.count) / NULLIF(sum(u.count) FILTER (WHERE u.p95_latency_ms IS NOT NULL), 0),
       sum(u.p99_latency_ms * u.count) / NULLIF(sum(u.count) FILTER (WHERE u.p99_latency_ms IS NOT NULL), 0)
FROM {PROBE_ROLLUP} u JOIN endpoints e ON e.id = u.endpoint_id
WHERE {ROLLUP} AND {THIS}
GROUP BY 1
ORDER BY 1
"""

STATUS_CODES = f"""
SELECT $__timeGroupAlias(r.time, $__interval), coalesce(r.status_code::text, 'no response') AS metric,
       count(*) AS checks
FROM probe_results r JOIN endpoints e ON e.id = r.endpoint_id
WHERE {BELOW_HOURLY} AND {THIS} AND $__timeFilter(r.time)
GROUP BY 1, 2
UNION ALL
SELECT $__timeGroupAlias(d.bucket, $__interval), coalesce(d.status_code::text, 'no response'), sum(d.checks)
FROM endpoints e CROSS JOIN LATERAL {PROBE_DETAIL} d
WHERE {HOURLY} AND {THIS}
GROUP BY 1, 2
ORDER BY 1, 2
"""

LATENCY = f"""
SELECT $__timeGroupAlias(r.time, $__interval), avg(r.latency_ms) AS "latency ms"
FROM probe_results r JOIN endpoints e ON e.id = r.endpoint_id
WHERE {RAW} AND {THIS} AND $__timeFilter(r.time)
GROUP BY 1
UNION ALL
SELECT $__timeGroupAlias(u.bucket, $__interval),
       sum(u.avg_latency_ms * u.count) / NULLIF(sum(u.count) FILTER (WHERE u.avg_latency_ms IS NOT NULL), 0)
FROM {PROBE_ROLLUP} u JOIN endpoints e ON e.id = u.endpoint_id
WHERE {ROLLUP} AND {THIS}
GROUP BY 1
ORDER BY 1
"""

SCORES = f"""
SELECT $__timeGroupAlias(a.time, $__interval), max(a.score) AS "anomaly score", max(a.threshold) AS threshold
FROM anomalies a JOIN endpoints e ON e.id = a.endpoint_id
WHERE {THIS} AND $__timeFilter(a.time)
GROUP BY 1
ORDER BY 1
"""

# The model's current threshold drawn across the whole range.
MODEL_THRESHOLD = f"""
SELECT t.time, max(m.threshold) AS "model threshold"
FROM endpoints e
JOIN detector_models m ON m.endpoint_id = e.id
CROSS JOIN (VALUES ($__timeFrom()::timestamptz), ($__timeTo()::timestamptz)) AS t(time)
WHERE {THIS} AND m.threshold IS NOT NULL
GROUP BY t.time
ORDER BY t.time
"""

# probe_results.assertions is what upwatch.assertions.evaluate returns: a JSON array of
# {"assertion": the condition as configured, "ok", "actual": the value seen, "reason": why it failed}
# ("reason" only on failed ones), e.g. "expected == UP, got DOWN". Shown in the configured order.
FAILED_ASSERTIONS = f"""
SELECT r.time, a.item->>'assertion' AS assertion, a.item->>'actual' AS actual, a.item->>'reason' AS reason,
       r.status_code
FROM probe_results r
CROSS JOIN LATERAL jsonb_array_elements(
    CASE WHEN jsonb_typeof(r.assertions) = 'array' THEN r.assertions ELSE '[]'::jsonb END)
    WITH ORDINALITY AS a(item, n)
WHERE {THIS_ID} AND NOT r.ok AND $__timeFilter(r.time) AND a.item->'ok' = 'false'::jsonb
ORDER BY r.time DESC, a.n
LIMIT 200
"""

RECENT_FAILURES = f"""
SELECT r.time, r.status_code, r.error_kind, r.error, r.latency_ms, r.location, r.prober, r.final_url
FROM probe_results r
WHERE {THIS_ID} AND NOT r.ok AND $__timeFilter(r.time)
ORDER BY r.time DESC
LIMIT 200
"""

ANOMALY_ANNOTATIONS = f"""
SELECT a.time, a.severity || ' anomaly (score ' || round(a.score::numeric, 2) || '): ' || a.reason AS text,
       'anomaly,' || a.severity AS tags
FROM anomalies a JOIN endpoints e ON e.id = a.endpoint_id
WHERE {THIS} AND $__timeFilter(a.time)
ORDER BY a.time
"""

ALERT_ANNOTATIONS = f"""
SELECT coalesce(al.sent_at, al.created_at) AS time,
       al.kind || ' ' || al.event || ' (' || al.state || '): ' || al.subject AS text,
       'alert,' || al.kind || ',' || al.state AS tags
FROM alerts al JOIN endpoints e ON e.id = al.endpoint_id
WHERE {THIS} AND $__timeFilter(al.created_at)
ORDER BY 1
"""


def build() -> Json:
    """The endpoint detail dashboard."""
    panels = [
        stat("Status now", "Latest result: DOWN when it failed, ANOMALOUS when the detector flagged the endpoint "
             "in the last 10 minutes.", STATUS_NOW, size=(6, 4), mappings=STATUS_MAPPINGS),
        stat("Over the range", "Uptime, p95 latency and number of checks in the selected range.", SUMMARY,
             size=(12, 4), decimals=2),
        stat("Certificate", "Days until the certificate seen by the latest check expires.", CERT_DAYS_LEFT,
             unit="d", size=(6, 4), decimals=1, thresholds=steps(("red", None), ("orange", 14), ("green", 30))),
        timeseries("Latency by phase", "Mean time per phase (DNS, connect, TLS, time to first byte, transfer), "
                   "stacked; where points are an hour apart (about 16 days up), from the hourly detail rollup.", PHASES,
                   unit="ms", stack=True),
        timeseries("Latency percentiles", "p50/p95/p99: raw checks on short ranges; from a day up, count-weighted "
                   "means of the per-minute percentiles.", PERCENTILES, unit="ms"),
        timeseries("Status codes", "Checks per status code (no response: connection, DNS or timeout errors); "
                   "hourly points come from the hourly detail rollup.",
                   STATUS_CODES, unit="short", stack=True, bars=True),
        timeseries("Latency and anomaly score", "Mean latency (left), the detector's score of anomalous points "
                   "and the threshold it compares against (right).", LATENCY, SCORES, MODEL_THRESHOLD, unit="ms",
                   overrides=[override(name, unit="percentunit", min=0, max=1,
                                       **{"custom.axisPlacement": "right", "custom.drawStyle": "points",
                                          "custom.pointSize": 6})
                              for name in ("anomaly score", "threshold")]
                   + [override("model threshold", unit="percentunit", min=0, max=1,
                               **{"custom.axisPlacement": "right", "custom.lineStyle": {"fill": "dash",
                                                                                          "dash": [10, 10]}})]),
        table("Failed assertions", "Assertions that failed, newest first: the condition as configured, the value "
              "seen and why it failed.", FAILED_ASSERTIONS,
              ("time", "assertion", "actual", "reason", "status_code"), size=(12, 8)),
        table("Recent failures", "Failed checks in the range, newest first.", RECENT_FAILURES,
              ("time", "status_code", "error_kind", "error", "latency_ms", "location", "prober", "final_url"),
              size=(12, 8),
              overrides=[override("latency_ms", unit="ms")]),
    ]
    return dashboard(
        "upwatch-endpoint", "upwatch / Endpoint", "One endpoint: latency by phase, percentiles, status codes, "
        "anomalies, assertions and failures.", panels,
        variables=[query_variable("endpoint", "Endpoint", "SELECT name FROM endpoints ORDER BY name")],
        annotations=[annotation("Anomalies", ANOMALY_ANNOTATIONS, "orange"),
                     annotation("Alerts", ALERT_ANNOTATIONS, "red")])
