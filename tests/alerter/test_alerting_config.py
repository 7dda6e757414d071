"""The `alerting:` section as operators write it (bad files live in tests/fixtures/config/bad-*)."""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path

import pytest

from alerter import routes
from upwatch import config
from upwatch.config import ConfigError
from upwatch.config.alerting import Condition, parse_condition


@pytest.mark.parametrize(("text", "expected"), [
    ("error_rate > 5% over 5m", Condition("error_rate", ">", 0.05, timedelta(minutes=5))),
    ("error_rate >= 0.2 over 1h", Condition("error_rate", ">=", 0.2, timedelta(hours=1))),
    ("p95(latency_ms) > 2000 over 10m", Condition("aggregate", ">", 2000, timedelta(minutes=10), "p95", "latency_ms")),
    ("avg( latency_ms )<100 over 30s", Condition("aggregate", "<", 100, timedelta(seconds=30), "avg", "latency_ms")),
    ("status_code >= 500 count > 10 over 1m",
     Condition("matching", ">", 10, timedelta(minutes=1), None, "status_code", ">=", 500)),
    ("count < 1 over 15m", Condition("count", "<", 1, timedelta(minutes=15))),
], ids=["percent", "fraction", "percentile", "spacing", "matching-count", "no-traffic"])
def test_rule_grammar(text: str, expected: Condition) -> None:
    assert parse_condition(text) == expected


@pytest.mark.parametrize("text", ["error_rate > 5%", "p95(latency_ms) > 5% over 1m", "count > 1 over soon",
                                  "latency_ms > 5 over 1m", "p95(body) > 1 over 1m"])
def test_bad_rules_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"^'"):
        parse_condition(text)


def test_unquoted_weekly_times_are_read_as_clock_times() -> None:
    text = "alerting:\n  maintenance:\n    - weekly: {days: [sun], start: 22:30, end: 01:15}\n"
    [window] = config.parse(text, "x.yaml", {}).alerting.maintenance
    assert window.weekly is not None and (window.weekly.start, window.weekly.end) == (time(22, 30), time(1, 15))


def test_bad_recipient_from_the_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse("{}", "x.yaml", {"UPWATCH_SMTP_TO": "ops@example.test, nobody"})
    assert str(caught.value) == ("$UPWATCH_SMTP_TO: alerting.smtp.recipients[1]: 'nobody' is not an email address "
                                 "like oncall@example.com")


def test_route_naming_an_unknown_webhook_is_an_error() -> None:
    text = "alerting:\n  routes:\n    - tags: [x]\n      webhooks: [slak]\n"
    with pytest.raises(ConfigError) as caught:
        config.parse(text, "x.yaml", {})
    assert str(caught.value) == "x.yaml:4: alerting.routes[0].webhooks[0]: unknown webhook 'slak' (configured: none)"


def test_the_documented_example_is_valid() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "alerter.md").read_text()
    example = doc.split("### Example\n\n```yaml\n", 1)[1].split("```", 1)[0]
    cfg = config.parse(example, "docs/alerter.md", {"SMTP_PASSWORD": "x", "SLACK_WEBHOOK_URL": "https://hooks.example.test/T0"})
    alerting = cfg.alerting
    assert [r.condition.metric for r in alerting.rules] == ["error_rate", "aggregate", "matching"]
    assert alerting.maintenance[0].weekly is not None
    assert routes.targets(alerting, "pay", ["payments"], "down", "critical") == [
        ("oncall", ("payments-oncall@example.com",)), ("ops-slack", ())]
