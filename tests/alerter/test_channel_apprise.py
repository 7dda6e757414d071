"""The apprise channel against real receivers on 127.0.0.1 (aiohttp): Apprise's json://, form:// and
ntfy:// plugins deliver title and body, each URL is a recipient (a 500 is retried to that URL only,
through the real outbox), secrets stay out of what is stored, and bad URLs are check-config errors."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from alerting_support import add_endpoint, add_results, alerting, free_port, recipients, rows, wait_for
from psycopg_pool import AsyncConnectionPool

from alerter import evaluate, outbox
from alerter.channels import apprise as channel
from alerter.channels import takes_recipients
from alerter.records import Alert, Notice, Payload
from upwatch import config
from upwatch.config import ConfigError

TOKEN = "tk_s3cretNtfyToken42"
HOOK_SECRET = "T0PS3CRETp4th"


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class Receiver:
    """Keeps every request; answers each path with the next status queued for it (default 200)."""

    base: str = ""
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    statuses: dict[str, list[int]] = field(default_factory=dict)
    delay_s: float = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(Request(request.path, dict(request.headers), await request.read()))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        queued = self.statuses.get(request.path)
        status = queued.pop(0) if queued else 200
        return web.Response(status=status, text="receiver says no" if status >= 300 else "ok")

    def to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", rec.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    rec.port = server.port or 0
    rec.base = f"127.0.0.1:{rec.port}"
    yield rec
    await server.close()


def options(*urls: str, timeout: str = "5s") -> channel.Options:
    return channel.Options.model_validate({"name": "chat", "urls": list(urls), "timeout": timeout})


def notice(opts: channel.Options, event: str = "firing") -> Notice:
    payload = Payload(endpoint="api", severity="critical", event=event, reason="timeout after 10 s")
    alert = Alert(1, "down:api", "down", event, "critical", "chat", opts.recipients, payload, datetime.now(UTC))
    title = "DOWN api: timeout after 10 s" if event == "firing" else "RESOLVED api: up again"
    return Notice(f"[upwatch] {title}", f"{title}\n\nTarget: https://api.example.test\n", "<p>x</p>", (alert,),
                  (title,), opts.recipients, "1.abc")


async def test_json_and_form_urls_deliver_title_and_body(receiver: Receiver) -> None:
    opts = options(f"json://{receiver.base}/json", f"form://{receiver.base}/form")
    sent = notice(opts)
    delivery = await channel.send(sent, opts)
    assert delivery.ok and delivery.error is None
    assert {r: o.state for r, o in delivery.recipients.items()} == {
        f"json://{receiver.base}/…": "sent", f"form://{receiver.base}/…": "sent"}
    [as_json], [as_form] = receiver.to("/json"), receiver.to("/form")
    assert as_json.headers["Content-Type"] == "application/json"
    assert {k: as_json.json()[k] for k in ("title", "message", "type")} == {
        "title": sent.subject, "message": sent.text.strip(), "type": "failure"}
    assert as_form.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert {k: as_form.form()[k] for k in ("title", "message", "type")} == {
        "title": sent.subject, "message": sent.text.strip(), "type": "failure"}


async def test_resolved_notices_are_of_apprise_type_success(receiver: Receiver) -> None:
    opts = options(f"json://{receiver.base}/json")
    assert (await channel.send(notice(opts, "resolved"), opts)).ok
    assert receiver.to("/json")[0].json()["type"] == "success"


async def test_ntfy_url_reaches_a_local_ntfy_server_with_its_token(receiver: Receiver) -> None:
    opts = options(f"ntfy://{receiver.base}/upwatch-alerts?token={TOKEN}")
    sent = notice(opts)
    delivery = await channel.send(sent, opts)
    assert delivery.ok
    [request] = receiver.requests
    assert request.path == "/"  # ntfy's publish-as-JSON endpoint
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.json() == {"topic": "upwatch-alerts", "title": sent.subject, "message": sent.text.strip()}
    assert opts.recipients == (f"ntfy://***@{receiver.base}/upwatch-alerts",)  # stored: no token


async def test_each_url_is_a_recipient_that_routes_cannot_replace() -> None:
    opts = options("json://127.0.0.1:9/a", "json://127.0.0.1:9/b", f"ntfy://127.0.0.1:9/t?token={TOKEN}")
    assert opts.recipients == ("json://127.0.0.1:9/…", "json://127.0.0.1:9/… #2", "ntfy://***@127.0.0.1:9/t")
    assert opts.url("json://127.0.0.1:9/… #2") == "json://127.0.0.1:9/b"
    # Per-recipient outcomes, but not a channel a route's email `recipients` would be given to.
    assert not takes_recipients("apprise")
    assert TOKEN not in repr(opts)


async def test_a_500_is_temporary_and_the_retry_goes_only_to_that_url(
        pool: AsyncConnectionPool, receiver: Receiver) -> None:
    receiver.statuses[f"/flaky/{HOOK_SECRET}"] = [500]
    flaky = f"json://{receiver.base}/flaky/{HOOK_SECRET}"
    cfg = alerting(channels=[{"name": "chat", "type": "apprise", "urls": [f"json://{receiver.base}/ok", flaky]}],
                   routes=[{"channels": ["chat"]}])
    await add_results(pool, await add_endpoint(pool, "api"), "fff")
    await evaluate.run_once(pool, cfg)
    assert await outbox.deliver_next(pool, cfg) == 1
    [alert] = await rows(pool)
    ok, owed = f"json://{receiver.base}/…", f"json://{receiver.base}/… #2"
    assert alert["state"] == "pending" and alert["channel"] == "chat"
    assert alert["recipients"] == [ok, owed]
    assert alert["last_error"] == f"{owed}: Failed to send JSON POST notification: Internal server error.," \
                                  " error=500."
    assert await recipients(pool) == {ok: ("sent", 1), owed: ("pending", 1)}
    await wait_for(lambda: outbox.deliver_next(pool, cfg), timeout_s=10)  # after its backoff
    assert sorted(r.path for r in receiver.requests) == [f"/flaky/{HOOK_SECRET}", f"/flaky/{HOOK_SECRET}", "/ok"]
    [alert] = await rows(pool)
    assert (alert["state"], alert["attempts"], alert["last_error"]) == ("sent", 2, None)
    assert await recipients(pool) == {ok: ("sent", 1), owed: ("sent", 2)}
    assert HOOK_SECRET not in json.dumps(await rows(pool), default=str)


async def test_a_refused_connection_is_temporary_and_names_no_secret() -> None:
    port = free_port()
    opts = options(f"json://user:{HOOK_SECRET}@127.0.0.1:{port}/hook/{HOOK_SECRET}")
    delivery = await channel.send(notice(opts), opts)
    assert not delivery.ok and not delivery.permanent
    [outcome] = delivery.recipients.values()
    assert outcome.state == "pending"
    assert delivery.error == f"json://***@127.0.0.1:{port}/…: A Connection error occurred sending JSON" \
                             " notification to 127.0.0.1."
    assert HOOK_SECRET not in repr(delivery)


async def test_no_answer_in_time_is_uncertain_and_the_event_loop_keeps_running(receiver: Receiver) -> None:
    receiver.delay_s = 3.0
    opts = options(f"json://{receiver.base}/slow", timeout="1s")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    running = asyncio.create_task(ticker())
    try:
        delivery = await channel.send(notice(opts), opts)
    finally:
        running.cancel()
    assert ticks > 0  # a send blocking the loop would let it run not once
    [outcome] = delivery.recipients.values()
    assert (outcome.state, outcome.error) == ("uncertain", "no answer within 1 s: it may have arrived")
    assert not delivery.ok and not delivery.permanent


async def test_a_url_no_longer_configured_fails_for_good() -> None:
    opts = options("json://127.0.0.1:9/a")
    gone = Notice("s", "t", "h", (), (), ("json://old.example.test/…",), "1.x")
    delivery = await channel.send(gone, opts)
    assert not delivery.ok and delivery.permanent
    assert delivery.error == "json://old.example.test/…: no longer one of the channel's urls"


APPRISE_YAML = """\
alerting:
  channels:
    - name: chat
      type: apprise
      urls:
        - ntfy://127.0.0.1:8080/alerts
        - ${{CHAT_URL}}
        - {bad}
"""


@pytest.mark.parametrize(("bad", "message"), [
    ("nonsense", "not an Apprise URL: expected SCHEME://..., such as ntfy://host/topic"
                 " (see https://github.com/caronc/apprise/wiki)"),
    ("foo://127.0.0.1/x", "unknown Apprise service foo:// (see https://github.com/caronc/apprise/wiki for the"
                          " services and their URLs)"),
    ("discord://only-one-part", "not a valid Discord URL (discord://...): see https://appriseit.com/services/discord/"),
], ids=["no-scheme", "unknown-scheme", "invalid-for-its-service"])
def test_an_unusable_url_is_a_config_error_with_file_and_line(bad: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse(APPRISE_YAML.format(bad=bad), "x.yaml", {"CHAT_URL": f"json://127.0.0.1:9/h/{HOOK_SECRET}"})
    assert str(caught.value).splitlines() == [f"x.yaml:8: alerting.channels[0].urls[2]: {message}"]


def test_check_config_reports_a_bad_url_from_the_environment_without_its_secret(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from upwatch import cli

    monkeypatch.chdir(tmp_path)  # no .env from the working tree
    monkeypatch.setenv("CHAT_URL", f"tgram://{HOOK_SECRET}/")
    path = tmp_path / "upwatch.yaml"
    path.write_text(APPRISE_YAML.format(bad="form://127.0.0.1:9/hook").replace("      urls:", "      timeout: 0s\n"
                                                                                            "      urls:"))
    assert cli.main(["--config", str(path), "check-config"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"{path}:5: alerting.channels[0].timeout: '0s' must be at least 1ms",
        f"{path}:8: alerting.channels[0].urls[1]: not a valid Telegram URL (tgram://...):"
        " see https://appriseit.com/services/telegram/"]
    assert HOOK_SECRET not in err


async def test_teams_workflows_get_an_adaptive_card(monkeypatch: pytest.MonkeyPatch) -> None:
    """Apprise's workflows:// (Teams' Power Automate Workflows): the reason upwatch has no msteams type."""
    tls = Path(__file__).parent / "tls"
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls / "cert.pem", tls / "key.pem")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls / "cert.pem"))  # requests verifies against our test CA
    rec = Receiver()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", rec.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=context)
    try:
        opts = options(f"workflows://127.0.0.1:{server.port}/wf1234/{HOOK_SECRET}/")
        sent = notice(opts)
        delivery = await channel.send(sent, opts)
    finally:
        await server.close()
    assert delivery.ok, delivery.error
    [request] = rec.requests
    assert request.path == "/workflows/wf1234/triggers/manual/paths/invoke"
    card = request.json()["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert (card["content"]["type"], card["content"]["version"]) == ("AdaptiveCard", "1.4")
    texts = [b.get("text", "") for b in card["content"]["body"]]
    # Plain text, escaped by Apprise for the card's Markdown (Teams shows "api.example.test").
    assert texts[1:] == [sent.subject, "DOWN api: timeout after 10 s\n\nTarget: https://api\\.example\\.test"]
    assert HOOK_SECRET not in opts.recipients[0]


def test_a_services_own_https_webhook_url_is_taken_as_is() -> None:
    teams = (f"https://prod-161.westeurope.logic.azure.com:443/workflows/643e69f83c89/triggers/manual/paths/invoke"
             f"?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={HOOK_SECRET}")
    opts = options(teams)
    assert opts.recipients == ("workflow://prod-161.westeurope.logic.azure.com:443/6...9/T...h/",)
    assert channel.problem("https://hooks.example.test/x") == (
        "not a webhook URL Apprise knows: write it as json://, form:// or the service's scheme"
        " (see https://github.com/caronc/apprise/wiki)")
