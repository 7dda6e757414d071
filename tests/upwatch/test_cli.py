import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from upwatch.embedded import EmbeddedPostgres

REPO = Path(__file__).parents[2]
EXAMPLE = REPO / "examples" / "upwatch.yaml"
CONFIG_DIR = REPO / "tests" / "fixtures" / "config"


def upwatch(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "upwatch.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd or REPO, timeout=timeout, check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_check_config_prints_endpoints_and_exits_zero() -> None:
    result = upwatch("--config", str(EXAMPLE), "check-config")
    assert result.returncode == 0, result.stderr
    assert "upwatch-healthz" in result.stdout and "OK, 4 endpoints" in result.stdout


def test_check_config_reports_problems_and_exits_one() -> None:
    result = upwatch("--config", str(CONFIG_DIR / "bad-unknown-key.yaml"), "check-config")
    assert result.returncode == 1
    assert "bad-unknown-key.yaml:4: endpoints[0].intervall: unknown key 'intervall'" in result.stderr


BAD = str(CONFIG_DIR / "bad-unknown-key.yaml")
BAD_MESSAGE = "bad-unknown-key.yaml:4: endpoints[0].intervall: unknown key 'intervall'"


@pytest.mark.parametrize("argv", [
    ["-m", "upwatch.cli", "--config", BAD, "prober"],
    ["-m", "upwatch.cli", "prober", "--config", BAD],
    ["-m", "upwatch.cli", "db", "migrate", "-c", BAD, "--log-level", "ERROR"],
    ["-m", "prober", "--config", BAD],
    ["-m", "detector", "--config", BAD],
    ["-m", "alerter", "--config", BAD],
    ["-m", "alerter", "--log-level", "INFO", "--config", BAD],
], ids=["before", "after", "nested", "python-m-prober", "python-m-detector", "python-m-alerter", "two-options"])
def test_global_options_work_before_or_after_the_subcommand(argv: list[str]) -> None:
    result = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=REPO, timeout=60,
                            check=False)
    assert result.returncode == 2
    assert BAD_MESSAGE in result.stderr, result.stderr  # the config was read, not an argparse usage error


def test_check_config_takes_config_after_the_subcommand() -> None:
    result = upwatch("check-config", "--config", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert f"{EXAMPLE}: OK, 4 endpoints" in result.stdout


def test_config_from_env_variable_and_dotenv(tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text("endpoints:\n  - name: x\n    url: ${TARGET}\n")
    (tmp_path / ".env").write_text("TARGET=http://127.0.0.1:9/\n")
    result = upwatch("check-config", env={"UPWATCH_CONFIG": str(tmp_path / "cfg.yaml")}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "http://127.0.0.1:9/" in result.stdout


def test_unreachable_database_is_a_clear_error_without_traceback(tmp_path: Path) -> None:
    port = free_port()
    result = upwatch("--config", str(EXAMPLE), "db", "info",
                     env={"UPWATCH_DATABASE_URL": f"postgresql://upwatch@127.0.0.1:{port}/upwatch"})
    assert result.returncode == 2
    assert f"cannot connect to database at 127.0.0.1:{port}/upwatch" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_migrate_and_info(database_url: str) -> None:
    env = {"UPWATCH_DATABASE_URL": database_url}
    migrated = upwatch("--config", str(EXAMPLE), "db", "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert "(up to date)" in migrated.stdout
    info = upwatch("--config", str(EXAMPLE), "db", "info", env=env)
    assert info.returncode == 0, info.stderr
    assert "engine:      PostgreSQL" in info.stdout and "probe_results" in info.stdout


def embedded_config(directory: Path, port: int) -> Path:
    """The example config on port `port`, with its embedded database in `directory`/pgdata."""
    text = EXAMPLE.read_text().replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace(
        "storage:\n", f"storage:\n  embedded:\n    data_dir: {directory / 'pgdata'}\n")
    path = directory / "upwatch.yaml"
    path.write_text(text)
    return path


def test_taken_listen_port_fails_at_once_before_the_database_starts(server_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = embedded_config(server_dir, port)
        for command in (["up"], ["prober"]):
            result = upwatch("--config", str(config), *command)
            assert result.returncode == 2
            assert f"upwatch: push.listen 127.0.0.1:{port}: Address already in use" in result.stderr
            assert "Traceback" not in result.stderr
    assert not (server_dir / "pgdata").exists()  # failed before starting (or creating) the embedded database


def test_db_info_prints_a_working_psql_command(server_dir: Path) -> None:
    config = embedded_config(server_dir, free_port())
    running = EmbeddedPostgres(server_dir / "pgdata", settings={"fsync": "off"})
    running.start()  # as `upwatch up` would have; db info reuses it and leaves it running
    try:
        info = upwatch("--config", str(config), "db", "info")
        assert info.returncode == 0, info.stderr
        psql = next(line for line in info.stdout.splitlines() if line.startswith("psql:")).split(maxsplit=1)[1]
        password = running.passfile.read_text().strip().rsplit(":", 1)[1]
        assert password not in info.stdout + info.stderr
        opened = subprocess.run([*shlex.split(psql), "-X", "-At", "-c", "SELECT current_database()"],
                                capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"},
                                check=False)
        assert (opened.returncode, opened.stdout.strip()) == (0, "upwatch"), opened.stderr
    finally:
        running.stop()


def test_up_runs_on_the_embedded_database_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = EXAMPLE.read_text().replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    (tmp_path / "upwatch.yaml").write_text(config)
    proc = subprocess.Popen([sys.executable, "-m", "upwatch.cli", "up"], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "UPWATCH_LOG_LEVEL": "INFO"})
    try:
        lines = []
        deadline = time.monotonic() + 40
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "upwatch started" in line or not line:
                break
        assert any("upwatch started" in line for line in lines), "".join(lines)
        lines += [proc.stdout.readline() for _ in range(4)]  # the lines saying where to look
        banner = "".join(lines)
        assert f"listening  http://127.0.0.1:{port}" in banner and "/metrics" in banner, banner
        psql = next(line for line in lines if line.startswith("  psql ")).split(maxsplit=1)[1].strip()
        assert "password=" not in psql
        opened = subprocess.run([*shlex.split(psql), "-X", "-At", "-c", "SELECT count(*) FROM endpoints"],
                                capture_output=True, text=True, timeout=30, check=False)
        assert opened.returncode == 0 and opened.stdout.strip() in {"0", "4"}, opened.stderr
        socket_dir = tmp_path / ".upwatch" / "pgdata"
        with psycopg.connect(f"postgresql://postgres@/upwatch?host={socket_dir}"
                             f"&passfile={socket_dir / 'upwatch.pgpass'}") as conn:
            deadline = time.monotonic() + 10
            while conn.execute("SELECT count(*) FROM endpoints").fetchone() != (4,) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert conn.execute("SELECT count(*) FROM endpoints").fetchone() == (4,)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, output
        assert "embedded postgres stopped" in output
        password = (socket_dir / "upwatch.pgpass").read_text().strip().rsplit(":", 1)[1]
        assert password not in banner + output  # INFO logs and the start lines name the passfile, never the secret
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        remove_data(tmp_path / ".upwatch" / "pgdata")


def remove_data(data_dir: Path) -> None:
    """As root, a data dir under pytest's 0700 tmp dir lives in /var/lib/upwatch/embedded, linked from there."""
    if data_dir.is_symlink():
        shutil.rmtree(data_dir.resolve(), ignore_errors=True)


def test_the_command_line_loads_no_plotting_or_learning_libraries() -> None:
    """Every `upwatch` command imports upwatch.cli: matplotlib (PDF reports), pandas and scikit-learn
    (the detector) load only where they are used, so a command starts in a fraction of a second."""
    code = ("import sys, upwatch.cli; print(sorted({m.split('.')[0] for m in sys.modules}"
            " & {'matplotlib', 'numpy', 'pandas', 'sklearn', 'distributed', 'apprise'}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
