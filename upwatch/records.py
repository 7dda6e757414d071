"""Frozen records that cross package lines, and what a check is run against."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol, TypedDict, TypeVar, Unpack

from upwatch.assertions import Assertion

ERROR_KINDS = ("timeout", "dns", "connect", "tls", "http_status", "assertion", "body_too_large", "redirect_loop",
               "closed", "protocol", "invalid_request", "missing_heartbeat", "skipped", "permission",
               "grpc_status")

OptionsT_co = TypeVar("OptionsT_co", covariant=True)


class Target(Protocol[OptionsT_co]):
    """What a check runs against: an endpoint's common settings and its kind's options.

    upwatch.config's Endpoint is one; checks see only this, so they need not import the config."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def timeout(self) -> dt.timedelta: ...

    @property
    def assertions(self) -> Sequence[Assertion]: ...

    @property
    def options(self) -> OptionsT_co: ...


@dataclass(frozen=True, slots=True)
class AssertionResult:
    """Whether one assertion held against what a check observed, and why not."""

    assertion: str  # its text, as the operator wrote it
    ok: bool
    actual: str
    reason: str | None = None  # set when it failed

    def to_json(self) -> dict[str, Any]:
        """The element of probe_results.assertions: {"assertion", "ok", "actual"} plus "reason" when it failed."""
        out: dict[str, Any] = {"assertion": self.assertion, "ok": self.ok, "actual": self.actual}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


class Measured(TypedDict, total=False):
    """What a check measured, as ProbeResult's constructors take it."""

    latency_ms: float | None
    status_code: int | None
    dns_ms: float | None
    connect_ms: float | None
    tls_ms: float | None
    ttfb_ms: float | None
    transfer_ms: float | None
    response_bytes: int | None
    final_url: str | None
    cert_not_after: dt.datetime | None
    details: Mapping[str, Any] | None
    source: str


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
    # What only this kind measures (DNS rcode and answers, ping loss, TLS version...): a flat JSON
    # object of names to numbers, strings or lists of them; never secrets (Grafana's reader sees it).
    details: Mapping[str, Any] | None = None
    error_kind: str | None = None
    error: str | None = None
    assertions: tuple[AssertionResult, ...] = ()
    source: str = "active"

    @classmethod
    def done(cls, time: dt.datetime, assertions: Sequence[AssertionResult] = (),
             **measured: Unpack[Measured]) -> ProbeResult:
        """A check that got an answer: ok when every assertion held, else failed with error_kind
        "assertion" and the failures ("<assertion>: <reason>; ...") as its error."""
        failures = [a for a in assertions if not a.ok]
        if failures:
            message = "; ".join(f"{a.assertion}: {a.reason}" for a in failures)
            return cls.failed(time, "assertion", message[:500], assertions, **measured)
        return cls(time=time, ok=True, assertions=tuple(assertions), **measured)

    @classmethod
    def failed(cls, time: dt.datetime, kind: str, error: str, assertions: Sequence[AssertionResult] = (),
               **measured: Unpack[Measured]) -> ProbeResult:
        """A failed result with a typed error kind (one of ERROR_KINDS) and a short human message."""
        return cls(time=time, ok=False, error_kind=kind, error=error, assertions=tuple(assertions), **measured)

    def to_row(self, endpoint_id: int, *, location: str, prober: str) -> dict[str, Any]:
        """The probe_results row for this result (assertions as their JSON, NULL when there were none)."""
        row = {name: getattr(self, name) for name in _FIELDS}  # not asdict(): it deep-copies, and this runs per check
        row["assertions"] = [a.to_json() for a in self.assertions] if self.assertions else None
        row["details"] = dict(self.details) if self.details else None
        row.update(endpoint_id=endpoint_id, location=location, prober=prober)
        return row


_FIELDS = tuple(f.name for f in fields(ProbeResult))
