"""`alerting:` who is told what, how, and how often.

Threshold rules are parsed here, at config load, so a typo in a rule is a
config error naming the rule instead of a surprise at 3 a.m.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from upwatch import durations
from upwatch.config.base import Section, with_problem
from upwatch.durations import Duration, Interval, PositiveDuration

SEVERITIES = ("medium", "high", "critical")
Severity = Literal["medium", "high", "critical"]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$")


def _address(value: str) -> str:
    if not _ADDRESS.match(value):
        raise ValueError(f"{value!r} is not an email address like oncall@example.com")
    return value


Address = Annotated[str, AfterValidator(_address)]


class Smtp(Section):
    host: str | None = None
    port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    sender: Address = "upwatch@localhost"
    recipients: list[Address] = []
    tls: Literal["starttls", "tls", "none"] = "none"
    ca_file: Path | None = None  # CA bundle to verify the server with (default: the system's)
    timeout: Interval = Field(default="10s", validate_default=True)


class Webhook(Section):
    name: str = Field(min_length=1)
    url: str
    format: Literal["generic", "slack"] = "generic"
    timeout: PositiveDuration = Field(default="10s", validate_default=True)
    headers: dict[str, str] = {}

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} must be an absolute http:// or https:// URL")
        return value


class Route(Section):
    """Alerts matching every given criterion go to these recipients and webhooks."""

    endpoints: list[str] = []
    tags: list[str] = []
    severities: list[Severity] = []
    kinds: list[Literal["down", "anomaly", "cert", "rule"]] = []
    recipients: list[Address] = []
    webhooks: list[str] = []


def _clock(value: object) -> object:
    """YAML 1.1 reads an unquoted 22:30 as the number 1350 (base 60): turn it back into a time."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < 24 * 60:
            raise ValueError(f"{value!r} is not a time of day; write it quoted, like '22:30'")
        return time(*divmod(value, 60))
    return value


Clock = Annotated[time, BeforeValidator(_clock)]


class Weekly(Section):
    """Every `days` from `start` to `end` (an end before the start runs past midnight)."""

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = list(DAYS)  # type: ignore[assignment]
    start: Clock
    end: Clock


class Maintenance(Section):
    """A one-off range (start/end) or a weekly recurring one, in `timezone`."""

    name: str = ""
    start: datetime | None = None
    end: datetime | None = None
    weekly: Weekly | None = None
    timezone: str = "UTC"
    endpoints: list[str] = []
    tags: list[str] = []

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone like UTC or Europe/Berlin") from None
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _shape(cls, data: Any, handler: ModelWrapValidatorHandler[Maintenance]) -> Maintenance:
        try:
            window = handler(data)
        except ValidationError as e:  # the kind of window is known from the input alone
            raise with_problem(e, data, _window_problem(data) if isinstance(data, dict) else None) from None
        problem = _window_problem({"start": window.start, "end": window.end, "weekly": window.weekly})
        if problem is not None:
            raise ValueError(problem)
        return window._check_times()

    def _check_times(self) -> Maintenance:
        """Raise ValueError for a window whose times do not make sense."""
        if self.start is not None and self.end is not None and self.localize(self.end) <= self.localize(self.start):
            raise ValueError("end must be after start")
        if self.weekly is not None and self.weekly.start == self.weekly.end:
            raise ValueError("weekly start and end are equal")
        return self

    def localize(self, moment: datetime) -> datetime:
        """A naive time from the file is read in the window's timezone."""
        return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(self.timezone))


def _window_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with the kind of window `data` (a maintenance window's input or fields) describes."""
    one_off = data.get("start") is not None or data.get("end") is not None
    if one_off and data.get("weekly") is not None:
        return "set start/end or weekly, not both"
    if not one_off and data.get("weekly") is None:
        return "set start and end (a one-off window) or weekly (a recurring one)"
    if one_off and (data.get("start") is None or data.get("end") is None):
        return "a one-off window needs both start and end"
    return None


@dataclass(frozen=True)
class Condition:
    """A parsed threshold rule: `<metric> <op> <value> over <window>`."""

    metric: Literal["error_rate", "count", "aggregate", "matching"]
    op: str
    value: float
    window: timedelta
    aggregate: str | None = None  # avg, min, max, p50, p90, p95, p99
    field: str | None = None  # the aggregated or filtered column
    filter_op: str | None = None
    filter_value: float | None = None


FIELDS = ("latency_ms", "status_code")
_OP = r"(<=|>=|==|!=|<|>)"
_NUM = r"(-?\d+(?:\.\d+)?)"
_RULE = re.compile(
    rf"^\s*(?:(?P<agg>avg|min|max|p50|p90|p95|p99)\(\s*(?P<field>\w+)\s*\)"
    rf"|(?P<ffield>\w+)\s*(?P<fop>{_OP[1:-1]})\s*(?P<fval>{_NUM[1:-1]})\s+count"
    rf"|(?P<metric>error_rate|count))"
    rf"\s*(?P<op>{_OP[1:-1]})\s*(?P<value>{_NUM[1:-1]})(?P<pct>%)?\s+over\s+(?P<window>\S+)\s*$"
)
EXAMPLES = "'error_rate > 5% over 5m', 'p95(latency_ms) > 2000 over 10m', 'status_code >= 500 count > 10 over 1m'"


def parse_condition(text: str) -> Condition:
    """Parse a rule string; raise ValueError naming the rule and showing the grammar."""
    m = _RULE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a rule like {EXAMPLES}")
    field = m.group("field") or m.group("ffield")
    if field is not None and field not in FIELDS:
        raise ValueError(f"{text!r}: unknown field {field!r} (use {' or '.join(FIELDS)})")
    if m.group("pct") and m.group("metric") != "error_rate":
        raise ValueError(f"{text!r}: only error_rate takes a percentage")
    try:
        window = durations.parse(m.group("window"))
    except ValueError as e:
        raise ValueError(f"{text!r}: {e}") from None
    if window < timedelta(seconds=1):
        raise ValueError(f"{text!r}: the window must be at least 1s")
    value = float(m.group("value")) / (100 if m.group("pct") else 1)
    if m.group("agg"):
        return Condition("aggregate", m.group("op"), value, window, m.group("agg"), field)
    if m.group("ffield"):
        return Condition("matching", m.group("op"), value, window, None, field, m.group("fop"), float(m.group("fval")))
    return Condition(m.group("metric"), m.group("op"), value, window)  # type: ignore[arg-type]


class Rule(Section):
    name: str = Field(min_length=1)
    rule: str
    endpoint: str | None = None
    service: str | None = None
    severity: Severity = "high"

    @field_validator("rule")
    @classmethod
    def _rule(cls, value: str) -> str:
        parse_condition(value)
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _subject(cls, data: Any, handler: ModelWrapValidatorHandler[Rule]) -> Rule:
        try:
            rule = handler(data)
        except ValidationError as e:
            raise with_problem(e, data, _subject_problem(data) if isinstance(data, dict) else None) from None
        problem = _subject_problem({"endpoint": rule.endpoint, "service": rule.service})
        if problem is not None:
            raise ValueError(problem)
        return rule

    @property
    def condition(self) -> Condition:
        return parse_condition(self.rule)


def _subject_problem(data: dict[str, Any]) -> str | None:
    if (data.get("endpoint") is None) == (data.get("service") is None):
        return "set endpoint (probe results) or service (pushed request logs), exactly one"
    return None


class Delivery(Section):
    """How the outbox retries: exponential backoff from `backoff` up to `backoff_max`, for `max_age`."""

    poll_interval: PositiveDuration = Field(default="1s", validate_default=True)
    backoff: PositiveDuration = Field(default="10s", validate_default=True)
    backoff_max: PositiveDuration = Field(default="10m", validate_default=True)
    max_age: PositiveDuration = Field(default="24h", validate_default=True)
    batch_size: int = Field(default=200, ge=1)  # most alerts in one grouped message
    # Messages in flight at once. A crash can repeat each in-flight message once, so the
    # default of 1 keeps "at most one duplicate per crash".
    concurrency: int = Field(default=1, ge=1, le=64)


class Alerting(Section):
    enabled: bool = True
    smtp: Smtp = Smtp()
    webhooks: list[Webhook] = []
    routes: list[Route] = []
    maintenance: list[Maintenance] = []
    rules: list[Rule] = []
    delivery: Delivery = Delivery()
    failure_threshold: int = Field(default=3, ge=1)
    success_threshold: int = Field(default=2, ge=1)
    min_locations: int = Field(default=1, ge=1)
    min_severity: Severity = "high"
    cert_expiry_days: int = Field(default=14, ge=0)
    cooldown: Interval = Field(default="10m", validate_default=True)
    repeat_interval: Interval = Field(default="4h", validate_default=True)
    send_resolved: bool = True
    group_wait: Duration = Field(default="30s", validate_default=True)
    evaluate_interval: PositiveDuration = Field(default="1s", validate_default=True)
    rule_interval: PositiveDuration = Field(default="15s", validate_default=True)
    grafana_url: str = "http://localhost:3000"

    @field_validator("webhooks")
    @classmethod
    def _unique_webhooks(cls, value: list[Webhook]) -> list[Webhook]:
        names = [w.name for w in value]
        duplicate = sorted({n for n in names if names.count(n) > 1})
        if duplicate:
            raise ValueError(f"webhook names must be unique: {', '.join(map(repr, duplicate))}")
        return value

    @field_validator("routes")
    @classmethod
    def _known_webhooks(cls, value: list[Route], info: ValidationInfo) -> list[Route]:
        names = [w.name for w in info.data.get("webhooks", [])]
        for i, route in enumerate(value):
            unknown = [w for w in route.webhooks if w not in names]
            if unknown:
                raise ValueError(f"routes[{i}] names unknown webhook {unknown[0]!r}"
                                 f" (configured: {', '.join(map(repr, names)) or 'none'})")
        return value

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, value: list[Rule]) -> list[Rule]:
        names = [r.name for r in value]
        duplicate = sorted({n for n in names if names.count(n) > 1})
        if duplicate:
            raise ValueError(f"rule names must be unique: {', '.join(map(repr, duplicate))}")
        return value
