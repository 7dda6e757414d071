"""The detector's tunables, shaped like the `detector:` section of upwatch.yaml."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _duration(value: Any) -> Any:
    """Accept 15s / 5m / 1h / 7d or a number of seconds, as upwatch.yaml spells durations."""
    if isinstance(value, str) and (m := re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", value)):
        return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2) or "s"])
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class DetectorSettings(BaseModel):
    """Settings the offline backtest and the live service share; defaults are the production defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = "isolation_forest"
    score_interval: Duration = timedelta(seconds=15)
    retrain_interval: Duration = timedelta(hours=1)
    training_window: Duration = timedelta(days=7)
    # A day at 15 s: earlier models have not seen a daily cycle and cried wolf on the benchmark.
    min_training_rows: int = Field(default=5760, ge=10)
    target_false_alarm_rate: float = Field(default=0.0001, gt=0, lt=0.5)
    incident_gap: Duration = timedelta(minutes=2)
    n_estimators: int = Field(default=100, ge=10)
    random_state: int = 0
    model_dir: Path = Path(".upwatch/models")
    max_workers: int = Field(default=2, ge=1)
