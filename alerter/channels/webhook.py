"""Webhooks: a JSON POST, either upwatch's generic payload or Slack's `text` shape."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, field_validator

from alerter.records import Delivery, Notice
from upwatch.durations import PositiveDuration

logger = logging.getLogger(__name__)


class Options(BaseModel):
    """A webhook channel; each `alerting.webhooks[]` entry is one of these (the channel `webhook:<name>`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)  # filled in from the channel's name in alerting.channels
    url: str
    format: Literal["generic", "slack"] = "generic"
    timeout: PositiveDuration = Field(default=timedelta(seconds=10), validate_default=True)
    headers: dict[str, str] = Field(default={}, repr=False)  # may carry tokens

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} must be an absolute http:// or https:// URL")
        return value

    @property
    def timeout_s(self) -> float:
        return self.timeout.total_seconds()


def facts(notice: Notice) -> list[dict[str, Any]]:
    """One machine-readable summary per alert: its id, fingerprint, title, kind, event and payload."""
    return [{"id": a.id, "fingerprint": a.fingerprint, "title": title, **a.payload.to_json(), "kind": a.kind,
             "event": a.event} for a, title in zip(notice.alerts, notice.titles, strict=True)]


def payload(notice: Notice, format: str) -> dict[str, Any]:
    """The JSON body for `format` (generic or slack)."""
    if format == "slack":
        return {"text": f"*{notice.subject}*\n```{notice.text.strip()}```"}
    return {"subject": notice.subject, "text": notice.text, "alerts": facts(notice)}


def headers(notice: Notice, options: Options) -> dict[str, str]:
    """The configured headers plus an Idempotency-Key that stays the same on every retry of the
    message, so a receiver can drop a repeat (a timeout does not tell whether it arrived)."""
    key = {"Idempotency-Key": f"upwatch.{notice.message_id}"} if notice.message_id else {}
    return key | options.headers


async def send(notice: Notice, options: Options) -> Delivery:
    """POST the notice; 2xx is success, 4xx (except 408/429) is permanent. Never raises for network errors."""
    timeout = aiohttp.ClientTimeout(total=options.timeout_s)
    try:
        async with (aiohttp.ClientSession(timeout=timeout) as session,
                    session.post(options.url, json=payload(notice, options.format),
                                 headers=headers(notice, options)) as resp):
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
