"""Channels as a typed list: `alerting.channels` entries validated by their type's Options, the
smtp/webhooks sugar, routes naming channels, and a channel type added from outside the package."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import journal_channel
import pytest
from alerting_support import SmtpServer, add_endpoint, add_results, rows, wait_for
from psycopg_pool import AsyncConnectionPool

from alerter import routes, service
from alerter.channels import CHANNELS, email, webhook
from upwatch import config
from upwatch.config import ConfigError
from upwatch.runtime import Runtime

CHANNELS_YAML = """\
alerting:
  smtp:
    host: mail.example.test
    recipients: [oncall@example.test]
  webhooks:
    - {name: ops, url: "https://hooks.example.test/ops"}
  channels:
    - name: team-mail
      type: email
      host: mx.example.test
      port: 587
      tls: starttls
      recipients: [team@example.test]
    - name: chat
      type: webhook
      url: https://chat.example.test/hook
      format: slack
  routes:
    - tags: [team]
      channels: [team-mail, chat]
    - tags: [payments]
      recipients: [payments@example.test]
      webhooks: [ops]
"""


def problems(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config.parse(text, "x.yaml", environ or {})
    return str(caught.value).splitlines()


def test_channels_are_typed_and_the_sugar_becomes_channels_email_and_webhook_name() -> None:
    alerting = config.parse(CHANNELS_YAML, "x.yaml", {}).alerting
    assert [(c.name, c.type) for c in alerting.channels] == [
        ("email", "email"), ("webhook:ops", "webhook"), ("team-mail", "email"), ("chat", "webhook")]
    team, chat = alerting.channel("team-mail"), alerting.channel("chat")
    assert team is not None and isinstance(team.options, email.Options)
    assert (team.options.host, team.options.port, team.options.tls) == ("mx.example.test", 587, "starttls")
    assert team.recipients == ("team@example.test",)
    assert chat is not None and isinstance(chat.options, webhook.Options)
    assert (chat.options.name, chat.options.format) == ("chat", "slack")  # a webhook's messages name its channel
    assert alerting.channel("email") is not None and alerting.channel("email").options is alerting.smtp  # type: ignore[union-attr]


@pytest.mark.parametrize(("tags", "expected"), [
    (["team"], [("chat", ()), ("team-mail", ("team@example.test",))]),
    (["payments"], [("email", ("payments@example.test",)), ("webhook:ops", ())]),
    ([], [("chat", ()), ("email", ("oncall@example.test",)), ("team-mail", ("team@example.test",)),
          ("webhook:ops", ())]),
], ids=["named-channels", "sugar-recipients-and-webhooks", "no-route-every-channel"])
def test_routes_name_channels(tags: list[str], expected: list[tuple[str, tuple[str, ...]]]) -> None:
    alerting = config.parse(CHANNELS_YAML, "x.yaml", {}).alerting
    assert routes.targets(alerting, "api", tags, "down", "critical") == expected


def test_route_recipients_replace_those_of_the_email_channels_it_names() -> None:
    text = CHANNELS_YAML + "    - tags: [dba]\n      channels: [team-mail]\n      recipients: [dba@example.test]\n"
    alerting = config.parse(text, "x.yaml", {}).alerting
    assert routes.targets(alerting, "pg", ["dba"], "down", "critical") == [("team-mail", ("dba@example.test",))]


def test_without_smtp_there_is_no_email_channel_unless_the_environment_sets_one() -> None:
    text = "alerting:\n  channels:\n    - {name: chat, type: webhook, url: 'https://chat.example.test/'}\n"
    assert [c.name for c in config.parse(text, "x.yaml", {}).alerting.channels] == ["chat"]
    alerting = config.parse(text, "x.yaml", {"UPWATCH_SMTP_HOST": "mail.test"}).alerting
    assert [c.name for c in alerting.channels] == ["email", "chat"]
    assert config.parse("{}", "x.yaml", {}).alerting.channel("email") is not None  # today's default stays


@pytest.mark.parametrize(("channel", "expected"), [
    ("{name: x, type: sms}",
     ["x.yaml:3: alerting.channels[0].type: unknown channel type 'sms'"
      f" (types: {', '.join(sorted(CHANNELS))})"]),
    ("{name: x, type: webhook, url: 'https://h.test/', formt: slack}",
     ["x.yaml:3: alerting.channels[0].formt: 'formt' is not an option of channel type webhook"
      " (did you mean 'format'?)"]),
    ("{name: x, type: email, url: 'https://h.test/'}",
     ["x.yaml:3: alerting.channels[0].url: 'url' is not an option of channel type email"]),
    ("{name: x, type: webhook, url: 'ftp://h.test/'}",
     ["x.yaml:3: alerting.channels[0].url: 'ftp://h.test/' must be an absolute http:// or https:// URL"]),
    ("{name: x, type: email, recipients: [nobody]}",
     ["x.yaml:3: alerting.channels[0].recipients[0]: 'nobody' is not an email address like oncall@example.com"]),
    ("{type: webhook, url: 'https://h.test/'}", ["x.yaml:3: alerting.channels[0].name: Field required"]),
    ("{name: x}", ["x.yaml:3: alerting.channels[0].type: Field required"]),
], ids=["unknown-type", "misspelt-option", "other-types-option", "bad-option", "bad-recipient", "no-name", "no-type"])
def test_bad_channels_are_config_errors_with_file_and_line(channel: str, expected: list[str]) -> None:
    assert problems(f"alerting:\n  channels:\n    - {channel}\n") == expected


def test_route_naming_an_unknown_channel_is_an_error_at_its_line() -> None:
    text = CHANNELS_YAML + "    - tags: [x]\n      channels: [chat, chatt]\n"
    assert problems(text) == ["x.yaml:25: alerting.routes[2].channels[1]: unknown channel 'chatt' "
                              "(configured: 'email', 'webhook:ops', 'team-mail', 'chat')"]


@pytest.mark.parametrize(("text", "expected"), [
    ("alerting:\n  channels:\n    - {name: a, type: webhook, url: 'https://h.test/'}\n"
     "    - {name: a, type: email}\n",
     "x.yaml:4: alerting.channels[1].name: channel names must be unique: 'a' is also alerting.channels[0]"),
    ("alerting:\n  smtp: {host: mail.test}\n  channels:\n    - {name: email, type: email}\n",
     "x.yaml:4: alerting.channels[0].name: channel names must be unique: 'email' is also alerting.smtp"),
    ("alerting:\n  webhooks: [{name: ops, url: 'https://h.test/'}]\n  channels:\n"
     "    - {name: 'webhook:ops', type: webhook, url: 'https://h.test/'}\n",
     "x.yaml:4: alerting.channels[0].name: channel names must be unique: 'webhook:ops' is also alerting.webhooks[0]"),
], ids=["two-written", "written-and-smtp", "written-and-webhooks"])
def test_duplicate_channel_names_are_errors(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_reference_problems_are_reported_together_with_the_others() -> None:
    text = ("alerting:\n  channels:\n    - {name: chat, type: webhook, url: 'ftp://h.test/'}\n"
            "    - {name: chat, type: email}\n  routes:\n    - channels: [chatt]\n")
    assert problems(text) == [
        "x.yaml:3: alerting.channels[0].url: 'ftp://h.test/' must be an absolute http:// or https:// URL",
        "x.yaml:4: alerting.channels[1].name: channel names must be unique: 'chat' is also alerting.channels[0]",
        "x.yaml:6: alerting.routes[0].channels[0]: unknown channel 'chatt' (configured: 'chat')"]


def test_route_recipients_need_a_channel_that_has_recipients() -> None:
    text = ("alerting:\n  channels:\n    - {name: chat, type: webhook, url: 'https://h.test/'}\n"
            "  routes:\n    - tags: [x]\n      recipients: [a@example.test]\n")
    assert problems(text) == ["x.yaml:6: alerting.routes[0].recipients: recipients need a channel that has"
                              " recipients: name one in channels, or set alerting.smtp"]


JOURNAL_YAML = """\
alerting:
  group_wait: 0s
  evaluate_interval: 50ms
  delivery: {{poll_interval: 50ms}}
  channels:
    - name: audit
      type: journal
      path: {path}
      label: {label}
  routes:
    - channels: [audit]
"""


async def test_a_channel_type_registered_from_outside_is_validated_and_delivers(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pool: AsyncConnectionPool, database_url: str,
        smtp: SmtpServer) -> None:
    monkeypatch.setitem(CHANNELS, "journal", journal_channel)  # the one line a new type needs
    journal = tmp_path / "alerts.jsonl"
    assert problems(JOURNAL_YAML.format(path=journal, label="''").replace("label:", "lable:")) == [
        "x.yaml:9: alerting.channels[0].lable: 'lable' is not an option of channel type journal"
        " (did you mean 'label'?)"]
    assert problems(JOURNAL_YAML.format(path=journal, label="[a, b]")) == [
        "x.yaml:9: alerting.channels[0].label: Input should be a valid string"]
    cfg = config.parse(JOURNAL_YAML.format(path=journal, label="ops-audit"), "x.yaml", {})
    channel = cfg.alerting.channel("audit")
    assert channel is not None and channel.options == journal_channel.Options(path=journal, label="ops-audit")

    stop = asyncio.Event()
    task = asyncio.create_task(service.run(Runtime(cfg, Path("x.yaml"), database_url, pool), stop))
    try:
        await add_results(pool, await add_endpoint(pool, "api", tags=("payments",)), "fff")
        await wait_for(lambda: journal.exists() and journal.read_text())
        await wait_for(lambda: rows(pool, "state = 'sent'"))
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)
    [line] = [json.loads(x) for x in journal.read_text().splitlines()]
    assert line["label"] == "ops-audit" and line["subject"] == "[upwatch] DOWN api: timeout after 10 s"
    assert line["alerts"][0]["endpoint"] == "api" and line["alerts"][0]["reason"] == "timeout after 10 s"
    assert line["alerts"][0]["tags"] == ["payments"] and line["message_id"]
    [sent] = await rows(pool)
    assert (sent["channel"], sent["state"], sent["attempts"], sent["last_error"]) == ("audit", "sent", 1, None)
    assert not smtp.messages  # the route sends it to the journal only


async def test_a_failing_channel_of_a_new_type_is_recorded_like_any_other(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pool: AsyncConnectionPool) -> None:
    from alerter import evaluate, outbox

    monkeypatch.setitem(CHANNELS, "journal", journal_channel)
    cfg = config.parse(JOURNAL_YAML.format(path=tmp_path / "missing" / "a.jsonl", label="x"), "x.yaml", {})
    await add_results(pool, await add_endpoint(pool, "api"), "fff")
    await evaluate.run_once(pool, cfg.alerting)
    assert await outbox.deliver_next(pool, cfg.alerting) == 1
    [failed] = await rows(pool)
    assert failed["state"] == "failed"  # permanent: not retried
    assert failed["last_error"] == f"journal {tmp_path / 'missing' / 'a.jsonl'}: No such file or directory"


def test_check_config_validates_a_channel_type_registered_from_outside(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from upwatch import cli

    monkeypatch.setitem(CHANNELS, "journal", journal_channel)
    monkeypatch.chdir(tmp_path)  # no .env from the working tree
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(JOURNAL_YAML.format(path=tmp_path / "a.jsonl", label="ops"))
    bad.write_text(JOURNAL_YAML.format(path=tmp_path / "a.jsonl", label="ops").replace("path:", "paht:"))
    assert cli.main(["--config", str(good), "check-config"]) == 0
    capsys.readouterr()
    assert cli.main(["--config", str(bad), "check-config"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"{bad}:6: alerting.channels[0].path: Field required",
        f"{bad}:8: alerting.channels[0].paht: 'paht' is not an option of channel type journal (did you mean 'path'?)"]
