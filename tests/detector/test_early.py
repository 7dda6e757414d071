"""The early rule (detector.early): a high fixed bar, raised by the series' own earlier extremes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from detector import early, features

START = pd.Timestamp("2026-03-02T00:00:00Z")


def _bursty(bursts: dict[int, float], n: int = 240, seed: int = 2) -> pd.DataFrame:
    """5-minute rows of a quiet counter (log-normal noise) with one-row bursts of x `factor` at the given rows."""
    rng = np.random.default_rng(seed)
    values = 1000 * np.exp(rng.normal(0, 0.05, n))
    for at, factor in bursts.items():
        values[at] *= factor
    stamps = START + pd.Timedelta(minutes=5) * np.arange(n)
    return features.prepare(pd.DataFrame({"timestamp": stamps, "value": values}))


def test_a_burst_the_series_has_already_shown_is_not_flagged_again() -> None:
    # Network and disk counters burst every few hours: on a one-hour yardstick each burst is far
    # beyond 12 z, so the fixed bar alone flagged every one in a series' first day (NAB's
    # ec2_network_in: 36 rows). The first is news; the same size again (or less) is the series' usual.
    prepared = _bursty({60: 20.0, 120: 10.0, 180: 15.0})
    scores, flagged = early.flags(prepared, two_sided=True)
    assert flagged[60]
    assert not flagged[120] and not flagged[180]
    assert scores[120] < early.THRESHOLD <= scores[60]


def test_a_burst_bigger_than_any_before_is_still_flagged() -> None:
    prepared = _bursty({60: 20.0, 150: 400.0})
    _, flagged = early.flags(prepared, two_sided=True)
    assert flagged[60] and flagged[150]
    assert flagged.sum() == 2


def test_without_earlier_extremes_the_bar_is_the_fixed_one() -> None:
    prepared = _bursty({100: 1.3})
    z = features.compute(prepared, ("robust_z_run3",), pd.Timedelta(minutes=5), True)["robust_z_run3"]
    scores, flagged = early.flags(prepared, two_sided=True)
    assert z.iloc[100] < early.EARLY_Z and not flagged.any()
    assert abs(scores[100] - early.THRESHOLD * z.iloc[100] / early.EARLY_Z) < 1e-9
