"""The whole configuration file."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from upwatch.config.alerting import Alerting
from upwatch.config.base import Section
from upwatch.config.detector import Detector
from upwatch.config.endpoints import Endpoint
from upwatch.config.pages import StatusPages
from upwatch.config.prober import Prober
from upwatch.config.push import Push
from upwatch.config.storage import Storage


class Config(Section):
    endpoints: list[Endpoint] = Field(default_factory=list)
    prober: Prober = Prober()
    push: Push = Push()
    detector: Detector = Detector()
    alerting: Alerting = Alerting()
    storage: Storage = Storage()
    status_pages: StatusPages = Field(default_factory=list)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    def endpoint(self, name: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.name == name), None)
