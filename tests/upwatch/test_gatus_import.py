"""Gatus configurations (our own, one per documented feature) converted and loaded by the real config loader."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import time, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from prober.checks import http
from tests.prober import targets
from upwatch import config
from upwatch.config import Config
from upwatch.importers import gatus

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gatus"
SOURCES = ["endpoints.yaml", "alerting.yaml", "external.yaml", "maintenance.yaml", "sections.yaml", "split"]
ENV = {"SMTP_PASSWORD": "smtp-pw", "SLACK_WEBHOOK_URL": "https://hooks.slack.test/ops", "BACKUP_TOKEN": "backup-tk",
       "DOMAIN": "core.example.test"}


def converted(source: str | Path) -> tuple[gatus.Conversion, str]:
    conversion = gatus.convert(gatus.read(FIXTURES / source))
    return conversion, gatus.render(conversion, str(source))


def loaded(source: str) -> Config:
    return config.parse(converted(source)[1], f"{source}.upwatch.yaml", ENV)


def notes_text(conversion: gatus.Conversion) -> str:
    return "\n".join(["not converted:", *map(str, conversion.skipped), "changed:", *map(str, conversion.changed)])


@pytest.mark.parametrize("source", SOURCES)
def test_conversion_loads_and_lists_exactly_what_it_left_out(source: str) -> None:
    conversion, text = converted(source)
    config.parse(text, f"{source}.upwatch.yaml", ENV)  # raises ConfigError if the output is not a valid config
    expected = (FIXTURES / f"{Path(source).stem}.notes.txt").read_text(encoding="utf-8").strip()
    assert notes_text(conversion) == expected
    for note in conversion.skipped + conversion.changed:  # ... and the file says so too
        assert f"#   {note}\n" in text


def test_http_endpoint_settings_map_to_upwatch_settings() -> None:
    storefront = loaded("endpoints.yaml").endpoint("storefront")
    assert storefront is not None
    shop = storefront.options
    assert (shop.method, shop.headers) == ("POST", {"Accept": "application/json", "X-Trace": "1"})
    # [ENDPOINT_NAME] and [ENDPOINT_GROUP] are known at import; [RANDOM_STRING_8] is not (noted)
    assert storefront.options.body == '{"probe": "storefront", "group": "shop", "nonce": "[RANDOM_STRING_8]"}'
    assert (storefront.interval, storefront.timeout) == (timedelta(minutes=2, seconds=30), timedelta(seconds=3))
    assert (storefront.options.verify_tls, storefront.options.follow_redirects) == (False, False)
    assert storefront.options.expected_status == frozenset(range(100, 600))
    assert [a.text for a in storefront.assertions] == [
        "[STATUS] == 200", "[RESPONSE_TIME] < 500", "[BODY].status == UP", "len([BODY].items) > 0",
        "[CERTIFICATE_EXPIRATION] > 48h", "[BODY].name == pat(shop*)", "[STATUS] == any(200, 204)",
        "has([BODY].errors) == false"]
    assert storefront.tags == ["shop", "team=web"]


def test_names_become_valid_and_unique_and_defaults_follow_gatus() -> None:
    cfg = loaded("endpoints.yaml")
    assert [e.name for e in cfg.endpoints] == ["storefront", "staging-shop-storefront", "GraphQL-users-EU", "redis",
                                               "resolver", "mail-records", "ping", "shell"]
    graphql = cfg.endpoints[2]
    assert graphql.options.json_body == {"query": "{ users { id } }"} and graphql.options.body is None
    assert graphql.interval == timedelta(seconds=1) and graphql.enabled is False
    assert cfg.endpoints[1].interval == timedelta(minutes=1)  # Gatus's default interval, not upwatch's 15s
    redis, resolver = cfg.endpoints[3:5]
    assert (redis.kind, redis.options.host, redis.options.port) == ("tcp", "10.0.0.5", 6379)
    assert (resolver.kind, resolver.options.host, resolver.options.record_type) == ("dns", "example.test", "AAAA")
    assert [a.text for a in resolver.assertions] == ["[BODY] == 2001:db8::1"]
    # the server Gatus asks, and Gatus's verdict: its conditions alone
    assert (resolver.options.nameserver, resolver.options.expected_rcode, resolver.options.require_answer) == (
        "8.8.8.8", "any", False)


def test_alerting_providers_become_smtp_webhooks_and_routes() -> None:
    alerting = loaded("alerting.yaml").alerting
    assert (alerting.smtp.host, alerting.smtp.port, alerting.smtp.tls) == ("mail.example.test", 587, "starttls")
    assert (alerting.smtp.username, alerting.smtp.password) == ("gatus@example.test", "smtp-pw")
    assert alerting.smtp.recipients == ["ops@example.test", "oncall@example.test"]
    assert [(w.name, w.url, w.format) for w in alerting.webhooks] == [
        ("slack", "https://hooks.slack.test/ops", "slack"),
        ("slack-payments", "https://hooks.slack.test/payments", "slack"),
        ("discord", "https://discord.test/api/webhooks/1/abc/slack", "slack"),
        ("custom", "https://hooks.example.test/alert", "generic")]
    assert alerting.webhooks[3].headers == {"X-Source": "gatus"}
    assert [(r.endpoints, r.recipients, r.webhooks) for r in alerting.routes] == [
        (["checkout"], ["payments@example.test"], ["slack-payments"]),  # the payments group's overrides
        (["catalog"], ["oncall@example.test", "ops@example.test"], ["discord", "slack"]),
        (["search"], [], ["custom"])]
    # per-alert in Gatus, one setting in upwatch: the most common value (the others are listed)
    assert (alerting.failure_threshold, alerting.success_threshold, alerting.send_resolved) == (4, 2, True)


def test_external_endpoints_become_push_endpoints() -> None:
    backup, importer, broken = loaded("external.yaml").endpoints
    assert (backup.name, backup.kind, backup.options.period, backup.tags) == (
        "nightly-backup", "push", timedelta(hours=26), ["batch"])
    assert backup.options.auth is not None and backup.options.auth.bearer == "backup-tk"
    assert importer.enabled is False and importer.options.period == timedelta(days=1)
    assert broken.options.period == timedelta(days=1)


def test_maintenance_becomes_weekly_windows() -> None:
    windows = loaded("maintenance.yaml").alerting.maintenance
    shapes = [(w.name, w.weekly and (w.weekly.days, w.weekly.start, w.weekly.end), w.timezone, w.endpoints)
              for w in windows]
    every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    assert shapes == [
        ("maintenance", (["mon", "thu"], time(23, 0), time(1, 0)), "Europe/Amsterdam", []),  # runs past midnight
        ("billing maintenance 1", (every_day, time(7, 30), time(8, 10)), "Europe/Berlin", ["billing"]),
        ("billing maintenance 2", (every_day, time(14, 30), time(15, 30)), "UTC", ["billing"]),
        ("billing maintenance 6", (["sat", "sun"], time(4, 0), time(4, 30)), "UTC", ["billing"])]


def test_anchors_env_references_and_concurrency_convert() -> None:
    cfg = loaded("sections.yaml")
    anchored, override = cfg.endpoints
    assert (anchored.options.url, anchored.tags, anchored.interval) == ("https://core.example.test/health", ["core"],
                                                                timedelta(minutes=5))
    assert (anchored.timeout, anchored.options.verify_tls) == (timedelta(seconds=30), False)
    assert override.options.url == "https://core.example.test/ready" and override.tags == ["edge"]  # $DOMAIN too
    assert [a.text for a in override.assertions] == ["[STATUS] == 200", "[BODY].status == UP"]
    assert cfg.prober.max_concurrency == 10


def test_a_directory_is_merged_as_gatus_merges_it() -> None:
    cfg = loaded("split")
    assert [e.name for e in cfg.endpoints] == ["backend", "frontend"]
    assert cfg.alerting.smtp.tls == "tls" and [w.name for w in cfg.alerting.webhooks] == ["slack"]
    assert [(r.endpoints, r.recipients, r.webhooks) for r in cfg.alerting.routes] == [
        (["backend"], [], ["slack"]), (["frontend"], ["web@example.test"], [])]


def test_a_setting_in_two_files_of_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("alerting: {slack: {webhook-url: 'https://a.test/'}}\n")
    (tmp_path / "b.yaml").write_text("alerting: {slack: {webhook-url: 'https://b.test/'}}\n")
    with pytest.raises(gatus.GatusError) as caught:
        gatus.read(tmp_path)
    assert str(caught.value) == f"{tmp_path / 'b.yaml'}: alerting.slack.webhook-url: is set in more than one file" \
                                " (Gatus refuses that too)"


@pytest.mark.parametrize(("text", "message"), [
    ("endpoints:\n\t- name: a\n", ":2: invalid YAML: found character '\\t' that cannot start any token"),
    ("- just\n- a list\n", ": a Gatus configuration is a mapping (endpoints:, alerting:, ...)"),
], ids=["invalid-yaml", "not-a-mapping"])
def test_an_unreadable_gatus_file_is_reported_with_its_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(gatus.GatusError) as caught:
        gatus.read(path)
    assert str(caught.value) == f"{path}{message}"


def test_content_of_the_wrong_shape_is_listed_not_raised() -> None:
    conversion = gatus.convert({"endpoints": [5, {"name": "x", "url": "https://x.test/", "interval": "1\nm",
                                                  "client": {"timeout": "0", "colour": "red"}},
                                  {"name": "y", "url": "8.8.8.8",
                                   "dns": {"query-name": "a.test", "query-type": "M\nX"}},
                                  {"name": "z", "url": "z.example.test"}, {"name": "w", "url": "tcp://db"}],
                                "alerting": {"slack": "yes", "email": {"host": "h"},
                                             "custom": {"url": "hooks.test/T0/secret"}},
                                "maintenance": "sometimes"})
    text = gatus.render(conversion, "odd.yaml")
    config.parse(text, "odd.yaml", {})
    assert "#   endpoints[2].dns.query-type: M\\nX: upwatch's" in text  # a note stays one comment line
    assert [str(n) for n in conversion.skipped] == [
        "endpoints[0]: an endpoint needs a name; not converted",
        "endpoints[1].interval: '1\\nm' is not a Go duration such as 30s, 5m or 1h30m; upwatch's default 1m (Gatus's)"
        " is used",
        "endpoints[1].client.timeout: 0: a timeout must be more than 0; upwatch's default 10s (Gatus's) is used",
        "endpoints[1].client.colour: not a Gatus client setting",
        "endpoints[2].dns.query-type: M\nX: upwatch's dns check asks for A, AAAA, CNAME, MX, NS, TXT, SOA, SRV,"
        " CAA, PTR; endpoint not converted",
        "endpoints[3].url: no scheme (http://, https://, tcp://, ...); endpoint not converted",
        "endpoints[4].url: a tcp:// URL needs a host and a port; endpoint not converted",
        "alerting.slack: not a mapping; not converted",
        "alerting.email: needs host, from and to (Gatus ignores it too); not converted",
        "alerting.custom.url: not an http(s) URL; not converted",
        "maintenance: not a mapping; not converted"]


async def status(request: web.Request) -> web.Response:
    return web.json_response({"status": "UP"}, status=int(request.match_info["code"]))


@pytest.fixture
async def site() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/status/{code}", status)
    async with targets.serve(app) as url:
        yield url


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    s = http.new_session()
    yield s
    await s.close()


@pytest.mark.parametrize(("code", "conditions", "healthy"), [
    (404, ["[STATUS] == 404"], True),  # Gatus judges by the conditions alone: no status range is implied
    (503, ["[BODY].status == UP"], True),
    (200, ["[STATUS] == 201"], False),
    (500, [], True),
], ids=["404-expected", "503-without-status-condition", "200-not-the-expected-201", "no-conditions"])
async def test_a_converted_endpoint_is_healthy_when_gatus_would_call_it_healthy(
        site: str, session: aiohttp.ClientSession, code: int, conditions: list[Any], healthy: bool) -> None:
    conversion = gatus.convert({"endpoints": [{"name": "t", "url": f"{site}/status/{code}", "conditions": conditions}]})
    (endpoint,) = config.parse(gatus.render(conversion, "t.yaml"), "t.yaml", {}).endpoints
    result = await http.run(endpoint, session)
    assert (result.status_code, result.ok) == (code, healthy)



def test_thresholds_every_alert_agrees_on_are_set_without_a_note() -> None:
    slack = {"webhook-url": "https://hooks.slack.test/x", "default-alert": {"failure-threshold": 5,
                                                                            "minimum-reminder-interval": "1h"}}
    alert = {"type": "slack", "success-threshold": 4, "send-on-resolved": True}
    conversion = gatus.convert({"alerting": {"slack": slack},
                                "endpoints": [{"name": "a", "url": "https://a.test/", "alerts": [alert]},
                                              {"name": "b", "url": "https://b.test/", "alerts": [alert]}]})
    alerting = config.parse(gatus.render(conversion, "t.yaml"), "t.yaml", {}).alerting
    assert (conversion.skipped, conversion.changed) == ([], [])
    assert (alerting.failure_threshold, alerting.success_threshold, alerting.send_resolved,
            alerting.repeat_interval) == (5, 4, True, timedelta(hours=1))
    assert [(r.endpoints, r.recipients, r.webhooks) for r in alerting.routes] == [(["a", "b"], [], ["slack"])]


def test_every_gatus_scheme_but_sctp_becomes_its_kind() -> None:
    source = {"endpoints": [
        {"name": "feed", "url": "wss://feed.example.test/ws", "body": "hello", "headers": {"Origin": "x"},
         "client": {"insecure": True}, "conditions": ["[CONNECTED] == true", "[BODY] == pat(*ok*)"]},
        {"name": "quiet-feed", "url": "ws://feed.example.test/ws"},
        {"name": "rpc", "url": "grpcs://rpc.example.test:443", "conditions": ["[BODY].status == SERVING"]},
        {"name": "game", "url": "udp://game.example.test:27015", "client": {"insecure": True}},
        {"name": "mail", "url": "starttls://mail.example.test:587", "conditions": ["[CERTIFICATE_EXPIRATION] > 48h"]},
        {"name": "ldaps", "url": "tls://ldap.example.test:636"},
        {"name": "gw", "url": "icmp://10.0.0.1"},
        {"name": "bastion", "url": "ssh://bastion.example.test:2222"},
        {"name": "sctp", "url": "sctp://10.0.0.3:38412"},
    ]}
    conversion = gatus.convert(source)
    cfg = config.parse(gatus.render(conversion, "gatus.yaml"), "upwatch.yaml", ENV)
    kinds = {e.name: (e.kind, e.options.target) for e in cfg.endpoints}
    assert kinds == {"feed": ("websocket", "wss://feed.example.test/ws"),
                     "quiet-feed": ("websocket", "ws://feed.example.test/ws"),
                     "rpc": ("grpc", "grpcs://rpc.example.test:443"), "game": ("udp", "game.example.test:27015"),
                     "mail": ("tls", "mail.example.test:587"), "ldaps": ("tls", "ldap.example.test:636"),
                     "gw": ("icmp", "10.0.0.1"), "bastion": ("ssh", "bastion.example.test:2222")}
    feed, quiet, rpc = (cfg.endpoint(n) for n in ("feed", "quiet-feed", "rpc"))
    assert feed is not None and quiet is not None and rpc is not None
    assert (feed.options.send, feed.options.headers, feed.options.verify_tls) == ("hello", {"Origin": "x"}, False)
    assert quiet.options.send == ""  # Gatus sends an empty message and waits for the reply
    assert rpc.options.tls is True and [a.text for a in rpc.assertions] == ["[BODY].status == SERVING"]
    mail = cfg.endpoint("mail")
    assert mail is not None and mail.options.starttls == "smtp"
    notes = list(map(str, conversion.skipped))
    assert "endpoints[3].client: verify_tls: upwatch's udp check has no such setting; not converted" in notes
    assert any(n.startswith("endpoints[8].url: upwatch has no sctp:// check") for n in notes)


def test_providers_apprise_can_send_to_become_apprise_channels() -> None:
    source = {
        "alerting": {
            "telegram": {"token": "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "id": "-100123456",
                         "default-alert": {"failure-threshold": 4}},
            "ntfy": {"url": "https://ntfy.example.test", "topic": "ops", "token": "tk_abcdefghijklmnopqrstuvwxyz012"},
            "pushover": {"application-token": "azGDORePK8gMaC0QOYAMyEEuzJnyUi"},  # no user-key: not converted
        },
        "endpoints": [{"name": "api", "url": "https://api.example.test/", "conditions": ["[STATUS] == 200"],
                       "alerts": [{"type": "telegram"}, {"type": "ntfy"}]}],
    }
    conversion = gatus.convert(source)
    cfg = config.parse(gatus.render(conversion, "gatus.yaml"), "upwatch.yaml", ENV)
    alerting = conversion.config["alerting"]
    assert alerting["channels"] == [
        {"name": "telegram", "type": "apprise", "urls": ["tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-100123456"]},
        {"name": "ntfy", "type": "apprise", "urls": ["ntfys://tk_abcdefghijklmnopqrstuvwxyz012@ntfy.example.test/ops"]}]
    assert alerting["routes"] == [{"endpoints": ["api"], "channels": ["ntfy", "telegram"]}]
    assert {c.name for c in cfg.alerting.channels} >= {"telegram", "ntfy"}
    assert cfg.alerting.failure_threshold == 4
    skipped = list(map(str, conversion.skipped))
    assert "alerting.pushover: needs application-token, user-key; alerts of type pushover are not converted" in skipped


def test_domain_expiration_is_kept_where_the_endpoint_has_a_domain() -> None:
    # Gatus's README, "Monitoring domain expiration", plus endpoints whose host has no domain to look up.
    conversion = gatus.convert({"endpoints": [
        {"name": "check-domain-and-certificate-expiration", "url": "https://example.org", "interval": "1h",
         "conditions": ["[DOMAIN_EXPIRATION] > 720h", "[CERTIFICATE_EXPIRATION] > 240h"]},
        {"name": "by-address", "url": "tcp://192.0.2.7:22",
         "conditions": ["[CONNECTED] == true", "[DOMAIN_EXPIRATION] > 720h"]},
        {"name": "resolver", "url": "1.1.1.1", "dns": {"query-name": "example.org", "query-type": "A"},
         "conditions": ["[DNS_RCODE] == NOERROR", "[DOMAIN_EXPIRATION] > 720h"]}]})
    loaded = config.parse(gatus.render(conversion, "domains.yaml"), "domains.upwatch.yaml", {})
    assert [[a.text for a in e.assertions] for e in loaded.endpoints] == [
        ["[DOMAIN_EXPIRATION] > 720h", "[CERTIFICATE_EXPIRATION] > 240h"], ["[CONNECTED] == true"],
        ["[DNS_RCODE] == NOERROR"]]
    assert [str(n) for n in conversion.skipped] == [
        "endpoints[1].conditions[1]: [DOMAIN_EXPIRATION] needs a host name, and 192.0.2.7 is an IP address",
        "endpoints[2].conditions[1]: [DOMAIN_EXPIRATION] does not apply to kind dns (it has no host name of its own)"]
