"""`alerting:` who is told what, how, and how often.

Threshold rules are parsed here, at config load, so a typo in a rule is a
config error naming the rule instead of a surprise at 3 a.m.
"""

# Pydantic copies mutable defaults (`= []`) for every instance; ruff sees that only for classes
# deriving from BaseModel in the same file, not for Section.

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BeforeValidator,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from alerter.channels.email import Address
from upwatch import durations
from upwatch.config.base import Section, with_problem
from upwatch.config.channels import Channel, Smtp, Webhook, lifetime_errors, reference_errors
from upwatch.durations import Duration, Interval, PositiveDuration

SEVERITIES = ("medium", "high", "critical")
Severity = Literal["medium", "high", "critical"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
class Route(Section):
    """Alerts matching every given criterion go to these channels (and, for email, these recipients)."""

    endpoints: list[str] = []
    tags: list[str] = []
    severities: list[Severity] = []
    kinds: list[Literal["down", "anomaly", "cert", "rule"]] = []
    channels: list[str] = []  # names in alerting.channels
    recipients: list[Address] = []  # instead of the channels' own recipients; sugar for channel "email"
    webhooks: list[str] = []  # sugar: channel "webhook:<name>" for each

    @property
    def named(self) -> list[str]:
        """Every channel the route names, the webhooks sugar included."""
        return list(self.channels) + [f"webhook:{w}" for w in self.webhooks]


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

    days: list[Day] = list(DAYS)
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
    channels: list[Channel] = []
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
    anomaly_resolve_after: PositiveDuration = Field(default="10m", validate_default=True)  # quiet scored time
    cooldown: Interval = Field(default="10m", validate_default=True)
    repeat_interval: Interval = Field(default="4h", validate_default=True)
    send_resolved: bool = True
    group_wait: Duration = Field(default="30s", validate_default=True)
    evaluate_interval: PositiveDuration = Field(default="1s", validate_default=True)
    rule_interval: PositiveDuration = Field(default="15s", validate_default=True)
    grafana_url: str = "http://localhost:3000"
    _merged: bool = PrivateAttr(default=False)  # `channels` holds the sugar's too (an instance is checked again)

    @model_validator(mode="wrap")
    @classmethod
    def _references(cls, data: Any, handler: ModelWrapValidatorHandler[Alerting]) -> Alerting:
        """Duplicate channel names and routes naming unknown channels, checked on the input so they
        are reported together with every other problem of the section."""
        errors = reference_errors(data) if isinstance(data, dict) else []
        try:
            alerting = handler(data)
        except ValidationError as e:
            found = typing.cast(list[InitErrorDetails], e.errors())
            raise ValidationError.from_exception_data(cls.__name__, [*found, *errors]) from None
        if isinstance(data, dict):
            errors += lifetime_errors(data, alerting.repeat_interval, alerting.channels)
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return alerting

    @model_validator(mode="after")
    def _every_channel(self) -> Alerting:
        """`channels` becomes every channel: those from `smtp` and `webhooks` first, then the ones written."""
        if self._merged:
            return self
        sugar = []
        if "smtp" in self.model_fields_set or not self.channels:
            sugar.append(Channel.model_construct(name="email", type="email", options=self.smtp))
        sugar += [Channel.model_construct(name=f"webhook:{w.name}", type="webhook", options=w) for w in self.webhooks]
        # Frozen, but not yet seen by anyone: set once, here (returning a copy is not supported from __init__).
        object.__setattr__(self, "channels", sugar + self.channels)
        self._merged = True
        return self

    def channel(self, name: str) -> Channel | None:
        """The channel called `name`, if it is (still) configured."""
        return next((c for c in self.channels if c.name == name), None)

    def channel_type(self, name: str) -> str:
        channel = self.channel(name)
        return channel.type if channel else ""

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, value: list[Rule]) -> list[Rule]:
        names = [r.name for r in value]
        duplicate = sorted({n for n in names if names.count(n) > 1})
        if duplicate:
            raise ValueError(f"rule names must be unique: {', '.join(map(repr, duplicate))}")
        return value
