"""Values that cross the alerter's internal seams: an outbox row, a rendered notice, a delivery outcome."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal


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
    message_id: str | None = None  # set on the first attempt; every retry of the message reuses it


@dataclass(frozen=True)
class Notice:
    """What one channel delivers in one go: one or several grouped alerts, rendered."""

    subject: str
    text: str
    html: str
    alerts: tuple[Alert, ...]
    recipients: tuple[str, ...] = ()  # who the message is for (the To header)
    facts: list[dict[str, Any]] = field(default_factory=list)  # one machine-readable summary per alert
    message_id: str = ""  # stable across retries, so receivers can drop a duplicate; "" for a one-off
    envelope: tuple[str, ...] | None = None  # who this attempt goes to: the recipients still owed (None: all)

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
