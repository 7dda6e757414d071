"""`alerting:` who is told what, how, and how often."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from upwatch.durations import Duration, Interval
from upwatch.config.base import Section


class Smtp(Section):
    host: str | None = None
    port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    sender: str = "upwatch@localhost"
    recipients: list[str] = []
    tls: Literal["starttls", "tls", "none"] = "none"
    timeout: Interval = Field(default="10s", validate_default=True)


class Alerting(Section):
    enabled: bool = True
    smtp: Smtp = Smtp()
    failure_threshold: int = Field(default=3, ge=1)
    success_threshold: int = Field(default=2, ge=1)
    cooldown: Interval = Field(default="10m", validate_default=True)
    repeat_interval: Interval = Field(default="4h", validate_default=True)
    send_resolved: bool = True
    group_wait: Duration = Field(default="30s", validate_default=True)
    grafana_url: str = "http://localhost:3000"
