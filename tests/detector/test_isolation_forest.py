"""The model: planted outliers score highest, the threshold is calibrated, reasons name the culprit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detector import features, models, reasons, synthetic
from detector.models import isolation_forest
from upwatch.config.detector import Detector

SETTINGS = Detector(min_training_rows=1000)
BURSTS = (6500, 7300, 8100, 9000, 10400)


@pytest.fixture(scope="module")
def planted() -> tuple[pd.DataFrame, list[int]]:
    """Two clean days; in the second, five two-minute bursts at 4x the usual latency."""
    frame = synthetic.generate(11, days=2, incidents_per_day=0).frame
    frame = frame.assign(value=frame["value"].astype(float))
    rows = [s + k for s in BURSTS for k in range(8)]
    frame.loc[rows, "value"] *= 6.0
    return features.compute(features.prepare(frame)), rows


@pytest.fixture(scope="module")
def fitted(planted: tuple[pd.DataFrame, list[int]]) -> isolation_forest.Fitted:
    return isolation_forest.train(planted[0].iloc[:5760], SETTINGS)


def test_isolation_forest_is_registered() -> None:
    assert models.get("isolation_forest") is isolation_forest


Planted = tuple[pd.DataFrame, list[int]]


def test_planted_outliers_score_highest(planted: Planted, fitted: isolation_forest.Fitted) -> None:
    feats, rows = planted
    scores = isolation_forest.score(fitted, feats.iloc[5760:])
    assert scores.between(0, 1).all()
    top = scores.nlargest(len(rows)).index
    # A burst's first point looks like benign single-point jitter, and its level lingers a few
    # points after it ends; every other top-scored row must be inside or just after a burst.
    near = {s + k for s in BURSTS for k in range(1, 14)}
    assert sum(r in near for r in top) >= 0.9 * len(rows)
    for start in BURSTS:
        assert scores.loc[start + 1:start + 7].max() >= fitted.threshold


def test_threshold_keeps_clean_data_nearly_silent(planted: Planted, fitted: isolation_forest.Fitted) -> None:
    feats, rows = planted
    clean = feats.iloc[5760:].drop(index=[r + k for r in rows for k in range(25)], errors="ignore")
    flagged = (isolation_forest.score(fitted, clean) >= fitted.threshold).mean()
    assert flagged < 0.002
    assert fitted.threshold == 0.5


def test_threshold_is_not_a_fixed_contamination(planted: tuple[pd.DataFrame, list[int]]) -> None:
    training = planted[0].iloc[:5760]
    strict = isolation_forest.train(training, Detector(min_training_rows=1000, target_false_alarm_rate=1e-5))
    loose = isolation_forest.train(training, Detector(min_training_rows=1000, target_false_alarm_rate=1e-2))
    assert strict.raw_threshold > loose.raw_threshold
    flagged = [(isolation_forest.score(m, training) >= 0.5).mean() for m in (loose, strict)]
    assert flagged[0] > flagged[1]


def test_too_few_rows_is_refused(planted: tuple[pd.DataFrame, list[int]]) -> None:
    with pytest.raises(models.NotEnoughData, match="need 1000"):
        isolation_forest.train(planted[0].iloc[:999], SETTINGS)


def test_rows_without_features_score_nan(planted: Planted, fitted: isolation_forest.Fitted) -> None:
    rows = planted[0].iloc[6000:6010].copy()
    rows.loc[rows.index[3], "robust_z_persist"] = np.nan
    scores = isolation_forest.score(fitted, rows)
    assert np.isnan(scores.iloc[3]) and scores.drop(rows.index[3]).notna().all()


@pytest.mark.parametrize(
    ("score", "expected"),
    [(0.5, "medium"), (0.69, "medium"), (0.7, "high"), (0.84, "high"), (0.85, "critical"), (1.0, "critical")],
    ids=["threshold", "below-high", "high", "below-critical", "critical", "max"],
)
def test_severity_is_ordered_by_score(score: float, expected: str) -> None:
    assert reasons.severity(score) == expected


def test_reason_names_the_value_and_its_usual_range(planted: Planted, fitted: isolation_forest.Fitted) -> None:
    row = planted[0].loc[7302]
    assert row["value"] > 2 * row["usual_high"]
    text = reasons.explain(isolation_forest.explain(fitted, row.to_dict()), row.to_dict(), label="latency", unit="ms")
    assert text.startswith(f"latency {row['value']:,.0f} ms, usually ")
    low, high = text.split("usually ")[1].removesuffix(" ms").split("–")
    assert float(low.replace(",", "")) < float(high.replace(",", "")) < row["value"]


@pytest.mark.parametrize("factor", [4.0, 20.0, 100.0], ids=["4x", "20x", "100x"])
def test_a_short_spike_beyond_the_training_range_is_flagged_and_ranked_by_size(
    planted: tuple[pd.DataFrame, list[int]], fitted: isolation_forest.Fitted, factor: float
) -> None:
    """A forest alone scores every point beyond its training range alike; the envelope keeps growing."""
    frame = synthetic.generate(11, days=2, incidents_per_day=0).frame
    frame = frame.assign(value=frame["value"].astype(float))
    spike = [9500, 9501, 9502]
    smaller = frame.copy()
    smaller.loc[spike, "value"] *= factor / 2
    bigger = frame.copy()
    bigger.loc[spike, "value"] *= factor
    low, high = (isolation_forest.score(fitted, features.compute(features.prepare(f)).loc[spike])
                 for f in (smaller, bigger))
    assert high.iloc[-1] >= fitted.threshold
    assert high.iloc[-1] > low.iloc[-1]
    assert isolation_forest.beyond(fitted, features.compute(features.prepare(bigger)).loc[[9500]]).item() < 0.5


def test_a_series_that_was_always_0_claims_nothing_until_it_moves() -> None:
    # A failure rate of 0 for days: the forest cannot split constant features and used to score
    # every later row 1.0 ("failure rate 0.000, usually 0.000-0.000").
    stamps = pd.Timestamp("2026-03-02T00:00:00Z") + pd.to_timedelta(np.arange(600) * 60, unit="s")
    values = np.zeros(600)
    values[-3:] = 0.5
    prepared = features.prepare(pd.DataFrame({"timestamp": stamps, "value": values}))
    feats = features.compute(prepared, isolation_forest.FEATURES, pd.Timedelta(minutes=1))
    model = isolation_forest.train(feats.iloc[:500], Detector(min_training_rows=300))
    scores = isolation_forest.score(model, feats.iloc[500:])
    assert (scores.iloc[:-3] < model.threshold).all()
    assert (scores.iloc[-3:] >= model.threshold).all()
