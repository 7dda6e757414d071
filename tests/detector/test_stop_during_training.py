"""`upwatch detector` stops promptly on SIGTERM or Ctrl-C while a first training is running in its
worker process: the fit is abandoned (its model is retrained at the next start), not waited for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from detector import artifacts

REPO = Path(__file__).parents[2]
SERIES = "endpoint:big:latency"
# 8 days at 1 s: one fit of this window takes several seconds of CPU (features over 700,000 rows),
# more than upwatch's 5 s stop budget on a busy machine.
HISTORY_SQL = """
INSERT INTO probe_results (time, endpoint_id, id, ok, latency_ms)
SELECT t, %(endpoint)s, gen_random_uuid(), true,
       100 * (1 + 0.2 * sin(2 * pi() * extract(epoch FROM t) / 86400)) * (0.9 + 0.2 * random())
FROM generate_series(now() - interval '8 days', now(), interval '1 second') AS t
"""


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _fitting_worker(detector: subprocess.Popen[bytes], timeout_s: float) -> int:
    """The training worker's pid once it has imported its libraries and is well into fitting."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and detector.poll() is None:
        for child in _children(detector.pid):
            try:
                spawned = b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
                # Imports take about 2 CPU-s; a fit of the big window several more.
                if spawned and _cpu_s(child) >= 3.0:
                    return child
            except FileNotFoundError:
                continue
        time.sleep(0.1)
    raise AssertionError("no training worker busy fitting")


def _start_detector(database_url: str, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """`upwatch detector` on 8 days of 1 s rows, in a session of its own; (process, its log, model_dir)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("INSERT INTO endpoints (name, kind, target) VALUES ('big', 'http', "
                           "'http://127.0.0.1/big') RETURNING id").fetchone()
        assert row is not None
        conn.execute(HISTORY_SQL, {"endpoint": row[0]})
        conn.execute("ANALYZE probe_results")
    models = tmp_path / "models"
    config = tmp_path / "upwatch.yaml"
    config.write_text(f"storage:\n  database_url: {database_url}\n"
                      f"detector:\n  model_dir: {models}\n  max_workers: 1\n")
    log = tmp_path / "detector.log"
    with open(log, "wb") as stderr:
        # A session of its own, so that "Ctrl-C" (SIGINT to the whole process group, as a terminal
        # sends it) reaches the detector and its workers but not pytest.
        detector = subprocess.Popen([sys.executable, "-m", "upwatch.cli", "--config", str(config), "detector"],
                                    cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO),
                                                       "UPWATCH_LOG_LEVEL": "INFO"},
                                    stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    return detector, log, models


@pytest.mark.timeout(240)
@pytest.mark.parametrize("interrupt", ["sigterm", "ctrl-c"])
def test_detector_stops_while_a_worker_is_mid_training(database_url: str, tmp_path: Path, interrupt: str) -> None:
    detector, log, models = _start_detector(database_url, tmp_path)
    try:
        worker = _fitting_worker(detector, timeout_s=150)
        if interrupt == "sigterm":
            detector.send_signal(signal.SIGTERM)
        else:
            os.killpg(detector.pid, signal.SIGINT)
        code = detector.wait(timeout=60)
    finally:
        if detector.poll() is None:
            detector.kill()
            detector.wait()
    output = log.read_text()
    assert code == 0, output
    assert "did not stop" not in output, output
    assert "detector stopped" in output, output
    assert "Traceback" not in output, output
    assert not _alive(worker), "the training worker outlived the detector"
    # The fit was abandoned, not finished and saved while the stop waited for it.
    assert not artifacts.path_for(models, SERIES).exists(), output


@pytest.mark.timeout(240)
def test_a_killed_detector_leaves_no_training_worker_behind(database_url: str, tmp_path: Path) -> None:
    """SIGKILL (or the OOM killer) closes nothing a ProcessPoolExecutor worker waits on: without a
    watch on its parent, the worker finished its fit and then waited forever, ~200 MB, an orphan."""
    detector, log, _ = _start_detector(database_url, tmp_path)
    try:
        worker = _fitting_worker(detector, timeout_s=150)
        idle = [c for c in _children(detector.pid) if c != worker]  # a second worker, if one was started
        detector.kill()
        detector.wait(timeout=30)
    finally:
        if detector.poll() is None:
            detector.kill()
            detector.wait()
    deadline = time.monotonic() + 60  # the fit is abandoned mid-way: gone within the poll, not after it
    while time.monotonic() < deadline and any(_alive(pid) for pid in [worker, *idle]):
        time.sleep(0.2)
    assert not [pid for pid in [worker, *idle] if _alive(pid)], log.read_text()
