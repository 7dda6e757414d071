"""The alertmanager channel against a local receiver (aiohttp on 127.0.0.1) that checks every body
against Alertmanager's API v2 spec (postableAlerts, written out below): a firing then resolved pair
through the real outbox, auth, static labels, and which answers are permanent."""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from alerting_support import add_endpoint, add_results, alerting, free_port, rows
from psycopg_pool import AsyncConnectionPool

from alerter import evaluate, outbox
from alerter.channels import alertmanager as channel
from alerter.records import Alert, Notice, Payload, ResultSummary
from upwatch import config
from upwatch.config import ConfigError

PASSWORD = "am-p4ssw0rd-secret"
# api/v2/openapi.yaml: postableAlert = {startsAt, endsAt: date-time, annotations: labelSet} + alert
# {labels: labelSet (required), generatorURL: uri}; labelSet = object of strings.
POSTABLE_KEYS = {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _label_set(value: Any, where: str, names: bool) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: not an object"]
    problems = [f"{where}.{k}: not a string" for k, v in value.items() if not isinstance(v, str)]
    problems += [f"{where}.{k}: empty" for k, v in value.items() if v == ""]
    return problems + [f"{where}: {k!r} is not a label name" for k in value if names and not LABEL_NAME.match(k)]


def _time(value: Any, where: str) -> tuple[list[str], datetime | None]:
    if not isinstance(value, str) or not RFC3339.match(value):
        return [f"{where}: not an RFC 3339 date-time: {value!r}"], None
    return [], datetime.fromisoformat(value.replace("Z", "+00:00"))


def postable_problems(alert: Any, i: int) -> list[str]:
    """What Alertmanager would refuse (or the spec does not allow) in one postableAlert."""
    if not isinstance(alert, dict):
        return [f"[{i}]: not an object"]
    problems = [f"[{i}]: unknown key {k!r}" for k in alert if k not in POSTABLE_KEYS]
    if "labels" not in alert:
        problems.append(f"[{i}].labels: required")
    else:
        problems += _label_set(alert["labels"], f"[{i}].labels", names=True)
        problems += [] if alert["labels"] else [f"[{i}].labels: at least one label is required"]
    if "annotations" in alert:
        problems += _label_set(alert["annotations"], f"[{i}].annotations", names=True)
    times: dict[str, datetime | None] = {}
    for key in ("startsAt", "endsAt"):
        if key in alert:
            found, times[key] = _time(alert[key], f"[{i}].{key}")
            problems += found
    starts, ends = times.get("startsAt"), times.get("endsAt")
    if starts and ends and ends < starts:
        problems.append(f"[{i}]: endsAt before startsAt")
    if "generatorURL" in alert:
        url = urlsplit(str(alert["generatorURL"]))
        problems += [] if url.scheme and url.netloc else [f"[{i}].generatorURL: not an absolute URI"]
    return problems


@dataclass
class FakeAlertmanager:
    """Answers POST /api/v2/alerts like Alertmanager: 400 with the reason for a body outside the spec."""

    url: str = ""
    posts: list[list[dict[str, Any]]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    status: int = 200

    async def alerts(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        if request.content_type != "application/json":
            return web.Response(status=400, text="content type must be application/json")
        body = await request.json()
        if not isinstance(body, list):
            return web.Response(status=400, text="body must be a list of alerts")
        problems = [p for i, a in enumerate(body) for p in postable_problems(a, i)]
        if problems:
            return web.Response(status=400, text="; ".join(problems))
        if self.status >= 300:
            return web.Response(status=self.status, text=f"{self.status}: try later\n")
        self.posts.append(body)
        return web.Response(status=200)


@pytest.fixture
async def am() -> AsyncIterator[FakeAlertmanager]:
    fake = FakeAlertmanager()
    app = web.Application()
    app.router.add_post("/prefix/api/v2/alerts", fake.alerts)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    fake.url = f"http://127.0.0.1:{server.port}/prefix"
    yield fake
    await server.close()


def test_the_receiver_refuses_what_the_spec_does_not_allow() -> None:
    bad = {"labels": {"alertname": "X", "bad-name": "1", "n": 2}, "annotations": {"a": ""}, "status": "firing",
           "startsAt": "2026-12-02 10:00", "endsAt": "2026-12-02T09:00:00Z", "generatorURL": "/relative"}
    assert postable_problems(bad, 0) == [
        "[0]: unknown key 'status'", "[0].labels.n: not a string", "[0].labels: 'bad-name' is not a label name",
        "[0].annotations.a: empty", "[0].startsAt: not an RFC 3339 date-time: '2026-12-02 10:00'",
        "[0].generatorURL: not an absolute URI"]
    assert postable_problems({"annotations": {}}, 1) == ["[1].labels: required"]


def am_channel(url: str, **extra: Any) -> dict[str, Any]:
    return {"name": "am", "type": "alertmanager", "url": url, **extra}


async def test_a_down_endpoint_fires_then_resolves_the_same_alert(pool: AsyncConnectionPool,
                                                                  am: FakeAlertmanager) -> None:
    cfg = alerting(channels=[am_channel(am.url, labels={"team": "payments"}, ends_after="5h")],
                   routes=[{"channels": ["am"]}])
    api = await add_endpoint(pool, "api", tags=("payments", "eu"))
    await add_results(pool, api, "fff", location="eu-1")
    await evaluate.run_once(pool, cfg)
    assert await outbox.deliver_next(pool, cfg) == 1
    await add_results(pool, api, "ss", location="eu-1")
    await evaluate.run_once(pool, cfg)
    assert await outbox.deliver_next(pool, cfg) == 1
    assert [r["state"] for r in await rows(pool)] == ["sent", "sent"]
    [[firing], [resolved]] = am.posts
    expected_labels = {"alertname": "UpwatchEndpointDown", "endpoint": "api", "severity": "critical",
                       "tags": ",eu,payments,", "team": "payments"}
    assert firing["labels"] == resolved["labels"] == expected_labels  # one alert to Alertmanager
    assert firing["startsAt"] == resolved["startsAt"]
    starts, fired_until = (datetime.fromisoformat(firing[k]) for k in ("startsAt", "endsAt"))
    assert fired_until - starts >= timedelta(hours=5)  # posted after it started: ends_after from then
    assert datetime.fromisoformat(resolved["endsAt"]) <= datetime.now(UTC)  # resolved: ended in the past
    assert firing["annotations"] == {
        "summary": "DOWN api: timeout after 10 s", "reason": "timeout after 10 s",
        "target": "https://api.example.test/health", "locations": "eu-1",
        "description": "DOWN api: timeout after 10 s\nReason: timeout after 10 s\nTarget: https://api.example.test/health"}
    assert resolved["annotations"]["summary"].startswith("RESOLVED api: up again")
    assert resolved["annotations"]["cause"] == "timeout after 10 s"
    assert firing["generatorURL"] == "http://grafana.test:3000/d/upwatch-endpoint?var-endpoint=api"


def notice(kind: str = "down", event: str = "firing", **payload: Any) -> Notice:
    p = Payload(**{"endpoint": "api", "severity": "critical", "event": event, "reason": "boom", **payload})
    now = datetime.now(UTC)
    alert = Alert(1, f"{kind}:api", kind, event, p.severity, "am", (), p, now)
    return Notice("[upwatch] x", "x", "<p>x</p>", (alert,), ("title",), (), "1.x")


def options(url: str, **extra: Any) -> channel.Options:
    return channel.Options.model_validate({"name": "am", "url": url, **extra})


async def test_anomalies_carry_their_series_and_leave_the_end_to_alertmanager(am: FakeAlertmanager) -> None:
    sent = notice("anomaly", severity="high", series="api:latency_p95", score=0.91,
                  last_results=(ResultSummary(None, False, location="us-2"), ResultSummary(None, True, location="eu")))
    assert (await channel.send(sent, options(am.url))).ok
    [[alert]] = am.posts
    assert alert["labels"] == {"alertname": "UpwatchEndpointAnomaly", "endpoint": "api", "severity": "high",
                               "series": "api:latency_p95"}
    assert "endsAt" not in alert  # a point event: Alertmanager's resolve_timeout ends it
    assert (alert["annotations"]["score"], alert["annotations"]["locations"]) == ("0.91", "us-2")


@pytest.mark.parametrize(("auth", "header"), [
    ({"username": "upwatch", "password": PASSWORD}, "Basic dXB3YXRjaDphbS1wNHNzdzByZC1zZWNyZXQ="),
    ({"bearer_token": PASSWORD}, f"Bearer {PASSWORD}"),
], ids=["basic", "bearer"])
async def test_credentials_are_sent_and_never_shown(am: FakeAlertmanager, auth: dict[str, str], header: str) -> None:
    opts = options(am.url, **auth)
    assert (await channel.send(notice(), opts)).ok
    assert am.headers[0]["Authorization"] == header
    assert PASSWORD not in repr(opts)


@pytest.mark.parametrize(("status", "permanent"), [(400, True), (401, True), (429, False), (500, False),
                                                    (503, False)], ids=["400", "401", "429", "500", "503"])
async def test_4xx_is_permanent_and_5xx_is_retried(am: FakeAlertmanager, status: int, permanent: bool) -> None:
    am.status = status
    delivery = await channel.send(notice(), options(am.url))
    assert not delivery.ok and delivery.permanent is permanent
    assert delivery.error == f"alertmanager am answered {status}: {status}: try later"


async def test_a_url_without_the_route_prefix_is_a_permanent_404(am: FakeAlertmanager) -> None:
    refused = await channel.send(notice(), options(am.url.removesuffix("/prefix")))
    assert not refused.ok and refused.permanent
    assert refused.error == "alertmanager am answered 404: 404: Not Found"


async def test_a_refused_connection_is_retried_and_names_no_password() -> None:
    port = free_port()
    delivery = await channel.send(notice(), options(f"http://upwatch:{PASSWORD}@127.0.0.1:{port}"))
    assert not delivery.ok and not delivery.permanent
    assert delivery.error is not None and delivery.error.startswith("alertmanager am: ClientConnectorError")
    assert PASSWORD not in delivery.error


AM_YAML = """\
alerting:
  channels:
    - name: am
      type: alertmanager
      url: {url}
      labels:
        {labels}
      bearer_token: ${{AM_TOKEN}}
"""


@pytest.mark.parametrize(("url", "labels", "expected"), [
    ("am:9093", "team: x", ["x.yaml:5: alerting.channels[0].url: must be Alertmanager's http:// or https:// base"
                            " URL, such as http://alertmanager:9093"]),
    ("http://am:9093", "endpoint: x", ["x.yaml:6: alerting.channels[0].labels: label 'endpoint' is set by upwatch"
                                       " (its own: alertname, endpoint, rule, series, severity, tags)"]),
    ("http://am:9093", "team-name: x", ["x.yaml:6: alerting.channels[0].labels: 'team-name' is not a label name:"
                                        " letters, digits and _, not first a digit or __"]),
], ids=["url-without-scheme", "label-upwatch-sets", "bad-label-name"])
def test_bad_options_are_config_errors_with_file_and_line(url: str, labels: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse(AM_YAML.format(url=url, labels=labels), "x.yaml", {"AM_TOKEN": PASSWORD})
    assert str(caught.value).splitlines() == expected


def test_the_token_comes_from_the_environment() -> None:
    cfg = config.parse(AM_YAML.format(url="http://am:9093", labels="team: x"), "x.yaml", {"AM_TOKEN": PASSWORD})
    am = cfg.alerting.channel("am")
    assert am is not None and isinstance(am.options, channel.Options)
    assert (am.options.bearer_token, am.options.endpoint) == (PASSWORD, "http://am:9093/api/v2/alerts")


def test_firing_alerts_must_outlive_the_reminder_interval() -> None:
    text = ("alerting:\n  repeat_interval: 6h\n  channels:\n"
            "    - {name: am, type: alertmanager, url: 'http://am:9093'}\n"
            "    - name: am2\n      type: alertmanager\n      url: http://am:9093\n      ends_after: 2h\n"
            "    - {name: am3, type: alertmanager, url: 'http://am:9093', ends_after: 7h}\n")
    with pytest.raises(ConfigError) as caught:
        config.parse(text, "x.yaml", {})
    why = ("must be longer than alerting.repeat_interval (6h), or Alertmanager resolves alerts that still fire"
           " between reminders")
    assert str(caught.value).splitlines() == [f"x.yaml:4: alerting.channels[0].ends_after: {why}",
                                              f"x.yaml:8: alerting.channels[1].ends_after: {why}"]


async def test_an_https_alertmanager_is_verified_against_ca_file() -> None:
    tls = Path(__file__).parent / "tls"
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls / "cert.pem", tls / "key.pem")
    fake = FakeAlertmanager()
    app = web.Application()
    app.router.add_post("/api/v2/alerts", fake.alerts)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=context)
    try:
        url = f"https://127.0.0.1:{server.port}"
        trusted = await channel.send(notice(), options(url, ca_file=str(tls / "cert.pem")))
        unknown_ca = await channel.send(notice(), options(url))
    finally:
        await server.close()
    assert trusted.ok and len(fake.posts) == 1
    assert not unknown_ca.ok and not unknown_ca.permanent
    assert unknown_ca.error is not None and "certificate verify failed" in unknown_ca.error
