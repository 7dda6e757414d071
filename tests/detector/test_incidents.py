"""Anomalous points become incidents; incidents are left out of training."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from detector.incidents import from_scores, group, quarantine

T0 = pd.Timestamp("2026-03-02T00:00Z")


def _at(seconds: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(seconds=seconds)


def test_points_within_the_gap_form_one_incident_with_its_peak() -> None:
    points = [(_at(0), 0.6), (_at(15), 0.9), (_at(30), 0.7), (_at(400), 0.55)]
    incidents = group(points, gap=timedelta(minutes=2))
    assert [(i.start, i.end, i.peak_score, i.peak_at, i.points) for i in incidents] == [
        (_at(0), _at(30), 0.9, _at(15), 3),
        (_at(400), _at(400), 0.55, _at(400), 1),
    ]


def test_incidents_from_unsorted_scores_follow_time() -> None:
    stamps = pd.Series([_at(30), _at(0), _at(15), _at(1000)])
    scores = pd.Series([0.7, 0.6, 0.2, 0.8])
    flags = pd.Series([True, True, False, True])
    incidents = from_scores(stamps, scores, flags, gap=timedelta(minutes=1))
    assert [(i.start, i.end, i.points) for i in incidents] == [(_at(0), _at(30), 2), (_at(1000), _at(1000), 1)]


def test_quarantine_covers_each_incident_padded_by_the_gap() -> None:
    stamps = (T0 + pd.to_timedelta(np.arange(0, 3600, 15), unit="s")).tz_convert(None).to_numpy()
    flags = np.zeros(len(stamps), dtype=bool)
    flags[[100, 101, 105, 200]] = True
    out = quarantine(stamps, flags, timedelta(minutes=1))
    assert np.flatnonzero(out).tolist() == list(range(96, 110)) + list(range(196, 205))
    assert not quarantine(stamps, np.zeros(len(stamps), dtype=bool), timedelta(minutes=1)).any()
