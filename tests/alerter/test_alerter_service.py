"""The alerter as it runs: the service loops in-process, and `python -m alerter` killed mid-delivery."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from alerting_support import SmtpServer, add_endpoint, add_results, alerting, rows, wait_for
from psycopg_pool import AsyncConnectionPool

from alerter import service
from upwatch.config import Config
from upwatch.runtime import Runtime

REPO = Path(__file__).parents[2]


async def test_service_turns_failing_checks_into_an_email_and_stops_cleanly(pool: AsyncConnectionPool,
                                                                           database_url: str,
                                                                           smtp: SmtpServer) -> None:
    config = Config(alerting=alerting(smtp.port))
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(Runtime(config, Path("upwatch.yaml"), database_url, pool), stop))
    api = await add_endpoint(pool, "api")
    await add_results(pool, api, "fff")
    await wait_for(lambda: smtp.messages, timeout_s=5)
    await add_results(pool, api, "ss")
    await wait_for(lambda: len(smtp.messages) == 2, timeout_s=5)
    stop.set()
    await asyncio.wait_for(task, timeout=2)
    down, resolved = smtp.mailbox.subjects()
    assert down == "[upwatch] DOWN api: timeout after 10 s"
    assert resolved.startswith("[upwatch] RESOLVED api: up again after ")


def start_alerter(config: Path, cwd: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(cwd / "alerter.log", "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "alerter", "--config", str(config)], cwd=cwd, env=env,
                                stdout=subprocess.DEVNULL, stderr=log)


@pytest.mark.timeout(60)
async def test_killed_between_send_and_mark_sent_repeats_at_most_that_one_message(
        pool: AsyncConnectionPool, database_url: str, smtp: SmtpServer, tmp_path: Path) -> None:
    """The documented bound: SIGKILL after the server accepted a message but before the outbox row
    was marked sent makes that one message go out again after restart; nothing else repeats, nothing is lost."""
    config = tmp_path / "upwatch.yaml"
    routes = "".join(f"    - endpoints: [ep{i}]\n      recipients: [team{i}@example.test]\n" for i in range(3))
    config.write_text(
        f"storage:\n  database_url: {database_url}\n"
        f"alerting:\n  group_wait: 0s\n  evaluate_interval: 100ms\n"
        f"  smtp:\n    host: 127.0.0.1\n    port: {smtp.port}\n    timeout: 5s\n"
        f"  delivery:\n    poll_interval: 100ms\n    backoff: 100ms\n  routes:\n{routes}")
    for i in range(3):
        await add_results(pool, await add_endpoint(pool, f"ep{i}"), "fff")
    first = start_alerter(config, tmp_path)
    smtp.mailbox.on_message = lambda _: os.kill(first.pid, signal.SIGKILL)  # dies before it hears "250"
    try:
        await wait_for(lambda: first.poll() is not None, timeout_s=20)
    finally:
        first.kill()
    assert len(smtp.messages) == 1
    assert [r["state"] for r in await rows(pool)] == ["pending"] * 3  # the accepted one is not marked sent
    smtp.mailbox.on_message = None
    second = start_alerter(config, tmp_path)
    try:
        await wait_for(lambda: len(smtp.messages) >= 4, timeout_s=20)
        await wait_for(lambda: rows(pool, "state = 'sent'"), timeout_s=5)
        await wait_for(lambda: _all_sent(pool), timeout_s=5)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=10) == 0
    counts = collections.Counter(rcpts[0] for _, rcpts in smtp.mailbox.envelopes)
    assert sorted(counts.values()) == [1, 1, 2]  # exactly one repeat: the message in flight at the kill
    assert set(counts) == {f"team{i}@example.test" for i in range(3)}


async def _all_sent(pool: AsyncConnectionPool) -> bool:
    return {r["state"] for r in await rows(pool)} == {"sent"}
