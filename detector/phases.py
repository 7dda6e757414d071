"""Which phase of a check made its latency anomalous, against that phase's own baseline.

An endpoint's latency rows carry the check's phase timings (probe_results.dns_ms ...
transfer_ms; NaN where a check kind does not measure one). Training stores each phase's
usual value (median and robust spread of the training rows) in the artifact; a latency
anomaly then names the phase that moved: "TLS handshake 640 ms, usually 20±5 (total
700 ms, usually 80)". Model-independent: a model judges the total, this explains it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

# Column (as series.fetch names it) -> what a person calls it.
PHASES: dict[str, str] = {
    "dns_ms": "DNS lookup",
    "connect_ms": "TCP connect",
    "tls_ms": "TLS handshake",
    "ttfb_ms": "time to first byte",
    "transfer_ms": "transfer",
}
TOTAL = "value"
# A phase needs this many measured training rows for a baseline.
MIN_ROWS = 30
# A phase is named only when it is this many of its robust spreads above its median (its own
# noise, at least FLOOR_MS), carries at least SHARE of the total's rise over its usual value,
# and grew at least RATIO times as much (relatively) as the other phases together: when every
# phase rises alike (a slow client, a loaded host) no single one is to blame.
MIN_Z = 3.0
FLOOR_MS = 1.0
SHARE = 0.5
RATIO = 2.0

Baselines = dict[str, tuple[float, float]]  # column -> (median, robust spread), in ms


def baselines(rows: pd.DataFrame) -> Baselines:
    """Median and robust spread (IQR / 1.349) of the total and of each phase measured in >= MIN_ROWS of `rows`.

    Empty when fewer than two phases are measured: a check with one phase (a TCP connect) has
    nothing to tell apart.
    """
    out: Baselines = {}
    for column in (TOTAL, *PHASES):
        if column not in rows.columns:
            continue
        values = rows[column].to_numpy(dtype="float64")
        values = values[np.isfinite(values)]
        if len(values) >= MIN_ROWS:
            low, mid, high = np.quantile(values, [0.25, 0.5, 0.75])
            out[column] = (float(mid), float(high - low) / 1.349)
    measured = [c for c in out if c in PHASES]
    return out if len(measured) >= 2 and TOTAL in out else {}


def culprit(row: Mapping[str, float], usual: Baselines) -> str | None:
    """The phase column that drove the row's latency up (see MIN_Z, SHARE, RATIO), or None."""
    total = row.get(TOTAL, math.nan)
    if TOTAL not in usual or not math.isfinite(total) or total <= usual[TOTAL][0]:
        return None
    measured = {c: row[c] for c in PHASES if c in usual and math.isfinite(row.get(c, math.nan))}
    if not measured:
        return None
    column = max(measured, key=lambda c: measured[c] - usual[c][0])
    return column if _stands_out(measured[column], usual[column], total, usual[TOTAL][0]) else None


def _stands_out(value: float, phase: tuple[float, float], total: float, usual_total: float) -> bool:
    (median, spread), excess = phase, value - phase[0]
    rest = (total - value) / max(usual_total - median, FLOOR_MS)
    return (excess >= MIN_Z * max(spread, FLOOR_MS) and excess >= SHARE * (total - usual_total)
            and value / max(median, FLOOR_MS) >= RATIO * max(rest, 1.0))


def reason(row: Mapping[str, float], usual: Baselines) -> str | None:
    """'TLS handshake 640 ms, usually 20±5 (total 700 ms, usually 80)', or None when no phase stands out."""
    column = culprit(row, usual)
    if column is None:
        return None
    median, spread = usual[column]
    return (f"{PHASES[column]} {_ms(row[column])} ms, usually {_ms(median)}±{_ms(spread)}"
            f" (total {_ms(row[TOTAL])} ms, usually {_ms(usual[TOTAL][0])})")


def _ms(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:.1f}"
