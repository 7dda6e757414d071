"""Two real `upwatch alerter` (and `upwatch detector`) processes on one database: one is active, the
other stands by; SIGKILL the active one and the standby takes over. For the alerter, the DOWN alert
of an endpoint that fails after the kill is raised by the standby, once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).parents[2]
ACTIVE = b"leader election: this process is the active "
DOWN_ALERTS = "SELECT count(*) FROM alerts WHERE kind = 'down' AND event = 'firing'"


class Log:
    """A process's stderr, written to a file: a pipe would stay open as long as any child it started
    (the detector's worker processes outlive a SIGKILLed parent for a while) and hold up waiting for it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def said(self, text: bytes) -> bool:
        return text in self.path.read_bytes()

    def tail(self) -> str:
        return self.path.read_bytes()[-2000:].decode(errors="replace")


async def _wait(check: Callable[[], bool], logs: list[Log], limit_s: float = 90.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.2)
    tails = "\n".join(log.tail() for log in logs)
    raise AssertionError(f"not within {limit_s:.0f}s; the processes said:\n{tails}")


def _config(tmp_path: Path, service: str) -> Path:
    path = tmp_path / f"{service}.yaml"
    path.write_text("endpoints:\n  - {name: api, url: 'http://127.0.0.1:9/'}\n"
                    "alerting:\n  evaluate_interval: 1s\n  failure_threshold: 2\n"
                    "  smtp: {host: 127.0.0.1, port: 9, recipients: [oncall@example.test]}\n"
                    f"detector:\n  model_dir: {tmp_path / 'models'}\n")
    return path


@pytest.mark.timeout(240)
@pytest.mark.parametrize("service", ["alerter", "detector"])
async def test_the_standby_takes_over_when_the_active_copy_is_killed(service: str, database_url: str,
                                                                     tmp_path: Path) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO endpoints (name, kind, target) VALUES ('api', 'http', 'http://127.0.0.1:9/')")
    env = {**os.environ, "PYTHONPATH": str(REPO), "UPWATCH_DATABASE_URL": database_url}
    config = _config(tmp_path, service)
    procs, logs = [], []
    for i in range(2):
        log = Log(tmp_path / f"{service}-{i}.log")
        with log.path.open("wb") as err:
            procs.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "upwatch.cli", "--config", str(config), service, cwd=tmp_path, env=env,
                stdout=asyncio.subprocess.DEVNULL, stderr=err))
        logs.append(log)
    try:
        await _wait(lambda: any(log.said(ACTIVE) for log in logs), logs)
        first = next(i for i, log in enumerate(logs) if log.said(ACTIVE))
        other = 1 - first
        await asyncio.sleep(2.0)  # both up: the other one only stands by
        assert not logs[other].said(ACTIVE)
        procs[first].send_signal(signal.SIGKILL)
        await asyncio.wait_for(procs[first].wait(), 30)
        await _wait(lambda: logs[other].said(ACTIVE), logs)
        if service == "alerter":
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute("INSERT INTO probe_results (time, endpoint_id, id, ok, error_kind, error)"
                             " SELECT now() - k * interval '1 ms', id, gen_random_uuid(), false, 'timeout',"
                             " 'timeout after 10 s' FROM endpoints, generate_series(1, 3) k")

            def raised() -> bool:
                with psycopg.connect(database_url, autocommit=True) as conn:
                    row = conn.execute(DOWN_ALERTS).fetchone()
                return bool(row and row[0] >= 1)

            await _wait(raised, logs)
            with psycopg.connect(database_url, autocommit=True) as conn:
                assert conn.execute(DOWN_ALERTS).fetchone() == (1,)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 60)
    assert procs[other].returncode == 0, logs[other].tail()
