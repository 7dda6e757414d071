"""Registered detector models: each module has FEATURES, train(features, settings) and score(model, features)."""

from __future__ import annotations

from types import ModuleType

from detector.models import isolation_forest

MODELS: dict[str, ModuleType] = {"isolation_forest": isolation_forest}
