"""Say why a row is anomalous, in one line an operator can act on, and how bad it is.

Model-independent: a model's `explain` says how far out the row is on each feature
(detector.models); this module names the furthest in the series' own units, from the
context columns detector.features.compute adds to every row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from detector.features import FEATURES

# Severity bands on the calibrated score (0.5 = threshold, 1 = as isolated as a row can be).
SEVERITIES = (("critical", 0.85), ("high", 0.7), ("medium", 0.5))


def severity(score: float) -> str:
    """'critical' > 'high' > 'medium', ordered by score; rows below 0.5 are still 'medium' if claimed."""
    for name, floor in SEVERITIES:
        if score >= floor:
            return name
    return "medium"


def explain(deviations: Mapping[str, float], row: Mapping[str, float], label: str = "value", unit: str = "") -> str:
    """One line naming the most deviating feature (by a model's `explain`) and its usual range,
    e.g. 'latency 870 ms, usually 110–140 ms'; a point reason when the model names no feature."""
    worst = max(deviations, key=lambda n: deviations[n], default=None)
    kind = FEATURES[worst].kind if worst is not None and worst in FEATURES else "value"
    if kind == "run" and math.isfinite(row.get("run_minutes", math.nan)):
        return (
            f"{label} averaged {_fmt(row['run_level'], unit)} over the last {_minutes(row['run_minutes'])}, "
            f"usually {_range(row['level_low'], row['level_high'], unit)} at this time of day"
        )
    if kind in ("level", "run"):
        return (
            f"{label} level {_fmt(row['level'], unit)} over the last {_checks(row)} checks, usually "
            f"{_range(row['level_low'], row['level_high'], unit)} at this time of day"
        )
    if kind == "spread":
        return (
            f"{label} spread {_fmt(row['spread'], unit)} over the last 20 checks, usually "
            f"{_fmt(row['usual_spread'], unit)}"
        )
    return f"{label} {_fmt(row['value'], unit)}, usually {_range(row['usual_low'], row['usual_high'], unit)}"


def _minutes(minutes: float) -> str:
    return f"{minutes / 60:.1f} h" if minutes >= 90 else f"{max(round(minutes), 1)} min"


def _checks(row: Mapping[str, float]) -> int:
    n = row.get("level_checks", 10.0)
    return int(n) if math.isfinite(n) else 10


def _fmt(value: float, unit: str) -> str:
    if not math.isfinite(value):
        return "unknown"
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2 if abs(value) >= 1 else 3
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}".strip()


def _range(low: float, high: float, unit: str) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "unknown"
    return f"{_fmt(low, '')}–{_fmt(high, unit)}"
