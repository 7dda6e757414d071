"""Three real `upwatch prober` processes with `shard: auto` on one database: they split the
endpoints, and when one is killed with SIGKILL the others probe its endpoints, with no endpoint
probed by two probers in the same interval. (How long the takeover takes is measured by
bench/prober_leases.py, not asserted here.)"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from prober.scheduler import stable_hash, step_of
from tests.prober import targets
from tests.prober.conftest import fetch
from upwatch import config as configuration

REPO = Path(__file__).parents[2]
SLOTS = 16
NAMES = [f"ep{i:02d}" for i in range(24)]


def config(tmp_path: Path, base: str, instance: str) -> Path:
    path = tmp_path / f"{instance}.yaml"
    endpoints = "".join(f"  - name: {n}\n    url: {base}/ok\n    interval: 1s\n" for n in NAMES)
    path.write_text(f"endpoints:\n{endpoints}"
                    f"prober:\n  instance: {instance}\n  location: here\n  shard: auto\n  lease_ttl: 2s\n"
                    f"  lease_slots: {SLOTS}\n  data_dir: {tmp_path / instance}\n"
                    f"push:\n  listen: 127.0.0.1:{targets.closed_port()}\n")
    return path


async def wait_for(check: str, database_url: str, deadline_s: float = 60.0) -> None:
    """Poll until the query returns true; bounded."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if fetch(database_url, check)[0][0]:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"not reached within {deadline_s:.0f}s: {check}")


@pytest.mark.timeout(180)
async def test_killed_prober_is_taken_over_without_double_probing(tmp_path: Path, database_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "UPWATCH_DATABASE_URL": database_url}
    async with targets.serve(targets.app()) as base:
        procs = {p: await asyncio.create_subprocess_exec(
                     sys.executable, "-m", "upwatch.cli", "--config", str(config(tmp_path, base, p)), "prober",
                     cwd=REPO, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
                 for p in ("p1", "p2", "p3")}
        try:
            # steady: three holders, every slot held, every endpoint probed
            await wait_for("SELECT count(DISTINCT split_part(holder, '/', 1)) = 3 AND count(*) FILTER"
                           " (WHERE holder IS NULL) = 0 FROM prober_slots WHERE expires_at > now()", database_url)
            await wait_for(f"SELECT count(DISTINCT endpoint_id) = {len(NAMES)} FROM probe_results", database_url)
            victim_slots = {r[0] for r in fetch(database_url, "SELECT slot FROM prober_slots"
                                                              " WHERE holder LIKE 'p2/%'")}
            victims = [n for n in NAMES if stable_hash(n) % SLOTS in victim_slots]
            procs["p2"].send_signal(signal.SIGKILL)
            await procs["p2"].wait()
            (killed_at,) = fetch(database_url, "SELECT now()")[0]
            if victims:
                await wait_for(
                    f"SELECT count(DISTINCT e.name) = {len(victims)} FROM probe_results r JOIN endpoints e"
                    f" ON e.id = r.endpoint_id WHERE r.prober <> 'p2' AND r.time > '{killed_at.isoformat()}'"
                    f" AND e.name = ANY('{{{','.join(victims)}}}')", database_url)
        finally:
            for name, proc in procs.items():
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                    _, err = await asyncio.wait_for(proc.communicate(), 30)
                    assert proc.returncode == 0, (name, err.decode()[-2000:])
    # Every run of an endpoint is due on its phase within the 1 s interval, and starts then or (a loaded
    # loop) up to an interval later: floor(time - phase) names the run. Two probers holding its slot at
    # once would show as two results of one run. (Start times less than half an interval apart are not
    # that: a run started late by the holder just before it gave the slot back, and the next one on
    # time by the new holder, are two runs.)
    phases = {e.name: step_of(e)[1] / 1000 for e in configuration.load(tmp_path / "p1.yaml").endpoints}
    doubled = fetch(database_url, "WITH runs AS (SELECT r.endpoint_id, r.prober,"
                                  "   floor(extract(epoch FROM r.time) - p.phase) AS run FROM probe_results r"
                                  "   JOIN endpoints e ON e.id = r.endpoint_id"
                                  "   JOIN unnest(%s::text[], %s::float8[]) AS p(name, phase) ON p.name = e.name)"
                                  " SELECT count(*) FROM runs a JOIN runs b ON a.endpoint_id = b.endpoint_id"
                                  " AND a.run = b.run AND a.prober < b.prober", list(phases), list(phases.values()))
    assert victims and doubled == [(0,)]
    holders = fetch(database_url, "SELECT DISTINCT holder FROM prober_slots WHERE holder IS NOT NULL")
    assert holders == []  # the two stopped cleanly and gave their slots back (p2's ran out)
