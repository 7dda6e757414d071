"""Anomalies: what the detector flagged, where and when, grouped into incidents."""

from __future__ import annotations

from panels import Json, dashboard, heatmap, override, stat, table, timeseries

# A series belongs to an endpoint or to a pushed service; its name is the fallback.
TARGET = "coalesce(e.name, s.name, a.series)"
JOINS = """
LEFT JOIN endpoints e ON e.id = a.endpoint_id
LEFT JOIN services s ON s.id = a.service_id
"""

HEATMAP = f"""
SELECT $__timeGroupAlias(a.time, 1h), {TARGET} AS metric, max(a.score) AS score
FROM anomalies a {JOINS}
WHERE $__timeFilter(a.time)
GROUP BY 1, 2
ORDER BY 1, 2
"""

SEVERITY_COUNTS = """
SELECT count(*) FILTER (WHERE severity = 'critical') AS critical,
       count(*) FILTER (WHERE severity = 'high') AS high,
       count(*) FILTER (WHERE severity = 'medium') AS medium,
       count(DISTINCT series) AS "series affected"
FROM anomalies
WHERE $__timeFilter(time)
"""

BY_SEVERITY = """
SELECT $__timeGroupAlias(time, $__interval), severity AS metric, count(*) AS anomalies
FROM anomalies
WHERE $__timeFilter(time)
GROUP BY 1, 2
ORDER BY 1, 2
"""

INCIDENTS = """
SELECT i.started_at AS started,
       i.ended_at AS ended,
       extract(epoch FROM i.ended_at - i.started_at) AS duration,
       coalesce(e.name, s.name, i.series) AS target,
       i.series,
       i.severity,
       i.peak_score,
       i.points,
       i.reason
FROM incidents i
LEFT JOIN endpoints e ON e.id = i.endpoint_id
LEFT JOIN services s ON s.id = i.service_id
WHERE i.started_at <= $__timeTo() AND i.ended_at >= $__timeFrom()
ORDER BY i.started_at DESC
LIMIT 500
"""

LATEST = f"""
SELECT a.time, {TARGET} AS target, a.series, a.value, a.score, a.threshold, a.severity, a.model_version, a.reason
FROM anomalies a {JOINS}
WHERE $__timeFilter(a.time)
ORDER BY a.time DESC
LIMIT 500
"""

SEVERITY_COLORS = [{"type": "value", "options": {
    "critical": {"color": "dark-red", "index": 0}, "high": {"color": "red", "index": 1},
    "medium": {"color": "orange", "index": 2}}}]

TARGET_LINK = [{"title": "Endpoint detail",
                "url": "/d/upwatch-endpoint?var-endpoint=${__value.raw}&${__url_time_range}"}]


def build() -> Json:
    """The anomalies dashboard."""
    severity_cells = {"mappings": SEVERITY_COLORS, "custom.cellOptions": {"type": "color-text"}}
    panels = [
        stat("Anomalies in range", "Anomalous points by severity, and how many series had any.", SEVERITY_COUNTS,
             size=(12, 5), overrides=[override("critical", color={"mode": "fixed", "fixedColor": "dark-red"}),
                                      override("high", color={"mode": "fixed", "fixedColor": "red"}),
                                      override("medium", color={"mode": "fixed", "fixedColor": "orange"})]),
        timeseries("Anomalies by severity", "Anomalous points per interval.", BY_SEVERITY, stack=True, bars=True,
                   size=(12, 5)),
        heatmap("Anomaly score by target and hour", "Highest anomaly score per endpoint (or pushed service) and "
                "hour; empty cells had no anomaly.", HEATMAP),
        table("Incidents", "Consecutive anomalous points of one series, with the detector's reason.", INCIDENTS,
              ("started", "ended", "duration", "target", "series", "severity", "peak_score", "points", "reason"),
              size=(24, 9), overrides=[override("duration", unit="s"), override("severity", **severity_cells),
                                       override("peak_score", unit="percentunit", decimals=2)]),
        table("Latest anomalies", "Every anomalous point in the range, newest first.", LATEST,
              ("time", "target", "series", "value", "score", "threshold", "severity", "model_version", "reason"),
              size=(24, 9),
              overrides=[override("severity", **severity_cells), override("target", links=TARGET_LINK),
                         override("score", unit="percentunit", decimals=2)]),
    ]
    return dashboard("upwatch-anomalies", "upwatch / Anomalies",
                     "Anomalies found by the detector: when, where, how severe and why.", panels,
                     time_from="now-7d")
