"""Email through aiosmtplib: plain text + HTML, STARTTLS/TLS/none, auth, timeouts."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib
from aiosmtplib.email import flatten_message

from alerter.records import Delivery, Notice, Outcome
from upwatch.config.alerting import Alerting

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    host: str | None
    port: int
    sender: str
    tls: str
    timeout_s: float
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None


def options(alerting: Alerting, target: str = "") -> Options:
    """Email options from `alerting.smtp` (already merged with UPWATCH_SMTP_* by the config loader)."""
    smtp = alerting.smtp
    return Options(smtp.host, smtp.port, smtp.sender, smtp.tls, smtp.timeout.total_seconds(),
                   smtp.username, smtp.password, str(smtp.ca_file) if smtp.ca_file else None)


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
        hint = " (does the server expect smtp.tls: tls?)" if options.tls == "none" else ""
        return f"timeout after {options.timeout_s:g} s talking to {where}{hint}", False
    if isinstance(error, aiosmtplib.SMTPConnectError):
        detail = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(error)
        return f"cannot reach SMTP server {where}: {detail}", False
    if isinstance(error, aiosmtplib.SMTPException):
        return f"SMTP error with {where}: {error}", False
    return f"cannot reach SMTP server {where}: {error.strerror if isinstance(error, OSError) and error.strerror else error}", False


def _client(options: Options) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(hostname=options.host, port=options.port, username=options.username,
                           password=options.password, use_tls=options.tls == "tls",
                           start_tls=options.tls == "starttls", cert_bundle=options.ca_file,
                           timeout=options.timeout_s)


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
        return Delivery.failed("no SMTP server: set alerting.smtp.host or UPWATCH_SMTP_HOST", permanent=True)
    if not notice.owed:
        return Delivery.failed("no recipients: set alerting.smtp.recipients, UPWATCH_SMTP_TO or a route",
                               permanent=True)
    client = _client(options)
    try:
        async with client:
            return await _transaction(client, message(notice, options.sender), options, notice.owed)
    except (aiosmtplib.SMTPException, OSError) as e:
        reason, permanent = describe(e, options)
        return Delivery.failed(reason, permanent=permanent)
