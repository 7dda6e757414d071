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
