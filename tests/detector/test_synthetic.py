"""The shapes generator's heavy texture (#13, seventh session): deterministic per seed, the same
incidents as the plain series, and the normal behaviour it claims (heavy tails, bursts, counts)."""

from __future__ import annotations

import numpy as np
import pytest

from detector import synthetic


@pytest.mark.parametrize("step_s", [60.0, 300.0])
def test_heavy_texture_is_deterministic_per_seed_and_keeps_the_plain_series_incidents(step_s: float) -> None:
    days = 7.0 if step_s == 60.0 else 21.0
    for seed in (1000, 1005):
        one = synthetic.shapes(seed, step_s=step_s, days=days, texture="heavy")
        again = synthetic.shapes(seed, step_s=step_s, days=days, texture="heavy")
        plain = synthetic.shapes(seed, step_s=step_s, days=days)
        assert one.frame.equals(again.frame)
        assert one.incidents == again.incidents == plain.incidents
        assert one.frame["timestamp"].equals(plain.frame["timestamp"])
        assert not one.frame["value"].equals(plain.frame["value"])
        assert one.name != plain.name
    other = synthetic.shapes(1001, step_s=step_s, days=days, texture="heavy")
    assert not other.frame["value"].equals(one.frame["value"])


def test_plain_texture_is_unchanged_by_the_heavy_one() -> None:
    # The plain series must not depend on the texture's generator: the old report-seed figures stay comparable.
    plain = synthetic.shapes(5000)
    assert plain.frame.equals(synthetic.shapes(5000, texture="plain").frame)
    assert plain.name == "shapes-300s-5000"


def test_heavy_texture_has_heavier_tails_and_unlabelled_bursts_outside_incidents() -> None:
    seeds = range(1000, 1012)
    counts = 0
    for seed in seeds:
        plain = synthetic.shapes(seed)
        heavy = synthetic.shapes(seed, texture="heavy")
        outside = np.ones(len(plain.frame), dtype=bool)
        for i in plain.incidents:
            outside &= ~plain.frame["timestamp"].between(i.start, i.end).to_numpy()
        values = heavy.frame["value"].to_numpy()
        if np.all(values == np.round(values)):
            counts += 1
            continue
        # Step-to-step log changes outside incidents: the heavy texture's far tail (beyond 6 robust
        # units) holds more than 1.5 times the rows the plain series' does (1.9x to over 100x on these seeds).
        far, near = _far(values, outside), _far(plain.frame["value"].to_numpy(), outside)
        assert far > 1.5 * max(near, 1), seed
    assert 2 <= counts <= 10  # about half the series are quantised counts


def _far(values: np.ndarray, outside: np.ndarray) -> int:
    d = np.diff(np.log(values))[outside[1:] & outside[:-1]]
    unit = np.subtract(*np.percentile(d, [75, 25])) / 1.349
    return int((np.abs(d - np.median(d)) > 6 * unit).sum())


def test_unknown_texture_is_refused() -> None:
    with pytest.raises(ValueError, match="texture"):
        synthetic.shapes(1000, texture="lumpy")
