"""Webhooks: a JSON POST, either upwatch's generic payload or Slack's `text` shape."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from alerter.records import Delivery, Notice
from upwatch.config.alerting import Alerting

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    name: str
    url: str
    format: str = "generic"
    timeout_s: float = 10.0
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # may carry tokens


def options(alerting: Alerting, target: str) -> Options | None:
    """The configured webhook called `target`, or None if it is no longer configured."""
    for hook in alerting.webhooks:
        if hook.name == target:
            return Options(hook.name, hook.url, hook.format, hook.timeout.total_seconds(), dict(hook.headers))
    return None


def payload(notice: Notice, format: str) -> dict[str, Any]:
    """The JSON body for `format` (generic or slack)."""
    if format == "slack":
        return {"text": f"*{notice.subject}*\n```{notice.text.strip()}```"}
    return {"subject": notice.subject, "text": notice.text, "alerts": notice.facts}


def headers(notice: Notice, options: Options) -> dict[str, str]:
    """The configured headers plus an Idempotency-Key that stays the same on every retry of the
    message, so a receiver can drop a repeat (a timeout does not tell whether it arrived)."""
    key = {"Idempotency-Key": f"upwatch.{notice.message_id}"} if notice.message_id else {}
    return key | options.headers


async def send(notice: Notice, options: Options | None) -> Delivery:
    """POST the notice; 2xx is success, 4xx (except 408/429) is permanent. Never raises for network errors."""
    if options is None:
        return Delivery.failed("webhook is no longer configured", permanent=True)
    timeout = aiohttp.ClientTimeout(total=options.timeout_s)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(options.url, json=payload(notice, options.format),
                                    headers=headers(notice, options)) as resp:
                if resp.status < 300:
                    return Delivery.sent()
                body = (await resp.text())[:200]
                permanent = 400 <= resp.status < 500 and resp.status not in (408, 429)
                return Delivery.failed(f"webhook {options.name} answered {resp.status}: {body}", permanent)
    except TimeoutError:
        return Delivery.failed(f"webhook {options.name}: timeout after {options.timeout_s:g} s")
    except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as e:
        error = scrubbed(str(e), options.url)
        logger.warning("webhook failed name=%s error=%r", options.name, error)
        return Delivery.failed(f"webhook {options.name}: {type(e).__name__}: {error}")


def scrubbed(text: str, url: str) -> str:
    """`text` with `url` cut to its scheme, host and port: aiohttp's errors may quote the request URL,
    and Slack-, Teams- and Discord-style webhook URLs carry their secret in the path."""
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
    secret_part = url[len(f"{parts.scheme}://{parts.netloc}"):]
    text = text.replace(url, f"{origin}/…")
    if parts.netloc != parts.netloc.rsplit("@", 1)[-1]:  # user:password@ as well
        text = text.replace(parts.netloc, parts.netloc.rsplit("@", 1)[-1])
    return text.replace(secret_part, "/…") if len(secret_part) > 1 else text
