"""Values that cross the alerter's seams: what an alert says (Payload), an outbox row (Alert),
a rendered notice for one channel (Notice) and a channel's outcome (Delivery).

Payload and ResultSummary are stored as JSON (alerts.payload, alert_state.details); `from_json`
reads what any earlier version wrote (unknown keys are ignored, missing ones take defaults), so
rows queued before an upgrade are still delivered after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

JSON = dict[str, Any]


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _compact(values: Mapping[str, Any]) -> JSON:
    """JSON without the unset (None) values, as earlier versions wrote it."""
    return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class ResultSummary:
    """One probe result as an alert shows it under "Last results"."""

    time: datetime | None
    ok: bool
    status_code: int | None = None
    latency_ms: float | None = None
    location: str = ""
    error: str | None = None

    def to_json(self) -> JSON:
        return {"time": self.time.isoformat() if self.time else None, "ok": self.ok,
                "status_code": self.status_code, "latency_ms": self.latency_ms, "location": self.location,
                "error": self.error}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResultSummary:
        return cls(_time(data.get("time")), bool(data.get("ok")), _int(data.get("status_code")),
                   _float(data.get("latency_ms")), str(data.get("location") or ""), _str(data.get("error")))


@dataclass(frozen=True)
class Payload:
    """What one alert says: its subject (endpoint, target, severity, and per kind series/score/incident,
    rule/value or cert_not_after) and, once decided, the event and why."""

    endpoint: str = ""
    severity: str | None = None
    target: str | None = None
    tags: tuple[str, ...] = ()  # the endpoint's tags when decided
    series: str | None = None  # anomaly
    score: float | None = None  # anomaly
    incident: int | None = None  # anomaly
    rule: str | None = None  # rule
    value: float | None = None  # rule: its value when decided
    cert_not_after: datetime | None = None  # cert
    event: str | None = None  # firing, resolved, reminder
    at: datetime | None = None
    since: datetime | None = None
    suppressed: int = 0  # messages the cooldown held back before this one
    reason: str = ""
    cause: str = ""
    last_error: str | None = None  # a recovered DOWN: the failure seen last, when it differs from the cause
    last_results: tuple[ResultSummary, ...] = ()
    folded: tuple[str, ...] = ()  # children whose DOWN was folded into this one

    def to_json(self) -> JSON:
        out: JSON = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("cert_not_after", "at", "since"):
            out[key] = out[key].isoformat() if out[key] is not None else None
        out["last_results"] = [r.to_json() for r in self.last_results]
        out["folded"] = list(self.folded) or None
        out["tags"] = list(self.tags) or None
        return _compact(out)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Payload:
        results = data.get("last_results")
        folded, tags = data.get("folded"), data.get("tags")
        return cls(
            endpoint=str(data.get("endpoint") or ""), severity=_str(data.get("severity")),
            target=_str(data.get("target")), tags=tuple(str(t) for t in tags) if isinstance(tags, list) else (),
            series=_str(data.get("series")), score=_float(data.get("score")),
            incident=_int(data.get("incident")), rule=_str(data.get("rule")), value=_float(data.get("value")),
            cert_not_after=_time(data.get("cert_not_after")), event=_str(data.get("event")),
            at=_time(data.get("at")), since=_time(data.get("since")), suppressed=_int(data.get("suppressed")) or 0,
            reason=str(data.get("reason") or ""), cause=str(data.get("cause") or ""),
            last_error=_str(data.get("last_error")),
            last_results=tuple(ResultSummary.from_json(r) for r in results if isinstance(r, Mapping))
            if isinstance(results, list) else (),
            folded=tuple(str(f) for f in folded) if isinstance(folded, list) else ())


@dataclass(frozen=True)
class Alert:
    """One outbox row: an alert for one channel (and its recipients, for channels that have them)."""

    id: int
    fingerprint: str
    kind: str  # down, anomaly, cert, rule, test
    event: str  # firing, resolved, reminder
    severity: str | None
    channel: str  # the name of a channel in alerting.channels ("email", "webhook:<name>", ...)
    recipients: tuple[str, ...]
    payload: Payload
    created_at: datetime
    attempts: int = 0
    message_id: str | None = None  # set on the first attempt; every retry of the message reuses it


@dataclass(frozen=True)
class Notice:
    """What one channel delivers in one go: one or several grouped alerts, rendered."""

    subject: str
    text: str
    html: str
    alerts: tuple[Alert, ...]
    titles: tuple[str, ...] = ()  # one headline per alert, in the order of `alerts`
    recipients: tuple[str, ...] = ()  # who the message is for (the To header)
    message_id: str = ""  # stable across retries, so receivers can drop a duplicate; "" for a one-off
    envelope: tuple[str, ...] | None = None  # who this attempt goes to: the recipients still owed (None: all)
    links: tuple[str, ...] = ()  # one Grafana dashboard URL per alert, in the order of `alerts` ("": none)

    @property
    def owed(self) -> tuple[str, ...]:
        return self.recipients if self.envelope is None else self.envelope


RecipientState = Literal["pending", "sent", "failed", "uncertain", "unconfirmed"]


@dataclass(frozen=True)
class Outcome:
    """What happened for one recipient in one attempt (see docs/alerter.md, "Delivery guarantees")."""

    state: RecipientState
    error: str | None = None


@dataclass(frozen=True)
class Delivery:
    """A channel's outcome; `permanent` failures are not retried."""

    ok: bool  # accepted for at least one recipient (all of them when `recipients` is empty)
    error: str | None = None
    permanent: bool = False
    recipients: Mapping[str, Outcome] = field(default_factory=dict)  # per recipient, for channels that have them

    @classmethod
    def sent(cls, note: str | None = None, recipients: Mapping[str, Outcome] | None = None) -> Delivery:
        return cls(True, note, False, recipients or {})

    @classmethod
    def failed(cls, error: str, permanent: bool = False,
               recipients: Mapping[str, Outcome] | None = None) -> Delivery:
        return cls(False, error, permanent, recipients or {})
