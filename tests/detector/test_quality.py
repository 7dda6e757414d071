"""A small, seed-fixed slice of bench/detector_quality.py with conservative floors, so regressions fail CI."""

from __future__ import annotations

from datetime import timedelta
from typing import cast

import pytest

from detector import evaluation, synthetic
from detector.backtest import replay
from detector.incidents import GAP
from detector.models import isolation_forest, reference
from upwatch.config.detector import Detector

# Production defaults, except a 4 h retrain cadence to keep this test a few seconds long, and silent
# before the first model: these floors are the model's (the early rule is compared below).
SETTINGS = Detector(retrain_interval="4h", before_model="silent")
SEEDS = (7001, 7002, 7003)


@pytest.fixture(scope="module")
def labelled() -> list[synthetic.LabelledSeries]:
    return [synthetic.generate(seed, days=2.5) for seed in SEEDS]


def _figures(labelled: list[synthetic.LabelledSeries], model: object, settings: Detector = SETTINGS
             ) -> dict[str, object]:
    if model is reference:  # the method as stated, none of our decision rules after the threshold
        settings = settings.model_copy(update={"event_hold": timedelta(0)})
    outcomes = [
        evaluation.evaluate(s, replay(s.frame, settings, model, exclude_claimed=model is isolation_forest,
                                                higher_is_worse=True),  # type: ignore[arg-type]
                            gap=GAP)
        for s in labelled
    ]
    return evaluation.summarize(outcomes)


@pytest.mark.timeout(60)
def test_detector_finds_incidents_without_crying_wolf(labelled: list[synthetic.LabelledSeries]) -> None:
    ours = _figures(labelled, isolation_forest)
    # On these seeds: 10 of 12 incidents (3 spikes), no false alarm in 4.5 series-days. 11 of 12 before
    # recurring spikes got a threshold of their own (isolation_forest.POINT_EVENTS_ABOVE, 3 Dec evening):
    # seed 7001 has seven failure bursts in 47 h; three of them are in the training rows unflagged (two on
    # the silent first day, one missed), so the seventh is that series' usual. (The prober's DOWN alerts
    # do not depend on the detector.)
    assert ours["incidents"] >= 10
    assert ours["recall"] >= 0.8
    assert ours["false_alarms_per_series_day"] <= 0.25
    # Short spikes were the weak kind before the envelope (a forest scores every point
    # beyond its training range alike).
    assert ours["by_kind"]["spike"]["recall"] >= 0.66
    reference_figures = _figures(labelled[:1], reference)
    assert reference_figures["false_alarms_per_series_day"] >= 20


@pytest.mark.timeout(60)
def test_the_early_rule_finds_first_day_incidents_without_more_false_alarms(
    labelled: list[synthetic.LabelledSeries]
) -> None:
    silent = _figures(labelled[:2], isolation_forest)
    rule = _figures(labelled[:2], isolation_forest, SETTINGS.model_copy(update={"before_model": "rule"}))
    # The rule judges the first day too, so it is scored on more incidents; it finds all silence finds
    # and some of the first day's, with no more false alarms.
    assert rule["incidents"] > silent["incidents"]
    def found(f: dict[str, object]) -> int:
        return round(cast(float, f["recall"]) * cast(int, f["incidents"]))

    assert found(rule) > found(silent) and cast(int, rule["false_alarms"]) <= cast(int, silent["false_alarms"])
