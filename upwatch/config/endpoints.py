"""`endpoints:` what is checked, and `defaults:` applied to every endpoint."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from upwatch import conditions
from upwatch.assertions import Assertion
from upwatch.config.base import Section, with_problem
from upwatch.config.pages import DegradedCondition
from upwatch.durations import Interval, PositiveDuration

KINDS = ("http", "tcp", "dns", "push")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_STATUS_PART = re.compile(r"^\s*([1-5]\d\d)\s*(?:-\s*([1-5]\d\d)\s*)?$")


def parse_status_set(value: Any) -> frozenset[int]:
    """'200-299', '200,204', 200 or [200, '300-399'] -> a set of status codes."""
    if isinstance(value, str | int) and not isinstance(value, bool):
        return _status_set(value)
    return _parse_status_set(value)


@functools.lru_cache(maxsize=256)  # thousands of endpoints share one spelling, and so one frozenset
def _status_set(value: str | int) -> frozenset[int]:
    return _parse_status_set(value)


def _parse_status_set(value: Any) -> frozenset[int]:
    parts: list[Any] = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
    codes: set[int] = set()
    for part in parts:
        for piece in str(part).split(","):
            m = _STATUS_PART.match(piece)
            if not m:
                raise ValueError(f"{piece.strip()!r} is not a status code or range like 200-299")
            low, high = int(m.group(1)), int(m.group(2) or m.group(1))
            if high < low:
                raise ValueError(f"{piece.strip()!r}: range end is below its start")
            codes.update(range(low, high + 1))
    return frozenset(codes)


# Written as a mapping (`status: 200-299`) or a Gatus-style string (`[STATUS] == 200`);
# parsed once here, stored and shown as the text the operator wrote.
AssertionSpec = Annotated[Assertion, PlainValidator(conditions.parse), PlainSerializer(lambda a: a.text, return_type=str)]
RECORD_TYPES = ("A", "AAAA")


class BasicAuth(Section):
    username: str
    password: str = Field(repr=False)


class Auth(Section):
    basic: BasicAuth | None = None
    bearer: str | None = Field(default=None, repr=False)


class Endpoint(Section):
    name: str
    kind: Literal["http", "tcp", "dns", "push"] = "http"
    url: str | None = None
    method: str = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    json_body: Any = Field(default=None, alias="json")
    auth: Auth | None = None
    interval: Interval = Field(default="15s", validate_default=True)
    timeout: PositiveDuration = Field(default="10s", validate_default=True)
    expected_status: frozenset[int] = Field(default="200-399", validate_default=True)
    assertions: list[AssertionSpec] = Field(default_factory=list)
    degraded: list[DegradedCondition] = Field(default_factory=list)  # status pages (docs/pages.md)
    follow_redirects: bool = True
    verify_tls: bool = True
    ca_file: Path | None = None
    max_body_bytes: int = Field(default=1024 * 1024, ge=0)
    # tcp: host + port; dns: host is the name to resolve
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    record_type: str = "A"
    # push (heartbeat) endpoints: a result is expected every period, late after grace
    period: Interval | None = None
    grace: Interval = Field(default="1m", validate_default=True)
    tags: list[str] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} must be 1-100 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}:
            raise ValueError(f"{value!r} is not an HTTP method")
        return upper

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"CA file {str(value)!r} does not exist")
        return value

    @field_validator("record_type")
    @classmethod
    def _record_type(cls, value: str) -> str:
        upper = value.upper()
        if upper not in RECORD_TYPES:
            raise ValueError(f"{value!r} is not supported (use {' or '.join(RECORD_TYPES)})")
        return upper

    @field_validator("expected_status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> frozenset[int]:
        return parse_status_set(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
        # A field check, not part of _kind_fields: those run only once every field is valid, so a
        # URL without a scheme was reported only after every other problem had been fixed.
        if value and info.data.get("kind") == "http":
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{value!r} must be an absolute http:// or https:// URL")
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _kind_fields(cls, data: Any, handler: ModelWrapValidatorHandler[Endpoint]) -> Endpoint:
        """Fields a kind requires. Checked on the input too when other fields are invalid, so that
        every problem is reported at once."""
        try:
            endpoint = handler(data)
        except ValidationError as e:
            raise with_problem(e, data, _kind_problem(data) if isinstance(data, dict) else None) from None
        problem = _kind_problem({"kind": endpoint.kind, "url": endpoint.url, "host": endpoint.host,
                                 "port": endpoint.port, "period": endpoint.period, "body": endpoint.body,
                                 "json": endpoint.json_body})
        if problem is not None:
            raise ValueError(problem)
        return endpoint

    @property
    def target(self) -> str:
        """What the check points at, for display and the endpoints table."""
        if self.kind == "http":
            return self.url or ""
        if self.kind == "tcp":
            return f"{self.host}:{self.port}"
        if self.kind == "dns":
            return f"{self.host} {self.record_type}"
        return "push"


def _kind_problem(data: dict[str, Any]) -> str | None:
    """What `data` (an endpoint's input or its validated fields) lacks for its kind, if anything."""
    kind = data.get("kind", "http")
    if kind == "http":
        if not data.get("url"):
            return "url is required for kind http"
        if data.get("body") is not None and data.get("json") is not None:
            return "set body or json, not both"
    elif kind == "tcp":
        if not data.get("host") or not data.get("port"):
            return "host and port are required for kind tcp"
    elif kind == "dns":
        if not data.get("host"):
            return "host (the name to resolve) is required for kind dns"
    elif kind == "push" and data.get("period") is None:
        return "period is required for kind push (how often a result is expected)"
    return None
