"""An acknowledged push survives its ingest worker (push.workers) being killed right after the 202."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg

REPO = Path(__file__).parents[2]
SERVER = """
import asyncio, sys
from pathlib import Path
from push import workers
from prober.writer import BatchWriter
from upwatch import config
from upwatch.db import open_pool
from upwatch.runtime import Runtime

async def main(url, port, spool):
    pool = await open_pool(url, max_size=4)
    # A long flush interval: without durable acknowledgement rows would sit in memory.
    writer = BatchWriter(pool, spool, flush_interval_s=30.0, batch_rows=100_000)
    await writer.start()
    cfg = config.parse("push:\\n  rate_limit_per_key: 100000\\n", "t.yaml", {})
    runner = await workers.serve(Runtime(cfg, Path("t.yaml"), url, pool), writer, "127.0.0.1", port, admin_token="t")
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_acknowledged_records_survive_sigkill(database_url: str, tmp_path: Path) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO services (name) VALUES ('shop')")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, database_url, str(port), str(tmp_path / "spool")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.stderr
        key = _admin_create_key(port)
        accepted = 0
        for _ in range(20):
            request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/logs", method="POST",
                                             data=b'[{"path": "/a"}, {"path": "/b"}]',
                                             headers={"Content-Type": "application/json", "X-API-Key": key})
            with urllib.request.urlopen(request, timeout=10) as resp:
                assert resp.status == 202
                accepted += 2
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM request_logs").fetchone() == (accepted,)


def _admin_create_key(port: int) -> str:
    import json

    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/services/shop/keys", method="POST", data=b"",
                                     headers={"Authorization": "Bearer t"})
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return str(json.load(resp)["key"])
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
