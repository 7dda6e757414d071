"""`upwatch alerts …` and `upwatch silence …` as an operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from alerter import evaluate, outbox
from alerting_support import Mailbox, SmtpServer, add_endpoint, add_results, alerting, free_port

REPO = Path(__file__).parents[2]


def upwatch(*args: str, config: Path, database_url: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(REPO), **env}
    if database_url:
        environ["UPWATCH_DATABASE_URL"] = database_url
    return subprocess.run([sys.executable, "-m", "upwatch.cli", "--config", str(config), *args],
                          capture_output=True, text=True, env=environ, cwd=config.parent, timeout=60)


def write_config(tmp_path: Path, smtp_port: int, extra: str = "") -> Path:
    path = tmp_path / "upwatch.yaml"
    path.write_text(f"alerting:\n  smtp:\n    host: 127.0.0.1\n    port: {smtp_port}\n"
                    f"    recipients: [oncall@example.test]\n    timeout: 2s\n{extra}")
    return path


async def test_alerts_list_shows_failed_delivery_with_the_servers_message(pool: AsyncConnectionPool,
                                                                          database_url: str, smtp: SmtpServer,
                                                                          tmp_path: Path) -> None:
    smtp.mailbox.refuse["oncall@example.test"] = "550 5.1.1 no such user"
    cfg = alerting(smtp.port)
    await add_results(pool, await add_endpoint(pool, "api"), "fff")
    await evaluate.run_once(pool, cfg)
    await outbox.deliver_next(pool, cfg)
    config = write_config(tmp_path, smtp.port)
    result = upwatch("alerts", "list", "--state", "failed", config=config, database_url=database_url)
    assert result.returncode == 0, result.stderr
    header, line = result.stdout.splitlines()
    assert header.split()[:4] == ["ID", "CREATED", "(UTC)", "STATE"]
    assert "failed" in line and "[upwatch] DOWN api: timeout after 10 s" in line
    assert "oncall@example.test: 550 5.1.1 no such user" in line
    empty = upwatch("alerts", "list", "--state", "sent", config=config, database_url=database_url)
    assert empty.stdout.strip() == "no alerts in state sent"


def test_test_email_is_delivered(smtp: SmtpServer, tmp_path: Path) -> None:
    result = upwatch("alerts", "test-email", config=write_config(tmp_path, smtp.port))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"test email accepted by 127.0.0.1:{smtp.port} for oncall@example.test"
    assert smtp.mailbox.subjects() == ["[upwatch] test message"]


def test_test_email_reports_the_smtp_dialogue_error(tmp_path: Path) -> None:
    server = SmtpServer(free_port(), Mailbox(), password="right")
    server.start()
    try:
        config = write_config(tmp_path, server.port)
        result = upwatch("alerts", "test-email", config=config, UPWATCH_SMTP_USER="upwatch",
                         UPWATCH_SMTP_PASSWORD="wrong")
    finally:
        server.stop()
    assert result.returncode == 1
    assert result.stderr.strip() == (f"upwatch: test email failed: authentication failed at 127.0.0.1:{server.port}: "
                                     "535 5.7.8 Authentication credentials invalid")
    assert "wrong" not in result.stderr


def test_test_email_reports_a_refused_connection(tmp_path: Path) -> None:
    port = free_port()
    result = upwatch("alerts", "test-email", config=write_config(tmp_path, port))
    assert result.returncode == 1
    assert result.stderr.strip() == f"upwatch: test email failed: cannot reach SMTP server 127.0.0.1:{port}: " \
                                    "Connect call failed ('127.0.0.1', " + str(port) + ")"


async def test_silence_add_list_remove_and_it_silences(pool: AsyncConnectionPool, database_url: str,
                                                       tmp_path: Path) -> None:
    config = write_config(tmp_path, 9)
    added = upwatch("silence", "add", "--endpoint", "api", "--for", "2h", "--name", "deploy",
                    config=config, database_url=database_url)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("silence 1 added: ")
    listed = upwatch("silence", "list", config=config, database_url=database_url)
    assert listed.stdout.splitlines()[1].split()[:3] == ["1", "deploy", listed.stdout.splitlines()[1].split()[2]]
    assert "api" in listed.stdout
    await add_results(pool, await add_endpoint(pool, "api"), "fff")
    await evaluate.run_once(pool, alerting())
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT state, last_error FROM alerts")
        assert await cur.fetchall() == [("suppressed", "silenced by maintenance window 'deploy'")]
    removed = upwatch("silence", "remove", "1", config=config, database_url=database_url)
    assert removed.returncode == 0 and removed.stdout.strip() == "silence 1 removed"
    again = upwatch("silence", "remove", "1", config=config, database_url=database_url)
    assert again.returncode == 1 and again.stderr.strip() == "upwatch: no silence with id 1"
    assert upwatch("silence", "list", config=config, database_url=database_url).stdout.strip() == "no silences"


def test_silence_add_needs_a_target(tmp_path: Path) -> None:
    result = upwatch("silence", "add", config=write_config(tmp_path, 9))
    assert result.returncode == 2
    assert result.stderr.strip() == "upwatch: name what to silence: --endpoint NAME, --tag TAG or --all"
