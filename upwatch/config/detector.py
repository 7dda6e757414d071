"""`detector:` how series are modelled and scored."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from upwatch.durations import Interval
from upwatch.config.base import Section


class Detector(Section):
    enabled: bool = True
    score_interval: Interval = Field(default="15s", validate_default=True)
    retrain_interval: Interval = Field(default="1h", validate_default=True)
    training_window: Interval = Field(default="7d", validate_default=True)
    min_training_rows: int = Field(default=500, ge=10)
    target_false_alarm_rate: float = Field(default=0.0005, gt=0, lt=0.5)
    model_dir: Path = Path(".upwatch/models")
    max_workers: int = Field(default=2, ge=1)
