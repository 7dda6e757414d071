"""Frozen records that cross package lines."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields, replace
from typing import Any

ERROR_KINDS = ("timeout", "dns", "connect", "tls", "http_status", "assertion", "body_too_large", "redirect_loop",
               "closed", "protocol", "invalid_request", "missing_heartbeat", "skipped")


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One check execution; maps one-to-one onto a probe_results row (plus endpoint, location, prober)."""

    time: dt.datetime
    ok: bool
    latency_ms: float | None = None
    status_code: int | None = None
    dns_ms: float | None = None
    connect_ms: float | None = None
    tls_ms: float | None = None
    ttfb_ms: float | None = None
    transfer_ms: float | None = None
    response_bytes: int | None = None
    final_url: str | None = None
    cert_not_after: dt.datetime | None = None
    error_kind: str | None = None
    error: str | None = None
    assertions: list[dict[str, Any]] | None = None
    source: str = "active"

    @classmethod
    def failed(cls, time: dt.datetime, kind: str, error: str, **fields: Any) -> ProbeResult:
        """A failed result with a typed error kind and a short human message."""
        return cls(time=time, ok=False, error_kind=kind, error=error, **fields)

    def but(self, **changes: Any) -> ProbeResult:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def to_row(self, endpoint_id: int, *, location: str, prober: str) -> dict[str, Any]:
        """The probe_results row for this result."""
        row = {name: getattr(self, name) for name in _FIELDS}  # not asdict(): it deep-copies, and this runs per check
        row.update(endpoint_id=endpoint_id, location=location, prober=prober)
        return row


_FIELDS = tuple(f.name for f in fields(ProbeResult))
