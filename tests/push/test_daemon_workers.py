"""push.workers in the daemon: `upwatch prober` with ingest worker processes on one port (real processes,
real HTTP, the real database)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import psycopg
import pytest

from push import keys
from tests.prober import targets
from upwatch import config
from upwatch.config import ConfigError

REPO = Path(__file__).parents[2]
ADMIN = "admin-token-for-worker-tests"
BATCH = [{"path": "/a", "timestamp": "2026-12-02T10:00:00Z"}, {"path": "/b", "timestamp": "2026-12-02T10:00:01Z"}]


async def _started(stream: asyncio.StreamReader) -> None:
    async with asyncio.timeout(60):
        while line := await stream.readline():
            if b"prober started" in line:
                return
    raise AssertionError("the prober did not start")


async def _post(port: int, key: str, body: object,
                headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, Any]]:
    """One request on a new connection (the kernel picks a listening socket per connection)."""
    async with (aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
                session.post(f"http://127.0.0.1:{port}/api/v1/logs", json=body,
                             headers={"Authorization": f"Bearer {key}", **(headers or {})}) as resp):
        return resp.status, resp.headers.get("X-Upwatch-Worker", ""), await resp.json()


async def _daemon(cfg: Path, database_url: str, *, own_session: bool = False) -> asyncio.subprocess.Process:
    """`upwatch prober` with `cfg`, its stderr piped, once it has started."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "upwatch.cli", "--config", str(cfg), "prober", cwd=REPO, start_new_session=own_session,
        env={**os.environ, "PYTHONPATH": str(REPO), "UPWATCH_DATABASE_URL": database_url,
             "UPWATCH_ADMIN_TOKEN": ADMIN},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    try:
        await _started(proc.stderr)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return proc


def _count(url: str, query: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


async def test_two_worker_processes_share_the_port_store_everything_and_stop_together(
        tmp_path: Path, database_url: str) -> None:
    port = targets.closed_port()
    cfg = tmp_path / "upwatch.yaml"
    cfg.write_text(f"endpoints: []\nprober:\n  data_dir: {tmp_path / 'data'}\n"
                   f"push:\n  listen: 127.0.0.1:{port}\n  workers: 2\n  rate_limit_per_key: 10000\n")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await keys.create_service(conn, "workers-shop")
        key, made = await keys.create_key(conn, "workers-shop", "test")
    proc = await _daemon(cfg, database_url)
    daemon = psutil.Process(proc.pid)
    try:
        workers = [c for c in daemon.children() if "spawn_main" in " ".join(c.cmdline())]
        assert len(workers) == 1, [c.cmdline() for c in daemon.children()]

        # Both processes answer POST /logs on the one port, and each stores what it acknowledged.
        answered, accepted = set(), 0
        for n in range(40):
            status, worker, body = await _post(port, key, [{**BATCH[0], "path": f"/{n}"}])
            assert status == 202, body
            answered.add(worker)
            accepted += body["accepted"]
        assert answered == {"0", "1"}
        stored = _count(database_url, "SELECT count(*) FROM request_logs r JOIN services s ON s.id = r.service_id"
                                      " WHERE s.name = 'workers-shop'")
        assert stored == accepted == 40  # durable_ack: stored before the 202, whichever process gave it

        # Everything else is answered by the prober (0), whichever process took the connection.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            for _ in range(12):
                async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    assert resp.status == 200 and resp.headers["X-Upwatch-Worker"] == "0"
                    assert json.loads(await resp.text())["scheduler"] is True
                async with session.get(f"http://127.0.0.1:{port}/api/v1/services",
                                       headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
                    assert resp.status == 200 and resp.headers["X-Upwatch-Worker"] == "0"
                    assert "workers-shop" in {s["name"] for s in (await resp.json())["items"]}

        # One batch with one Idempotency-Key sent at once on 12 connections: stored once across processes.
        results = await asyncio.gather(*(_post(port, key, BATCH, {"Idempotency-Key": "same-batch"})
                                         for _ in range(12)))
        assert {r[0] for r in results} == {202} and {r[2]["accepted"] for r in results} == {2}
        assert _count(database_url, "SELECT count(*) FROM request_logs WHERE path IN ('/a', '/b')") == 2

        # A worker killed is restarted (its spool is replayed by the new one) and answers again.
        workers[0].kill()
        answered = set()
        async with asyncio.timeout(60):
            while answered != {"0", "1"}:
                await asyncio.sleep(0.2)
                try:
                    status, worker, _ = await _post(port, key, [{"path": "/after-kill"}])
                except aiohttp.ClientError:
                    continue
                if status == 202:
                    answered.add(worker)
        replaced = [c for c in daemon.children() if "spawn_main" in " ".join(c.cmdline())]
        assert replaced and all(c.pid != workers[0].pid for c in replaced)

        # A revoked key is refused by every process (within the key cache's 5 s).
        async with (aiohttp.ClientSession() as session,
                    session.delete(f"http://127.0.0.1:{port}/api/v1/keys/{made['prefix']}",
                                   headers={"Authorization": f"Bearer {ADMIN}"}) as resp):
            assert resp.status in (200, 204), await resp.text()
        refused: set[str] = set()
        async with asyncio.timeout(60):
            while refused != {"0", "1"}:
                status, worker, _ = await _post(port, key, [{"path": "/revoked"}])
                if status == 401:
                    refused.add(worker)
                else:
                    refused.discard(worker)
                    await asyncio.sleep(0.2)
        later = [await _post(port, key, [{"path": "/revoked"}]) for _ in range(16)]
        assert {r[0] for r in later} == {401}
        children = daemon.children(recursive=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert "push worker exited, restarting it worker=1" in err.decode()
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, [p.pid for p in alive]  # no orphans
    assert gone


@pytest.mark.parametrize(("value", "message"), [
    ("0", "Input should be greater than or equal to 1"),
    ("33", "Input should be less than or equal to 32"),
    ("'2'", "Input should be a valid integer"),
    ("1.5", "Input should be a valid integer"),
    ("true", "Input should be a valid integer"),
])
def test_bad_worker_counts_are_refused_naming_file_line_and_key(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse(f"push:\n  listen: 127.0.0.1:8080\n  workers: {value}\n", "upwatch.yaml", {})
    text = str(caught.value)
    assert "upwatch.yaml:3" in text and "push.workers" in text and message in text, text


def test_one_worker_is_the_default() -> None:
    assert config.parse("push:\n  listen: 127.0.0.1:8080\n", "upwatch.yaml", {}).push.workers == 1


async def test_ctrl_c_to_the_process_group_stops_every_process_without_restarts(
        tmp_path: Path, database_url: str) -> None:
    port = targets.closed_port()
    cfg = tmp_path / "upwatch.yaml"
    cfg.write_text(f"endpoints: []\nprober:\n  data_dir: {tmp_path / 'data'}\n"
                   f"push:\n  listen: 127.0.0.1:{port}\n  workers: 3\n")
    proc = await _daemon(cfg, database_url, own_session=True)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len([c for c in children if "spawn_main" in " ".join(c.cmdline())]) == 2
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert "restarting" not in err.decode() and "killed" not in err.decode(), err.decode()
    assert err.decode().count("push worker stopped") == 2
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, [p.pid for p in alive]


async def test_a_revoke_reaches_every_following_key_cache_at_once(database_url: str, pool: Any) -> None:
    """Two processes' key caches, one hour long: only the NOTIFY of the revoke can make the second refuse."""
    async with pool.connection() as conn:
        await keys.create_service(conn, "follow-shop")
        raw, made = await keys.create_key(conn, "follow-shop", "test")
    here, there = keys.KeyStore(pool, ttl_s=3600), keys.KeyStore(pool, ttl_s=3600)
    following = asyncio.create_task(there.follow(database_url))
    try:
        await asyncio.wait_for(there.following.wait(), 30)
        assert await here.authenticate(raw) is not None and await there.authenticate(raw) is not None
        async with pool.connection() as conn:
            await keys.revoke_key(conn, made["prefix"])
        for _ in range(600):  # the notification arrives within milliseconds; bounded all the same
            if await there.authenticate(raw) is None:
                break
            await asyncio.sleep(0.05)
        assert await there.authenticate(raw) is None
        assert await here.authenticate(raw) is not None  # not following: its hour-long cache still says yes
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await here.close()
        await there.close()
