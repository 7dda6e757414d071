"""Values that cross the alerter's internal seams: an outbox row, a rendered notice, a delivery outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Alert:
    """One outbox row. `payload` holds everything render needs."""

    id: int
    fingerprint: str
    kind: str  # down, anomaly, cert, rule, test
    event: str  # firing, resolved, reminder
    severity: str | None
    channel: str  # "email" or "webhook:<name>"
    recipients: tuple[str, ...]
    payload: dict[str, Any]
    created_at: datetime
    attempts: int = 0


@dataclass(frozen=True)
class Notice:
    """What one channel delivers in one go: one or several grouped alerts, rendered."""

    subject: str
    text: str
    html: str
    alerts: tuple[Alert, ...]
    recipients: tuple[str, ...] = ()
    facts: list[dict[str, Any]] = field(default_factory=list)  # one machine-readable summary per alert


@dataclass(frozen=True)
class Delivery:
    """A channel's outcome; `permanent` failures are not retried."""

    ok: bool
    error: str | None = None
    permanent: bool = False

    @classmethod
    def sent(cls, note: str | None = None) -> Delivery:
        return cls(True, note)

    @classmethod
    def failed(cls, error: str, permanent: bool = False) -> Delivery:
        return cls(False, error, permanent)
