"""features.Sorted (every count window sorted once) gives pandas' rolling medians and quantiles bit
for bit: NaN gaps, ties, zeros, windows longer than the series, every min_periods the features use."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detector import features

QUANTILES = (0.75, 0.25, 0.1, 0.9, 0.5)


def _values(n: int, kind: str) -> pd.Series:
    rng = np.random.default_rng(n)
    v = rng.lognormal(5.0, 0.4, n)
    if kind == "ties":
        v = np.round(v, -1)
    elif kind == "zeros":  # an error rate: mostly 0
        v = np.where(rng.random(n) < 0.8, 0.0, v / 1000.0)
    elif kind == "gaps" and n:
        v[rng.random(n) < 0.1] = np.nan
        v[0] = np.nan  # as after shift(1)
    return pd.Series(v, index=pd.date_range("2026-01-01", periods=n, freq="15s", tz="UTC"))


@pytest.mark.parametrize("kind", ["plain", "ties", "zeros", "gaps"])
@pytest.mark.parametrize("n", [0, 1, 4, 19, 500, 6000])
@pytest.mark.parametrize(("points", "min_periods"), [(60, 10), (20, 5), (10, 1), (3, 1), (1, 1), (30, 30), (12, 10)])
def test_sorted_windows_are_pandas_rolling(kind: str, n: int, points: int, min_periods: int) -> None:
    y = _values(n, kind)
    windows = features.Sorted(y, points)
    expected = y.rolling(points, min_periods=min_periods)
    pairs = [("median", windows.median(min_periods), expected.median())]
    pairs += [(f"q={q}", windows.quantile(q, min_periods), expected.quantile(q)) for q in QUANTILES]
    for name, mine, theirs in pairs:
        assert mine.index.equals(theirs.index), name
        np.testing.assert_array_equal(mine.to_numpy(), theirs.to_numpy(), err_msg=name)
    if n >= points and kind != "gaps":
        assert np.isfinite(pairs[0][1].to_numpy()[points:]).all()  # the comparison above compared numbers
