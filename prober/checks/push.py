"""Push (heartbeat) endpoints: not probed. Results arrive through the push API, and the prober's
heartbeat watcher records a failure when none came within period + grace."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator

from prober.checks.base import Auth, CheckOptions
from upwatch.durations import Interval
from upwatch.masking import MASK, Masking


class Options(CheckOptions):
    period: Interval = dt.timedelta(0)  # how often a result is expected; required (see problem)
    grace: Interval = Field(default="1m", validate_default=True)  # late after period + grace
    auth: Auth | None = None  # {bearer: ...}: the token a pushed result must present

    @field_validator("auth")
    @classmethod
    def _bearer_only(cls, auth: Auth | None) -> Auth | None:
        # A pushed result presents a bearer token; a `basic:` here would be checked by nothing and
        # leave the endpoint open to anyone who can reach the push API.
        if auth is not None and auth.basic is not None:
            raise ValueError("a push endpoint takes auth.bearer (the token a pushed result must present), not basic")
        return auth

    @classmethod
    def problem(cls, data: Mapping[str, Any]) -> str | None:
        if data.get("period") is None:
            return "period is required for kind push (how often a result is expected)"
        return None

    @property
    def target(self) -> str:
        return "push"

    def stored(self, masks: Masking) -> dict[str, Any]:
        data = self.model_dump(mode="json", by_alias=True)
        if self.auth is not None:
            data["auth"] = MASK
        return data


run = None  # results are pushed, not probed
