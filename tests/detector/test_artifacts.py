"""Artifacts round-trip, and anything unusable is refused with ArtifactError (the caller retrains)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from detector import artifacts, features, synthetic
from detector.models import isolation_forest
from upwatch.config.detector import Detector


@pytest.fixture(scope="module")
def trained() -> tuple[isolation_forest.Fitted, pd.DataFrame]:
    frame = synthetic.generate(21, days=0.5, incidents_per_day=0).frame
    feats = features.compute(features.prepare(frame))
    return isolation_forest.train(feats.iloc[:2000], Detector(min_training_rows=500)), feats


def _artifact(model: isolation_forest.Fitted) -> artifacts.Artifact:
    return artifacts.Artifact(
        model=model, model_name="isolation_forest", series="endpoint:api:latency", version=3,
        trained_at=datetime(2026, 3, 2, tzinfo=UTC), rows=model.rows, features=model.features,
        threshold=model.threshold, step=features.DEFAULT_STEP, two_sided=False, versions=isolation_forest.versions(),
    )


Trained = tuple[isolation_forest.Fitted, pd.DataFrame]


def test_artifact_round_trip_scores_the_same(tmp_path: Path, trained: Trained) -> None:
    model, feats = trained
    path = artifacts.path_for(tmp_path, "endpoint:api/v1 latency")
    artifacts.save(_artifact(model), path)
    loaded = artifacts.load(path, "isolation_forest", isolation_forest)
    assert (loaded.series, loaded.version, loaded.rows) == ("endpoint:api:latency", 3, model.rows)
    pd.testing.assert_series_equal(isolation_forest.score(loaded.model, feats), isolation_forest.score(model, feats))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert "/" not in path.name and path.suffix == ".joblib"


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[: len(b) // 2], id="truncated"),
        pytest.param(lambda b: b"not a joblib file at all", id="garbage"),
        pytest.param(lambda b: b"", id="empty"),
    ],
)
def test_corrupt_artifact_is_refused(tmp_path: Path, trained: Trained, damage: Callable[[bytes], bytes]) -> None:
    path = tmp_path / "m.joblib"
    artifacts.save(_artifact(trained[0]), path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(artifacts.ArtifactError, match=r"m\.joblib"):
        artifacts.load(path, "isolation_forest", isolation_forest)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("versions", {"scikit-learn": "0.24.2"}, "versions"),
        ("features", ("rolling_mean_10",), "features"),
        ("model_name", "other_model", "saved by model 'other_model', the config selects 'isolation_forest'"),
        ("format", 99, "format"),
    ],
    ids=["other-sklearn", "other-features", "other-model", "other-format"],
)
def test_incompatible_artifact_is_refused(
    tmp_path: Path, trained: Trained, field: str, value: object, message: str
) -> None:
    path = tmp_path / "m.joblib"
    fields = _artifact(trained[0]).__dict__ | {field: value}
    artifacts.save(artifacts.Artifact(**fields), path)
    with pytest.raises(artifacts.ArtifactError, match=message):
        artifacts.load(path, "isolation_forest", isolation_forest)
