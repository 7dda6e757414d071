"""Prometheus Alertmanager: each alert is POSTed to its API v2 (`/api/v2/alerts`) as a postableAlert, so
teams that route through Alertmanager keep their routes, silences and inhibitions.

Alertmanager identifies an alert by its labels, so the labels are what stays the same from firing to
resolved: alertname, endpoint, severity, rule or series, tags and the channel's static `labels`.
What changes (reason, locations, score, ...) goes in annotations. Alertmanager expects a client to
keep re-sending a firing alert and resolves one it has not heard of by its `endsAt`; upwatch posts
on firing, on every reminder (`repeat_interval`) and on resolve, so a firing alert's `endsAt` lies
`ends_after` ahead, which must exceed `alerting.repeat_interval`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alerter.records import Alert, Delivery, Notice
from upwatch.durations import PositiveDuration
from upwatch.masking import masking

logger = logging.getLogger(__name__)

PATH = "/api/v2/alerts"
ALERTNAMES = {"down": "UpwatchEndpointDown", "anomaly": "UpwatchEndpointAnomaly", "cert": "UpwatchCertificateExpiry",
              "rule": "UpwatchRule", "test": "UpwatchTest"}
SET_BY_UPWATCH = frozenset({"alertname", "endpoint", "severity", "rule", "series", "tags"})
POINT_EVENTS = frozenset({"anomaly", "test"})  # never resolved by upwatch: Alertmanager's resolve_timeout ends them
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")  # the classic Prometheus label name
_MASKS = masking()


LabelValue = Annotated[str, Field(min_length=1)]  # Alertmanager treats an empty value as no label


class Options(BaseModel):
    """An alertmanager channel: its base URL, static labels, optional basic or bearer auth."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)  # filled in from the channel's name in alerting.channels
    url: str
    labels: dict[str, LabelValue] = {}
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    bearer_token: str | None = Field(default=None, repr=False)
    ca_file: Path | None = None  # CA bundle to verify an https:// Alertmanager with (default: the system's)
    ends_after: PositiveDuration = Field(default=timedelta(hours=5), validate_default=True)
    timeout: PositiveDuration = Field(default=timedelta(seconds=10), validate_default=True)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/?#]+", value):
            raise ValueError("must be Alertmanager's http:// or https:// base URL, such as http://alertmanager:9093")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        # Checked here, not per key: pydantic's location of a key ends in "[key]", which the config
        # loader would take for a secret's name and mask the message.
        for key in value:
            if key in SET_BY_UPWATCH:
                raise ValueError(f"label {key!r} is set by upwatch (its own: {', '.join(sorted(SET_BY_UPWATCH))})")
            if not _LABEL_NAME.match(key) or key.startswith("__"):
                raise ValueError(f"{key!r} is not a label name: letters, digits and _, not first a digit or __")
        return value

    @model_validator(mode="after")
    def _auth(self) -> Options:
        if self.bearer_token and (self.username or self.password):
            raise ValueError("give either username/password (basic auth) or bearer_token, not both")
        if self.password and not self.username:
            raise ValueError("password needs a username")
        return self

    @property
    def endpoint(self) -> str:
        """Where alerts are POSTed: the base URL (with any route prefix) plus /api/v2/alerts."""
        return self.url.rstrip("/").removesuffix(PATH) + PATH


def rfc3339(value: datetime) -> str:
    """A UTC time as Alertmanager parses it (Go's RFC 3339)."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def labels_of(alert: Alert, static: dict[str, str]) -> dict[str, str]:
    """What identifies the alert in Alertmanager; the same on firing, reminders and resolve."""
    p = alert.payload
    tags = f",{','.join(sorted(p.tags))}," if p.tags else ""  # ",db,eu," so tags=~".*,db,.*" matches one
    own = {"alertname": ALERTNAMES.get(alert.kind, f"Upwatch{alert.kind.capitalize()}"), "endpoint": p.endpoint,
           "severity": p.severity or alert.severity or "", "rule": p.rule or "", "series": p.series or "",
           "tags": tags}
    return static | {k: v for k, v in own.items() if v}


def annotations_of(alert: Alert, title: str) -> dict[str, str]:
    """What the alert says now: summary (upwatch's headline), description, and the facts behind it."""
    p = alert.payload
    locations = sorted({r.location for r in p.last_results if not r.ok and r.location})
    facts = {"summary": title, "reason": p.reason, "cause": p.cause if alert.event == "resolved" else "",
             "target": p.target or "", "last_error": p.last_error or "", "locations": ", ".join(locations),
             "score": f"{p.score:.2f}" if p.score is not None else "",
             "value": f"{p.value:g}" if p.value is not None else "",
             "cert_not_after": rfc3339(p.cert_not_after) if p.cert_not_after else ""}
    described = [title] + [f"{k.replace('_', ' ').capitalize()}: {facts[k]}" for k in ("reason", "cause", "target")
                           if facts[k]]
    return {k: v for k, v in facts.items() if v} | {"description": "\n".join(described)}


def postable(alert: Alert, title: str, link: str, options: Options, now: datetime) -> dict[str, Any]:
    """One postableAlert (Alertmanager's OpenAPI spec): labels, annotations, startsAt, endsAt, generatorURL."""
    p = alert.payload
    starts = p.since or p.at or alert.created_at
    out: dict[str, Any] = {"labels": labels_of(alert, options.labels), "annotations": annotations_of(alert, title),
                           "startsAt": rfc3339(starts)}
    if alert.event == "resolved":
        out["endsAt"] = rfc3339(max(p.at or now, starts))
    elif alert.kind not in POINT_EVENTS:
        out["endsAt"] = rfc3339(max(now, starts) + options.ends_after)
    if link:
        out["generatorURL"] = link
    return out


def payload(notice: Notice, options: Options, now: datetime) -> list[dict[str, Any]]:
    """The JSON body: one postableAlert per alert of the notice."""
    titles = notice.titles or tuple(notice.subject for _ in notice.alerts)
    links = notice.links or tuple("" for _ in notice.alerts)
    return [postable(a, t, link, options, now) for a, t, link in zip(notice.alerts, titles, links, strict=True)]


def _headers(options: Options) -> dict[str, str]:
    if options.bearer_token:
        return {"Authorization": f"Bearer {options.bearer_token}"}
    if options.username:
        return {"Authorization": aiohttp.encode_basic_auth(options.username, options.password or "")}
    return {}


async def send(notice: Notice, options: Options) -> Delivery:
    """POST the notice's alerts; 2xx is success, 4xx (except 408/429) is permanent: Alertmanager refused
    the payload or the credentials. Never raises for network errors."""
    timeout = aiohttp.ClientTimeout(total=options.timeout.total_seconds())
    where = f"alertmanager {options.name}"
    try:
        verify = ssl.create_default_context(cafile=str(options.ca_file)) if options.ca_file else True
        async with (aiohttp.ClientSession(timeout=timeout) as session,
                    session.post(options.endpoint, json=payload(notice, options, datetime.now(UTC)),
                                 headers=_headers(options), ssl=verify) as resp):
            if resp.status < 300:
                return Delivery.sent()
            body = " ".join((await resp.text()).split())[:200]
            permanent = 400 <= resp.status < 500 and resp.status not in (408, 429)
            return Delivery.failed(f"{where} answered {resp.status}: {body}", permanent)
    except TimeoutError:
        return Delivery.failed(f"{where}: no answer within {options.timeout.total_seconds():g} s")
    except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as e:
        error = _MASKS.text(f"{type(e).__name__}: {e}") or type(e).__name__
        logger.warning("alertmanager failed name=%s error=%r", options.name, error)
        return Delivery.failed(f"{where}: {error}")
