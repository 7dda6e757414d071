"""Pure pieces: rendering, routing and maintenance windows."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

import pytest
from alerting_support import alerting

from alerter import render, routes
from alerter.maintenance import Window
from alerter.records import Alert, Payload

T = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # a Monday


def alert(kind: str, event: str, **payload: Any) -> Alert:
    return Alert(1, f"{kind}:x", kind, event, payload.get("severity"), "email", ("a@example.test",),
                 Payload(endpoint="payments-api", **payload), T)


@pytest.mark.parametrize(("a", "subject"), [
    (alert("down", "firing", reason="timeout after 10 s"), "[upwatch] DOWN payments-api: timeout after 10 s"),
    (alert("down", "reminder", reason="timeout after 10 s"), "[upwatch] STILL DOWN payments-api: timeout after 10 s"),
    (alert("down", "resolved", since=T, at=datetime(2026, 11, 23, 12, 3, 20, tzinfo=UTC)),
     "[upwatch] RESOLVED payments-api: up again after 3m20s"),
    (alert("anomaly", "firing", severity="high", reason="latency 870 ms vs usual 120±15 ms", score=0.91),
     "[upwatch] ANOMALY high payments-api: latency 870 ms vs usual 120±15 ms"),
    (alert("cert", "firing", reason="certificate expires in 5 days (2026-11-28)"),
     "[upwatch] CERT payments-api: certificate expires in 5 days (2026-11-28)"),
    (alert("cert", "resolved"), "[upwatch] RESOLVED payments-api: certificate renewed"),
    (alert("rule", "firing", severity="high", rule="api-slow", reason="p95(latency_ms) > 2000 over 10m (now 2300)"),
     "[upwatch] RULE high api-slow: p95(latency_ms) > 2000 over 10m (now 2300)"),
], ids=["down", "reminder", "resolved", "anomaly", "cert", "cert-renewed", "rule"])
def test_subjects(a: Alert, subject: str) -> None:
    assert render.notice([a], "http://g.test").subject == subject


def test_anomaly_body_has_reason_score_and_escaped_html() -> None:
    n = render.notice([alert("anomaly", "firing", severity="high", reason="latency <b>870</b> ms", score=0.914)],
                      "http://g.test/")
    assert "Score: 0.91" in n.text and "Reason: latency <b>870</b> ms" in n.text
    assert "latency &lt;b&gt;870&lt;/b&gt; ms" in n.html
    assert "http://g.test/d/upwatch-endpoint?var-endpoint=payments-api" in n.text


@pytest.mark.parametrize(("a", "shown", "hidden"), [
    (alert("down", "reminder", reason="disk full", cause="no heartbeat"),
     ["Reason: disk full", "Went down with: no heartbeat"], ["Cause:"]),
    (alert("down", "resolved", reason="no heartbeat", cause="no heartbeat", last_error="disk full"),
     ["Cause: no heartbeat", "Last error: disk full"], ["Reason:"]),
    (alert("rule", "resolved", reason="error_rate > 5% over 5m (now 0.5%)",
           cause="error_rate > 5% over 5m (now 12.0%)"),
     ["Cause: error_rate > 5% over 5m (now 12.0%)", "Now: error_rate > 5% over 5m (now 0.5%)"], ["Reason:"]),
    (alert("down", "firing", reason="timeout after 10 s", cause="timeout after 10 s"),
     ["Reason: timeout after 10 s"], ["Cause:", "Went down with"]),
], ids=["reminder-new-error", "resolved-down", "resolved-rule", "firing"])
def test_body_names_reason_and_cause(a: Alert, shown: list[str], hidden: list[str]) -> None:
    lines = render.notice([a], "http://g.test").text.splitlines()
    assert all(line in lines for line in shown), lines
    assert not any(line.startswith(h) for line in lines for h in hidden), lines


def test_routes_match_all_given_criteria_and_fall_back_to_defaults() -> None:
    cfg = alerting(webhooks=[{"name": "w", "url": "http://127.0.0.1:9/"}],
                   routes=[{"tags": ["db"], "severities": ["critical"], "recipients": ["dba@example.test"]}])
    assert routes.targets(cfg, "pg", ["db"], "down", "critical") == [("email", ("dba@example.test",))]
    assert routes.targets(cfg, "pg", ["db"], "anomaly", "high") == [("email", ("oncall@example.test",)),
                                                                    ("webhook:w", ())]


@pytest.mark.parametrize(("now", "active"), [
    (datetime(2026, 11, 23, 21, 59, tzinfo=UTC), False),  # Mon 22:59 Berlin
    (datetime(2026, 11, 23, 22, 0, tzinfo=UTC), True),  # Mon 23:00 Berlin
    (datetime(2026, 11, 24, 0, 59, tzinfo=UTC), True),  # Tue 01:59 Berlin, started Monday
    (datetime(2026, 11, 24, 1, 0, tzinfo=UTC), False),  # Tue 02:00 Berlin
    (datetime(2026, 11, 24, 22, 30, tzinfo=UTC), False),  # Tue 23:30 Berlin: Tuesday not listed
], ids=["before", "start", "past-midnight", "end", "other-day"])
def test_weekly_window_in_its_timezone(now: datetime, active: bool) -> None:
    window = Window("nightly", days=("mon",), start=time(23, 0), end=time(2, 0), timezone="Europe/Berlin")
    assert window.active(now) is active


def test_window_applies_to_named_endpoints_or_tags_or_everything() -> None:
    assert Window("w", endpoints=("api",)).applies("api", ())
    assert not Window("w", endpoints=("api",)).applies("web", ("prod",))
    assert Window("w", tags=("prod",)).applies("web", ("prod",))
    assert Window("w").applies("anything", ())
