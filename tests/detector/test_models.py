"""The model seam: a model is one module plus one MODELS line, selected by `detector.model`.

`tests/detector/robust_z.py` is registered from here (monkeypatch.setitem) and picked up by
config validation, live training and scoring against the real database, and
`python -m detector backtest`; artifacts carry the model name and are refused by another model.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from psycopg_pool import AsyncConnectionPool

from detector import artifacts, features, models
from detector.__main__ import main
from detector.models import isolation_forest
from detector.service import LiveDetector
from tests.detector import robust_z
from upwatch import config
from upwatch.config import ConfigError
from upwatch.config.detector import Detector

REPO = Path(__file__).resolve().parents[2]
SERIES = "endpoint:api:latency"


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one line that adds a model."""
    monkeypatch.setitem(models.MODELS, "robust_z", "tests.detector.robust_z")


def test_unknown_model_is_a_config_error_naming_file_line_and_the_models(tmp_path: Path) -> None:
    path = tmp_path / "upwatch.yaml"
    path.write_text("detector:\n  retrain_interval: 1h\n  model: prophet\n")
    with pytest.raises(ConfigError) as caught:
        config.load(path, environ={})
    assert str(caught.value) == f"{path}:3: detector.model: unknown model 'prophet' (known: isolation_forest)"


def test_a_registered_model_is_valid_config(tmp_path: Path, registered: None) -> None:
    path = tmp_path / "upwatch.yaml"
    path.write_text("detector:\n  model: robust_z\n")
    assert config.load(path, environ={}).detector.model == "robust_z"
    assert models.get("robust_z") is robust_z


def test_a_module_that_breaks_the_contract_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(models.MODELS, "broken", "detector.incidents")
    with pytest.raises(TypeError, match=r"'broken' \(detector\.incidents\) lacks FEATURES, train, score, explain"):
        models.get("broken")


def test_importing_the_config_imports_neither_pandas_nor_sklearn() -> None:
    code = "import sys, upwatch.config; print(sorted(m for m in ('pandas', 'sklearn', 'numpy') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30,
                          check=True)
    assert done.stdout.strip() == "[]"


async def _endpoint(pool: AsyncConnectionPool) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("INSERT INTO endpoints (name, kind, target) VALUES ('api', 'http', 'http://127.0.0.1/')"
                                 " RETURNING id")
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _add_checks(pool: AsyncConnectionPool, endpoint: int, times: list[datetime], latency: list[float]) -> None:
    query = "COPY probe_results (time, endpoint_id, id, ok, latency_ms) FROM STDIN"
    async with pool.connection() as conn, conn.cursor() as cur, cur.copy(query) as copy:
        for at, ms in zip(times, latency, strict=True):
            await copy.write_row((at, endpoint, uuid.uuid4(), True, ms))


@pytest.mark.timeout(60)
async def test_the_configured_model_trains_scores_and_its_artifact_is_refused_by_another(
    pool: AsyncConnectionPool, tmp_path: Path, registered: None, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(3)
    now = datetime.now(UTC).replace(microsecond=0)
    history = [now - timedelta(hours=3) + timedelta(seconds=15 * i) for i in range(700)]
    endpoint = await _endpoint(pool)
    await _add_checks(pool, endpoint, history, list(100 * np.exp(rng.normal(0, 0.08, len(history)))))
    settings = Detector(model="robust_z", min_training_rows=500, min_training_span="1h", model_dir=tmp_path)
    with ThreadPoolExecutor(max_workers=1) as executor:
        live = LiveDetector(pool, settings, executor)
        await live.tick(now)
        await live.drain()
        artifact = live.states[SERIES].artifact
        assert artifact is not None and artifact.model_name == "robust_z"
        assert isinstance(artifact.model, robust_z.Fitted)

        fresh = [history[-1] + timedelta(seconds=15 * (i + 1)) for i in range(12)]
        await _add_checks(pool, endpoint, fresh, [100.0] * 4 + [900.0] * 8)
        written = await live.tick(now + timedelta(minutes=4))
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT time, score, reason, features FROM anomalies WHERE series = %s ORDER BY time", (SERIES,))
            rows = await cur.fetchall()
        assert written == len(rows) >= 3 and {r[0] for r in rows} <= set(fresh[4:])
        for _, score, reason, feats in rows:
            # What robust_z computes, from the one feature it reads, and only its features were computed.
            assert score == pytest.approx(min(1.0, 0.5 * feats["robust_z_persist"] / artifact.model.limit), abs=1e-5)
            assert set(feats) == {*robust_z.FEATURES, *features.CONTEXT}
            assert reason.startswith("latency 900 ms, usually ")

        # The same files under a config that selects another model: refused by name, retrained.
        other = Detector(min_training_rows=500, min_training_span="1h", model_dir=tmp_path)
        with caplog.at_level(logging.WARNING, logger="detector.service"):
            again = LiveDetector(pool, other, executor)
            await again.tick(now + timedelta(minutes=5))
            await again.drain()
    assert "saved by model 'robust_z', the config selects 'isolation_forest'" in caplog.text
    retrained = again.states[SERIES].artifact
    assert retrained is not None and retrained.model_name == "isolation_forest" and retrained.version == 2
    assert isinstance(retrained.model, isolation_forest.Fitted)


def _series(days: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    stamps = pd.Timestamp("2026-03-02T00:00:00Z") + pd.to_timedelta(np.arange(int(days * 288)) * 300, unit="s")
    values = 120.0 * np.exp(rng.normal(0, 0.05, len(stamps)))
    values[-40] *= 8.0
    return pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%SZ"), "value": values})


def test_python_m_detector_backtest_uses_the_configured_model(tmp_path: Path, registered: None) -> None:
    _series(3, 5).to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "upwatch.yaml").write_text("detector:\n  model: robust_z\n")
    assert main(["backtest", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv"),
                 "--config", str(tmp_path / "upwatch.yaml")]) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    prepared = features.prepare(out[["timestamp", "value"]])
    z = features.compute(prepared, robust_z.FEATURES, pd.Timedelta(minutes=5), two_sided=True)["robust_z_persist"]
    judged = out.index[289:]  # the first model is trained on the first day (288 rows at 5 min)
    # Every judged score is robust_z's 0.5 * z / limit (limit >= FLOOR; on this quiet series FLOOR itself).
    expected = (0.5 * z / robust_z.FLOOR).clip(0.0, 1.0).round(6)
    pd.testing.assert_series_equal(out.loc[judged, "anomaly_score"], expected.loc[judged], check_names=False)
    assert out["is_anomaly"].sum() == 1 and out["is_anomaly"].iloc[-40] == 1


def test_a_format_3_artifact_still_loads(tmp_path: Path) -> None:
    """Format 3 (before the contract) kept step and sidedness on the forest's Fitted and a sklearn_version."""
    stamps = pd.Timestamp("2026-03-02T00:00:00Z") + pd.to_timedelta(np.arange(700) * 60, unit="s")
    frame = pd.DataFrame({"timestamp": stamps, "value": 100 * np.exp(np.random.default_rng(1).normal(0, 0.1, 700))})
    feats = features.compute(features.prepare(frame), isolation_forest.FEATURES, pd.Timedelta(minutes=1))
    model = isolation_forest.train(feats, Detector(min_training_rows=300))
    model.step, model.two_sided = pd.Timedelta(minutes=1), False  # type: ignore[attr-defined]  # format 3's fields
    path = tmp_path / "old.joblib"
    joblib.dump({"model": model, "model_name": "isolation_forest", "series": SERIES, "version": 7,
                 "trained_at": datetime(2026, 3, 2, tzinfo=UTC), "rows": model.rows,
                 "features": isolation_forest.FEATURES, "threshold": 0.5,
                 "sklearn_version": isolation_forest.versions()["scikit-learn"], "joblib_version": joblib.__version__,
                 "format": 3}, path)
    loaded = artifacts.load(path, "isolation_forest", isolation_forest)
    assert (loaded.version, loaded.step, loaded.two_sided, loaded.format) == (7, pd.Timedelta(minutes=1), False, 4)
    assert loaded.versions == isolation_forest.versions()
    refused = "saved by model 'isolation_forest', the config selects 'robust_z'"
    with pytest.raises(artifacts.ArtifactError, match=refused):
        artifacts.load(path, "robust_z", robust_z)
