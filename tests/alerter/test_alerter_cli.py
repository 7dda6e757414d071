"""`upwatch alerts …` and `upwatch silence …` as an operator runs them: a few through a real
process (exit codes, stderr), the rest through the same parser and handlers in-process (faster)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alerting_support import Mailbox, SmtpServer, add_endpoint, add_results, alerting, free_port
from psycopg_pool import AsyncConnectionPool

from alerter import evaluate, outbox

REPO = Path(__file__).parents[2]


def upwatch(*args: str, config: Path, database_url: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(REPO), **env}
    if database_url:
        environ["UPWATCH_DATABASE_URL"] = database_url
    return subprocess.run([sys.executable, "-m", "upwatch.cli", "--config", str(config), *args],
                          capture_output=True, text=True, env=environ, cwd=config.parent, timeout=60, check=False)


async def cli(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> tuple[int, str, str]:
    """Parse and run like `upwatch --config CONFIG ARGV…`, in a thread (handlers run their own loop)."""
    from upwatch.cli import build_parser

    args = build_parser().parse_args(["--config", str(config), *argv])
    code = await asyncio.to_thread(args.handler, args)
    out, err = capsys.readouterr()
    return int(code), out, err


def write_config(tmp_path: Path, smtp_port: int, extra: str = "") -> Path:
    path = tmp_path / "upwatch.yaml"
    path.write_text(f"alerting:\n  smtp:\n    host: 127.0.0.1\n    port: {smtp_port}\n"
                    f"    recipients: [oncall@example.test]\n    timeout: 2s\n{extra}")
    return path


async def test_alerts_list_shows_failed_delivery_with_the_servers_message(
        pool: AsyncConnectionPool, database_url: str, smtp: SmtpServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("UPWATCH_DATABASE_URL", database_url)
    smtp.mailbox.refuse["oncall@example.test"] = "550 5.1.1 no such user"
    cfg = alerting(smtp.port)
    await add_results(pool, await add_endpoint(pool, "api"), "fff")
    await evaluate.run_once(pool, cfg)
    await outbox.deliver_next(pool, cfg)
    config = write_config(tmp_path, smtp.port)
    code, out, err = await cli(capsys, config, "alerts", "list", "--state", "failed")
    assert code == 0, err
    header, line = out.splitlines()
    assert header.split()[:4] == ["ID", "CREATED", "(UTC)", "STATE"]
    assert "failed" in line and "[upwatch] DOWN api: timeout after 10 s" in line
    assert "oncall@example.test: 550 5.1.1 no such user" in line
    _, out, _ = await cli(capsys, config, "alerts", "list", "--state", "sent")
    assert out.strip() == "no alerts in state sent"


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


async def test_test_email_reports_a_refused_connection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    code, _, err = await cli(capsys, write_config(tmp_path, port), "alerts", "test-email")
    assert code == 1
    assert err.strip() == (f"upwatch: test email failed: cannot reach SMTP server 127.0.0.1:{port}: "
                           f"Connect call failed ('127.0.0.1', {port})")


async def test_silence_add_list_remove_and_it_silences(pool: AsyncConnectionPool, database_url: str,
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("UPWATCH_DATABASE_URL", database_url)
    config = write_config(tmp_path, 9)
    code, out, err = await cli(capsys, config, "silence", "add", "--endpoint", "api", "--for", "2h", "--name", "deploy")
    assert code == 0, err
    assert out.startswith("silence 1 added: ")
    _, out, _ = await cli(capsys, config, "silence", "list")
    assert out.splitlines()[1].split()[:2] == ["1", "deploy"] and "api" in out
    await add_results(pool, await add_endpoint(pool, "api"), "fff")
    await evaluate.run_once(pool, alerting())
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT state, last_error FROM alerts")
        assert await cur.fetchall() == [("suppressed", "silenced by maintenance window 'deploy'")]
    assert await cli(capsys, config, "silence", "remove", "1") == (0, "silence 1 removed\n", "")
    assert await cli(capsys, config, "silence", "remove", "1") == (1, "", "upwatch: no silence with id 1\n")
    assert await cli(capsys, config, "silence", "list") == (0, "no silences\n", "")


async def test_silence_add_needs_a_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli(capsys, write_config(tmp_path, 9), "silence", "add") == (
        2, "", "upwatch: name what to silence: --endpoint NAME, --tag TAG or --all\n")
