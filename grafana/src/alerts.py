"""Alerts: what the alerter decided and delivered, read from its outbox and state tables."""

from __future__ import annotations

from panels import Json, dashboard, override, stat, table, timeseries

BY_STATE = """
SELECT $__timeGroupAlias(created_at, $__interval), state AS metric, count(*) AS notifications
FROM alerts
WHERE $__timeFilter(created_at)
GROUP BY 1, 2
ORDER BY 1, 2
"""

COUNTS = """
SELECT count(*) FILTER (WHERE state = 'sent') AS sent,
       count(*) FILTER (WHERE state = 'suppressed') AS suppressed,
       count(*) FILTER (WHERE state = 'failed') AS failed,
       count(*) FILTER (WHERE state IN ('pending', 'sending')) AS pending
FROM alerts
WHERE $__timeFilter(created_at)
"""

RECENT = """
SELECT al.created_at AS created,
       coalesce(e.name, '') AS endpoint,
       al.kind,
       al.event,
       coalesce(al.severity, '') AS severity,
       al.channel,
       array_to_string(al.recipients, ', ') AS recipients,
       al.state,
       al.attempts,
       al.sent_at AS sent,
       coalesce(al.last_error, '') AS last_error,
       al.subject
FROM alerts al
LEFT JOIN endpoints e ON e.id = al.endpoint_id
WHERE $__timeFilter(al.created_at)
ORDER BY al.created_at DESC
LIMIT 500
"""

# Not limited to the range: this is what is open (or was last decided) right now.
STATE_NOW = """
SELECT coalesce(e.name, '') AS endpoint,
       st.kind,
       st.status,
       st.since,
       st.consecutive_failures,
       st.consecutive_successes,
       st.last_sent_at,
       st.suppressed_count,
       coalesce(st.last_error, '') AS last_error,
       st.fingerprint
FROM alert_state st
LEFT JOIN endpoints e ON e.id = st.endpoint_id
ORDER BY (st.status = 'ok'), st.updated_at DESC
LIMIT 500
"""

STATE_COLORS = [{"type": "value", "options": {
    "sent": {"color": "green", "index": 0}, "failed": {"color": "red", "index": 1},
    "suppressed": {"color": "text", "index": 2}, "pending": {"color": "yellow", "index": 3},
    "sending": {"color": "yellow", "index": 4}}}]

ENDPOINT_LINK = [{"title": "Endpoint detail",
                  "url": "/d/upwatch-endpoint?var-endpoint=${__value.raw}&${__url_time_range}"}]


def build() -> Json:
    """The alerts dashboard."""
    state_cells = {"mappings": STATE_COLORS, "custom.cellOptions": {"type": "color-text"}}
    panels = [
        stat("Notifications in range", "Alerts by outcome: sent, suppressed (cooldown, grouping, maintenance), "
             "failed after retries, still pending.", COUNTS, size=(10, 8),
             overrides=[override("sent", color={"mode": "fixed", "fixedColor": "green"}),
                        override("failed", color={"mode": "fixed", "fixedColor": "red"}),
                        override("suppressed", color={"mode": "fixed", "fixedColor": "text"}),
                        override("pending", color={"mode": "fixed", "fixedColor": "yellow"})]),
        timeseries("Notifications over time", "Alerts created per interval, by state.", BY_STATE, stack=True,
                   bars=True, size=(14, 8)),
        table("Recent alerts", "Every notification in the range, newest first, with its delivery state and "
              "attempts.", RECENT,
              ("created", "endpoint", "kind", "event", "severity", "channel", "recipients", "state", "attempts", "sent",
               "last_error", "subject"), size=(24, 10),
              overrides=[override("state", **state_cells), override("endpoint", links=ENDPOINT_LINK)]),
        table("Alert state now", "Per fingerprint (endpoint + kind): what is open and what was last told.",
              STATE_NOW, ("endpoint", "kind", "status", "since", "consecutive_failures", "consecutive_successes",
                          "last_sent_at", "suppressed_count", "last_error", "fingerprint"), size=(24, 8),
              overrides=[override("endpoint", links=ENDPOINT_LINK)]),
    ]
    return dashboard("upwatch-alerts", "upwatch / Alerts",
                     "Notifications sent, suppressed and failed, and the alerter's current state.", panels,
                     time_from="now-7d")
