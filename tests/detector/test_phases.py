"""Latency anomalies name the phase that moved, against that phase's own baseline (#13.5)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from psycopg_pool import AsyncConnectionPool

from detector import artifacts, phases
from detector.models import isolation_forest
from detector.service import LiveDetector
from upwatch.config.detector import Detector

SERIES = "endpoint:api:latency"
# Usual phase timings (ms) of an HTTPS check and their noise.
USUAL = {"dns_ms": (2.0, 0.3), "connect_ms": (5.0, 0.8), "tls_ms": (20.0, 3.0), "ttfb_ms": (50.0, 6.0),
         "transfer_ms": (3.0, 0.5)}


def _checks(n: int, seed: int, **override: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({c: np.abs(rng.normal(m, s, n)) for c, (m, s) in USUAL.items()})
    for column, value in override.items():
        frame[column] = value
    frame["value"] = frame[list(USUAL)].sum(axis=1)
    return frame


def test_baselines_are_each_phase_median_and_robust_spread() -> None:
    rows = _checks(2000, 1)
    usual = phases.baselines(rows)
    assert set(usual) == {"value", *USUAL}
    for column, (mean, noise) in USUAL.items():
        assert usual[column][0] == pytest.approx(mean, rel=0.05)
        assert usual[column][1] == pytest.approx(noise, rel=0.15)


def test_a_check_with_one_phase_has_no_phase_baselines() -> None:
    rows = _checks(200, 2)[["value", "connect_ms"]].assign(dns_ms=np.nan)  # a TCP check: the total is the connect
    assert phases.baselines(rows) == {}


@pytest.mark.parametrize(
    ("row", "named"),
    [
        pytest.param({"tls_ms": 640.0}, "tls_ms", id="tls"),
        pytest.param({"ttfb_ms": 900.0}, "ttfb_ms", id="ttfb"),
        pytest.param({"dns_ms": 300.0}, "dns_ms", id="dns"),
        pytest.param({"ttfb_ms": 150.0, "tls_ms": 60.0, "connect_ms": 15.0, "dns_ms": 6.0, "transfer_ms": 9.0},
                     None, id="every-phase-alike"),
        pytest.param({"ttfb_ms": 60.0}, None, id="within-its-noise"),
    ],
)
def test_the_phase_that_carried_the_rise_is_named(row: dict[str, float], named: str | None) -> None:
    usual = phases.baselines(_checks(2000, 3))
    check = {c: m for c, (m, _) in USUAL.items()} | row
    check["value"] = sum(check[c] for c in USUAL)
    assert phases.culprit(check, usual) == named


def test_the_reason_says_the_phase_its_usual_value_and_the_total() -> None:
    usual = {"value": (80.0, 6.0), "dns_ms": (2.0, 0.3), "tls_ms": (20.0, 5.0), "ttfb_ms": (50.0, 6.0)}
    row = {"value": 700.0, "dns_ms": 2.0, "tls_ms": 640.0, "ttfb_ms": 55.0}
    assert phases.reason(row, usual) == "TLS handshake 640 ms, usually 20±5.0 (total 700 ms, usually 80)"
    assert phases.reason(row | {"tls_ms": 21.0, "value": 81.0}, usual) is None


async def _add_checks(pool: AsyncConnectionPool, endpoint: int, times: list[datetime], rows: pd.DataFrame) -> None:
    query = ("COPY probe_results (time, endpoint_id, id, ok, latency_ms, dns_ms, connect_ms, tls_ms, ttfb_ms,"
             " transfer_ms) FROM STDIN")
    async with pool.connection() as conn, conn.cursor() as cur, cur.copy(query) as copy:
        for at, row in zip(times, rows.itertuples(index=False), strict=True):
            await copy.write_row((at, endpoint, uuid.uuid4(), True, row.value, row.dns_ms, row.connect_ms,
                                  row.tls_ms, row.ttfb_ms, row.transfer_ms))


@pytest.mark.timeout(60)
async def test_a_live_latency_anomaly_names_the_phase_from_the_stored_baselines(
    pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO endpoints (name, kind, target) VALUES ('api', 'http', 'https://127.0.0.1/') RETURNING id")
        endpoint = int((await cur.fetchone() or [0])[0])
    now = datetime.now(UTC).replace(microsecond=0)
    history = [now - timedelta(hours=3) + timedelta(seconds=15 * i) for i in range(700)]
    await _add_checks(pool, endpoint, history, _checks(len(history), 4))
    settings = Detector(min_training_rows=500, min_training_span="1h", model_dir=tmp_path)
    with ThreadPoolExecutor(max_workers=1) as executor:
        live = LiveDetector(pool, settings, executor)
        await live.tick(now)
        await live.drain()
        fresh = [history[-1] + timedelta(seconds=15 * (i + 1)) for i in range(12)]
        slow = pd.concat([_checks(4, 5), _checks(8, 6, tls_ms=640.0)], ignore_index=True)
        await _add_checks(pool, endpoint, fresh, slow)
        assert await live.tick(now + timedelta(minutes=4)) >= 3
    artifact = live.states[SERIES].artifact
    assert artifact is not None
    # The baselines went into the model file with the model.
    saved = artifacts.load(artifacts.path_for(tmp_path, SERIES), "isolation_forest", isolation_forest)
    assert saved.phases == artifact.phases and saved.phases["tls_ms"][0] == pytest.approx(20.0, rel=0.1)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT time, reason FROM anomalies WHERE series = %s ORDER BY time", (SERIES,))
        rows = await cur.fetchall()
    by_time = dict(zip(fresh, slow["value"], strict=True))
    tls, total = artifact.phases["tls_ms"], artifact.phases["value"]
    for at, reason in rows:
        assert reason == (f"TLS handshake 640 ms, usually {tls[0]:.0f}±{tls[1]:.1f}"
                          f" (total {by_time[at]:.0f} ms, usually {total[0]:.0f})")
