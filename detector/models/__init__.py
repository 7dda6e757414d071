"""Registered detector models: each module has FEATURES, train(features, settings) and score(model, features)."""

from __future__ import annotations

from types import ModuleType

from detector.models import isolation_forest

MODELS: dict[str, ModuleType] = {"isolation_forest": isolation_forest}
# The model the detector uses; a second model becomes a `detector.model` config key.
MODEL = "isolation_forest"
