"""Email through aiosmtplib: plain text + HTML, STARTTLS/TLS/none, auth, timeouts, an outcome per recipient."""

from __future__ import annotations

import logging
import re
import ssl
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Annotated, Literal

import aiosmtplib
from aiosmtplib.email import flatten_message
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from alerter.records import Delivery, Notice, Outcome
from upwatch.durations import Interval

logger = logging.getLogger(__name__)

_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$")


def _address(value: str) -> str:
    if not _ADDRESS.match(value):
        raise ValueError(f"{value!r} is not an email address like oncall@example.com")
    return value


Address = Annotated[str, AfterValidator(_address)]


class Options(BaseModel):
    """An email channel; `alerting.smtp` is one of these (the channel named `email`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str | None = None
    port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    sender: Address = "upwatch@localhost"
    recipients: list[Address] = []
    tls: Literal["starttls", "tls", "none"] = "none"
    ca_file: Path | None = None  # CA bundle to verify the server with (default: the system's)
    timeout: Interval = Field(default=timedelta(seconds=10), validate_default=True)

    @property
    def timeout_s(self) -> float:
        return self.timeout.total_seconds()


def message(notice: Notice, sender: str) -> EmailMessage:
    """A multipart/alternative message: plain text first, HTML second.

    Message-ID and Date come from the outbox message, so every retry is the same message to
    a receiving server that drops duplicates by Message-ID."""
    domain = sender.rpartition("@")[2] or "upwatch"
    msg = EmailMessage()
    msg["Subject"] = notice.subject
    msg["From"] = sender
    msg["To"] = ", ".join(notice.recipients)
    created = notice.alerts[0].created_at.timestamp() if notice.alerts else None
    msg["Date"] = formatdate(created, localtime=False, usegmt=True)
    msg["Message-ID"] = f"<upwatch.{notice.message_id}@{domain}>" if notice.message_id else make_msgid(domain=domain)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(notice.text)
    msg.add_alternative(notice.html, subtype="html")
    return msg


def describe(error: Exception, options: Options) -> tuple[str, bool]:
    """A short human reading of an SMTP failure, and whether retrying cannot help.

    Only a mailbox the server says does not exist (5xx on RCPT) is permanent: auth, TLS and
    sender problems are configuration that an operator fixes, after which retries succeed."""
    where = f"{options.host}:{options.port}"
    cause = error.__cause__ if error.__cause__ is not None else error.__context__
    if isinstance(cause, ssl.SSLError) or isinstance(error, ssl.SSLError):
        tls_error = cause if isinstance(cause, ssl.SSLError) else error
        return f"TLS with {where} failed: {getattr(tls_error, 'verify_message', None) or tls_error}", False
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        refused = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in error.recipients)
        return f"recipients refused by {where}: {refused}", all(r.code >= 500 for r in error.recipients)
    if isinstance(error, aiosmtplib.SMTPRecipientRefused):
        return f"recipient refused by {where}: {error.recipient}: {error.code} {error.message}", error.code >= 500
    if isinstance(error, aiosmtplib.SMTPSenderRefused):
        return f"sender {error.sender} refused by {where}: {error.code} {error.message}", False
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        return f"authentication failed at {where}: {error.code} {error.message}", False
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return f"{type(error).__name__} from {where}: {error.code} {error.message}", False
    if isinstance(error, aiosmtplib.SMTPTimeoutError):
        hint = " (does the server expect tls: tls?)" if options.tls == "none" else ""
        return f"timeout after {options.timeout_s:g} s talking to {where}{hint}", False
    if isinstance(error, aiosmtplib.SMTPConnectError):
        detail = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(error)
        return f"cannot reach SMTP server {where}: {detail}", False
    if isinstance(error, aiosmtplib.SMTPException):
        return f"SMTP error with {where}: {error}", False
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return f"cannot reach SMTP server {where}: {reason}", False


def _client(options: Options) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(hostname=options.host, port=options.port, username=options.username,
                           password=options.password, use_tls=options.tls == "tls",
                           start_tls=options.tls == "starttls",
                           cert_bundle=str(options.ca_file) if options.ca_file else None, timeout=options.timeout_s)


def _refused(outcomes: dict[str, Outcome], where: str) -> Delivery:
    """Every recipient refused at RCPT: nothing was sent."""
    detail = "; ".join(f"{rcpt}: {o.error}" for rcpt, o in outcomes.items())
    return Delivery.failed(f"recipients refused by {where}: {detail}",
                           all(o.state == "failed" for o in outcomes.values()), outcomes)


async def _recipients(client: aiosmtplib.SMTP, envelope: tuple[str, ...], encoding: str) -> dict[str, Outcome]:
    """RCPT each address; refused ones get their outcome (5xx permanent, 4xx owed), accepted ones none yet."""
    outcomes: dict[str, Outcome] = {}
    for rcpt in envelope:
        try:
            await client.rcpt(rcpt, encoding=encoding)
        except aiosmtplib.SMTPRecipientRefused as e:
            outcomes[rcpt] = Outcome("failed" if e.code >= 500 else "pending", f"{e.code} {e.message}")
    return outcomes


async def _transaction(client: aiosmtplib.SMTP, msg: EmailMessage, options: Options,
                       envelope: tuple[str, ...]) -> Delivery:
    """One mail transaction with an outcome per recipient. aiosmtplib's sendmail hides which step a
    timeout hit; here a timeout or hang-up after DATA is told apart, because the server may
    already have accepted the message."""
    where = f"{options.host}:{options.port}"
    utf8 = not (options.sender + "".join(envelope)).isascii()
    encoding = "utf-8" if utf8 else "ascii"
    await client.mail(options.sender, options=["SMTPUTF8"] if utf8 else [], encoding=encoding)
    outcomes = await _recipients(client, envelope, encoding)
    accepted = [rcpt for rcpt in envelope if rcpt not in outcomes]
    if not accepted:
        return _refused(outcomes, where)
    try:
        # 7bit always fits: the few non-ASCII characters are encoded rather than relying on 8BITMIME.
        await client.data(flatten_message(msg, utf8=utf8, cte_type="7bit"))
    except aiosmtplib.SMTPDataError as e:
        outcomes |= {rcpt: Outcome("failed" if e.code >= 500 else "pending", f"message refused by {where}: "
                                   f"{e.code} {e.message}") for rcpt in accepted}
        return Delivery.failed(f"message refused by {where}: {e.code} {e.message}", e.code >= 500, outcomes)
    except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected) as e:
        what = (f"no reply within {options.timeout_s:g} s" if isinstance(e, aiosmtplib.SMTPTimeoutError)
                else "connection lost")
        error = f"{what} after sending the message to {where}: it may have been delivered"
        outcomes |= {rcpt: Outcome("uncertain", error) for rcpt in accepted}
        return Delivery.failed(error, False, outcomes)
    refused = "; ".join(f"{rcpt}: {o.error}" for rcpt, o in outcomes.items())
    outcomes |= {rcpt: Outcome("sent") for rcpt in accepted}
    return Delivery.sent(refused or None, outcomes)


async def send(notice: Notice, options: Options) -> Delivery:
    """Deliver by SMTP to `notice.owed`; returns a Delivery with an Outcome per recipient tried, and
    never raises for SMTP or network errors."""
    if not options.host:
        return Delivery.failed("no SMTP server: set the channel's host (alerting.smtp.host or UPWATCH_SMTP_HOST)",
                               permanent=True)
    if not notice.owed:
        return Delivery.failed("no recipients: set the channel's recipients (alerting.smtp.recipients or"
                               " UPWATCH_SMTP_TO) or a route's", permanent=True)
    client = _client(options)
    try:
        async with client:
            return await _transaction(client, message(notice, options.sender), options, notice.owed)
    except (aiosmtplib.SMTPException, OSError) as e:
        reason, permanent = describe(e, options)
        return Delivery.failed(reason, permanent=permanent)
