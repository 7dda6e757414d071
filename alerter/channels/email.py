"""Email through aiosmtplib: plain text + HTML, STARTTLS/TLS/none, auth, timeouts."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib

from alerter.records import Delivery, Notice
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
    """A multipart/alternative message: plain text first, HTML second."""
    msg = EmailMessage()
    msg["Subject"] = notice.subject
    msg["From"] = sender
    msg["To"] = ", ".join(notice.recipients)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "upwatch")
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


async def send(notice: Notice, options: Options) -> Delivery:
    """Deliver by SMTP; returns a Delivery and never raises for SMTP or network errors."""
    if not options.host:
        return Delivery.failed("no SMTP server: set alerting.smtp.host or UPWATCH_SMTP_HOST", permanent=True)
    if not notice.recipients:
        return Delivery.failed("no recipients: set alerting.smtp.recipients, UPWATCH_SMTP_TO or a route",
                               permanent=True)
    try:
        errors, _ = await aiosmtplib.send(
            message(notice, options.sender), sender=options.sender, recipients=list(notice.recipients),
            hostname=options.host, port=options.port, username=options.username, password=options.password,
            use_tls=options.tls == "tls", start_tls=options.tls == "starttls", cert_bundle=options.ca_file,
            timeout=options.timeout_s)
    except (aiosmtplib.SMTPException, OSError) as e:
        reason, permanent = describe(e, options)
        return Delivery.failed(reason, permanent=permanent)
    if errors:  # some recipients accepted: the message went out, note who did not get it
        return Delivery.sent("; ".join(f"{rcpt}: {r.code} {r.message}" for rcpt, r in errors.items()))
    return Delivery.sent()
