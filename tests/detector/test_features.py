"""Features are causal, defined once, and survive the inputs real series bring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detector import features, synthetic


def _frame(n: int = 3000, seed: int = 3) -> pd.DataFrame:
    return synthetic.generate(seed, days=n * 15 / 86400, incidents_per_day=0).frame


def test_changing_future_rows_does_not_change_past_features() -> None:
    frame = _frame()
    before = features.compute(features.prepare(frame))
    changed = frame.copy()
    changed.loc[2000:, "value"] = changed.loc[2000:, "value"] * 50 + 7
    after = features.compute(features.prepare(changed))
    pd.testing.assert_frame_equal(before.iloc[:2000], after.iloc[:2000])
    assert not before.iloc[2000:].equals(after.iloc[2000:])


def test_features_of_a_prefix_equal_features_of_the_whole() -> None:
    frame = _frame()
    whole = features.compute(features.prepare(frame))
    prefix = features.compute(features.prepare(frame.iloc[:1500]))
    pd.testing.assert_frame_equal(whole.iloc[:1500], prefix)


def test_unsorted_and_duplicated_timestamps_get_the_features_of_sorted_input() -> None:
    frame = _frame(600)
    doubled = pd.concat([frame, frame.iloc[[10, 20]]], ignore_index=True)
    shuffled = doubled.sample(frac=1.0, random_state=1)
    prepared = features.prepare(shuffled)
    assert prepared["timestamp"].is_monotonic_increasing
    out = features.compute(prepared)
    assert sorted(out.index) == sorted(shuffled.index)
    expected = features.compute(features.prepare(doubled))
    # Which copy of a duplicate counts as earlier follows row order; every other row is unaffected.
    others = ~out.index.isin([10, 20, len(frame), len(frame) + 1])
    pd.testing.assert_frame_equal(out[others].sort_index(), expected.loc[out.index[others]].sort_index())


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([120.0] * 400, id="constant"),
        pytest.param([np.nan] * 50 + [100.0 + (i % 7) for i in range(350)], id="leading-nan"),
        pytest.param([100.0, np.inf, -np.inf, np.nan] * 100, id="non-finite"),
        pytest.param([0.0] * 400, id="all-zero"),
    ],
)
def test_awkward_values_give_finite_features_for_finite_rows(values: list[float]) -> None:
    stamps = pd.date_range("2026-01-01", periods=len(values), freq="15s", tz="UTC")
    frame = pd.DataFrame({"timestamp": stamps, "value": values})
    out = features.compute(features.prepare(frame))
    finite = np.isfinite(np.asarray(values))
    model_columns = [n for n in features.FEATURES]
    assert np.isfinite(out.loc[finite, model_columns].to_numpy()).all()
    assert out.loc[~finite, model_columns].isna().all().all()


def test_constant_series_has_no_deviation() -> None:
    stamps = pd.date_range("2026-01-01", periods=500, freq="15s", tz="UTC")
    out = features.compute(features.prepare(pd.DataFrame({"timestamp": stamps, "value": 42.0})))
    assert (out[["robust_z_persist", "level_z_day", "spread_ratio"]].abs() < 1e-9).all().all()


def test_empty_frame_gives_empty_features() -> None:
    out = features.compute(features.prepare(pd.DataFrame({"timestamp": [], "value": []})))
    assert out.empty
    assert set(features.FEATURES) <= set(out.columns)


def test_gap_in_timestamps_uses_yesterday_only_when_it_exists() -> None:
    frame = synthetic.generate(5, days=1.4, incidents_per_day=0).frame
    gapped = frame[(frame["timestamp"] < "2026-03-02T02:00Z") | (frame["timestamp"] > "2026-03-02T06:00Z")]
    window = features.Window(*(features.prepare(gapped)[c] for c in ("timestamp", "value")))
    season = window.season_median
    day_later = season.index >= pd.Timestamp("2026-03-03T03:00Z")
    in_gap = (season.index >= pd.Timestamp("2026-03-03T02:20Z")) & (season.index <= pd.Timestamp("2026-03-03T05:40Z"))
    assert season[day_later & ~in_gap].notna().any()
    assert season[in_gap].isna().all()


def test_unknown_feature_name_is_refused() -> None:
    with pytest.raises(KeyError, match="no_such_feature"):
        features.compute(features.prepare(_frame(50)), ["no_such_feature"])


def test_features_of_new_rows_need_only_the_rows_named_by_needed() -> None:
    frame = synthetic.generate(8, days=1.3).frame
    prepared = features.prepare(frame)
    since = prepared["timestamp"].iloc[-8]
    full = features.compute(prepared)
    keep = features.needed(prepared, since)
    assert keep.sum() < len(prepared) / 2
    trimmed = features.compute(prepared[keep])
    new = prepared.index[prepared["timestamp"] > since]
    pd.testing.assert_frame_equal(trimmed.loc[new], full.loc[new])


def test_a_calm_hour_does_not_make_an_ordinary_row_look_far_out() -> None:
    # #13.4: the z unit is the last hour's IQR floored at its 6 h median (Window.steady_scale). With
    # the IQR alone, 12 calm rows at 5 min made a row one usual noise unit off score about 10.
    from detector.features import compute, prepare

    rng = np.random.default_rng(3)
    step = pd.Timedelta(minutes=5)
    noise = np.r_[rng.normal(0, 0.1, 96), rng.normal(0, 0.005, 12), [0.1, np.log(3.0)]]
    stamps = pd.Timestamp("2026-03-02T00:00:00Z") + step * np.arange(len(noise))
    frame = prepare(pd.DataFrame({"timestamp": stamps, "value": 100 * np.exp(noise)}))
    z = compute(frame, ("robust_z_persist",), step, two_sided=True)["robust_z_persist"].to_numpy()
    assert z[-2] < 3  # one usual noise unit after a calm hour
    assert z[-1] > 8  # a 3x spike still far out


def _five_minute(level: np.ndarray, seed: int = 5, noise: float = 0.05) -> pd.DataFrame:
    """Two days of flat 5-minute rows with i.i.d. multiplicative noise of `noise`, then `level` (log units)."""
    rng = np.random.default_rng(seed)
    log = np.r_[np.zeros(2 * 288), level] + rng.normal(0.0, noise, 2 * 288 + len(level))
    stamps = pd.Timestamp("2026-03-02T00:00:00Z") + pd.Timedelta(minutes=5) * np.arange(len(log))
    return features.prepare(pd.DataFrame({"timestamp": stamps, "value": 100 * np.exp(log)}))


def _accumulated(frame: pd.DataFrame, two_sided: bool = True) -> np.ndarray:
    out = features.compute(frame, ("level_cusum",), pd.Timedelta(minutes=5), two_sided)
    return np.asarray(out["level_cusum"].to_numpy())


def test_a_lasting_small_shift_accumulates_row_by_row() -> None:
    # Two noise units for two hours: about one unit per row past the slack, so ~24 after 24 rows,
    # while no single row is far out; a run longer than the span counts only its last 2 h.
    shift = 2 * 0.05
    frame = _five_minute(np.full(36, shift))
    cusum = _accumulated(frame)
    start = 2 * 288
    assert cusum[:start].max() < 5
    assert cusum[start + 5] < cusum[start + 11] < cusum[start + 23]
    assert cusum[start + 23] > 12
    down = _accumulated(_five_minute(np.full(36, -shift)), two_sided=False)
    assert down[start + 23] <= 0  # latency below usual is not an incident


def test_one_far_row_adds_no_more_than_the_cap() -> None:
    frame = _five_minute(np.r_[np.zeros(10), [np.log(10.0)], np.zeros(10)])
    spike = 2 * 288 + 10
    cusum = _accumulated(frame)
    z = features.compute(frame, ("robust_z_persist",), pd.Timedelta(minutes=5), True)["robust_z_persist"]
    assert z.iloc[spike] > 20
    assert cusum[spike] < 10  # the cap (6 noise units) less the slack, in a run of at least 30 min: 0; uncapped, 33


def test_the_accumulated_level_stops_once_its_baselines_take_a_new_level_in() -> None:
    # A shift that stays: the 6 h median moves to it in a little over 3 h, and rows at the new level
    # stop counting against it, although same time yesterday is still the old level.
    frame = _five_minute(np.full(8 * 12, 5 * 0.05))
    start = 2 * 288
    cusum = _accumulated(frame)
    assert cusum[start + 11] > 30
    assert (cusum[start + 6 * 12:] < 1).all()


def test_a_burst_of_a_few_checks_is_not_accumulated() -> None:
    # Four 10x checks at 15 s: the point features' to judge. Counted in runs shorter than 30 min they
    # kept the accumulated level up for 5 min after them (4 x 5 units, less one per check).
    rng = np.random.default_rng(2)
    n = 5760 + 30
    log = rng.normal(0.0, 0.05, n)
    log[5760:5764] += np.log(10.0)
    stamps = pd.Timestamp("2026-03-02T00:00:00Z") + pd.Timedelta(seconds=15) * np.arange(n)
    frame = features.prepare(pd.DataFrame({"timestamp": stamps, "value": 100 * np.exp(log)}))
    cusum = features.compute(frame, ("level_cusum",), pd.Timedelta(seconds=15), True)["level_cusum"].to_numpy()
    assert (cusum[5760:] < 1).all()


def test_the_reason_for_an_accumulated_level_says_how_long_and_how_high() -> None:
    from detector import reasons

    frame = _five_minute(np.full(12, 3 * 0.05))  # 3 noise units above 100 for an hour
    row = features.compute(frame, ("level_cusum",), pd.Timedelta(minutes=5), True).iloc[-1].to_dict()
    text = reasons.explain({"level_cusum": 1.0}, row, "latency", "ms")
    assert text.startswith("latency averaged ") and text.endswith(" ms at this time of day")
    level = float(text.removeprefix("latency averaged ").split(" ms")[0])
    minutes = int(text.split("over the last ")[1].split(" min")[0])
    assert 110 < level < 122  # 100 x e^0.15 = 116
    assert 30 <= minutes <= 65  # the 12 rows cover 60 min; the best run may take in a noisy row before them
