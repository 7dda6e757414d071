"""SMTP with STARTTLS and implicit TLS against a real aiosmtpd server using a test certificate
(tests/alerter/tls: self-signed for 127.0.0.1, a test-only key)."""

from __future__ import annotations

import asyncio
import gc
import ssl
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from alerting_support import Mailbox, alerting, free_port

from alerter import render
from alerter.channels import email
from alerter.records import Alert, Payload

TLS = Path(__file__).parent / "tls"


def server_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(TLS / "cert.pem", TLS / "key.pem")
    return ctx


@pytest.fixture(params=["starttls", "tls"])
def tls_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, int, Mailbox]]:
    mailbox, port = Mailbox(), free_port()
    extra: dict[str, Any] = ({"tls_context": server_context(), "require_starttls": True}
                             if request.param == "starttls" else {"ssl_context": server_context()})
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, **extra)
    controller.start()
    try:
        yield request.param, port, mailbox
    finally:
        controller.stop()


async def send_leaky(options: email.Options) -> Any:
    """Send where the TLS handshake fails. That can leave asyncio's raw transport to the garbage
    collector (inside asyncio/aiosmtplib, not upwatch): collect it here, where it is expected,
    rather than let its ResourceWarning land at a random allocation in a later test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        delivery = await email.send(notice(), options)
        for _ in range(3):
            await asyncio.sleep(0)
        gc.collect()
    return delivery


def notice() -> Any:
    alert = Alert(1, "down:api", "down", "firing", "critical", "email", ("oncall@example.test",),
                  Payload(endpoint="api", reason="timeout after 10 s"), datetime.now(UTC))
    return render.notice([alert], "http://g.test")


async def test_encrypted_delivery_with_the_configured_ca(tls_server: tuple[str, int, Mailbox]) -> None:
    mode, port, mailbox = tls_server
    options = alerting(port, smtp={"tls": mode, "ca_file": str(TLS / "cert.pem")}).smtp
    delivery = await email.send(notice(), options)
    assert delivery.ok, delivery.error
    assert [str(m["Subject"]) for m in mailbox.messages] == ["[upwatch] DOWN api: timeout after 10 s"]


async def test_unverifiable_certificate_is_refused_and_retried(tls_server: tuple[str, int, Mailbox]) -> None:
    mode, port, mailbox = tls_server
    delivery = await send_leaky(alerting(port, smtp={"tls": mode}).smtp)
    assert not delivery.ok and not delivery.permanent
    assert delivery.error == f"TLS with 127.0.0.1:{port} failed: self-signed certificate"
    assert mailbox.messages == []


async def test_plain_text_to_a_server_that_requires_starttls_says_so() -> None:
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, tls_context=server_context(),
                            require_starttls=True)
    controller.start()
    try:
        delivery = await send_leaky(alerting(port, smtp={"tls": "none"}).smtp)
    finally:
        controller.stop()
    assert not delivery.ok and not delivery.permanent  # a configuration fix makes the retry succeed
    assert delivery.error == (f"sender upwatch@localhost refused by 127.0.0.1:{port}: "
                              "530 Must issue a STARTTLS command first")
