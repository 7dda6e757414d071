"""The model contract (see detector.models): its own module so that model modules can import it
while the registry imports them by name, with no import cycle."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pandas as pd


class NotEnoughData(ValueError):
    """Too few usable rows (or too little history) to train; the caller claims nothing for this series yet."""


class Settings(Protocol):
    """What a model may read of the `detector:` config (upwatch.config.detector.Detector has it)."""

    @property
    def min_training_rows(self) -> int: ...

    @property
    def target_false_alarm_rate(self) -> float: ...


class Fitted(Protocol):
    """What every fitted model exposes; the rest is the model's own."""

    @property
    def rows(self) -> int: ...

    @property
    def threshold(self) -> float: ...


class Model(Protocol):
    """A model module (see the module docstring for the contract)."""

    FEATURES: tuple[str, ...]

    def train(self, features: pd.DataFrame, settings: Settings) -> Fitted: ...

    def score(self, model: Any, features: pd.DataFrame) -> pd.Series: ...

    def explain(self, model: Any, row: Mapping[str, float]) -> dict[str, float]: ...

    def versions(self) -> dict[str, str]: ...


MEMBERS = ("FEATURES", "train", "score", "explain", "versions")
