"""Shared fixtures: one real PostgreSQL per test session (embedded, or
$UPWATCH_TEST_DATABASE_URL), and a fresh migrated database per test cloned
from a template, so tests are independent and fast."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from upwatch.embedded import EmbeddedPostgres
from upwatch.migrate import migrate

# One template per pytest-xdist worker: on a shared $UPWATCH_TEST_DATABASE_URL server the workers would
# otherwise drop and re-create each other's template.
TEMPLATE = f"upwatch_test_template_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
_counter = itertools.count()


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """Tests that run a CLI or service in-process call upwatch.logs.setup(), which binds a root
    StreamHandler to the sys.stderr of that moment: pytest's capture stream for that test. A later
    log record from a server thread (aiosmtpd logging a reset STARTTLS connection) then wrote to
    the closed stream and printed "--- Logging error ---". Put the root logger back after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class Server:
    """A PostgreSQL server the tests may create databases on."""

    def __init__(self, admin_url: str, url_for, embedded: EmbeddedPostgres | None):  # type: ignore[no-untyped-def]
        self.admin_url = admin_url
        self.url_for = url_for
        self.embedded = embedded

    def create_database(self, template: str | None = TEMPLATE) -> tuple[str, str]:
        name = f"upwatch_test_{os.getpid()}_{next(_counter)}"
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for attempt in range(50):
                try:
                    conn.execute(query)
                    break
                except psycopg.errors.ObjectInUse:  # a TimescaleDB worker still leaving the template
                    if attempt == 49:
                        raise
                    time.sleep(0.1)
        return name, self.url_for(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                conn.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false ALLOW_CONNECTIONS true")
                             .format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def freeze_template(self, name: str) -> None:
        """Make `name` a template nobody connects to. TimescaleDB's background
        workers keep a session open on every database with the extension, and
        CREATE DATABASE ... TEMPLATE refuses a source that has sessions."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")
                         .format(sql.Identifier(name)))
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         " WHERE datname = %s AND pid <> pg_backend_pid()", (name,))

    def timescaledb(self, url: str) -> bool:
        with psycopg.connect(url) as conn:
            return conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is not None


def _replace_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    external = os.environ.get("UPWATCH_TEST_DATABASE_URL")
    if external:
        server = Server(external, lambda name: _replace_db(external, name), None)
    else:
        data_root = server_root()
        embedded = EmbeddedPostgres(data_root / "data",
                                    settings={"fsync": "off", "synchronous_commit": "off", "max_connections": "300"})
        embedded.start()
        server = Server(embedded.url_for("postgres"), embedded.url_for, embedded)
    server.drop_database(TEMPLATE)
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    asyncio.run(migrate(server.url_for(TEMPLATE)))
    server.freeze_template(TEMPLATE)
    yield server
    server.drop_database(TEMPLATE)
    if server.embedded is not None:
        server.embedded.stop()
        shutil.rmtree(server.embedded.data_dir.parent, ignore_errors=True)


@pytest.fixture
def database_url(pg_server: Server) -> Iterator[str]:
    """A fresh, migrated database for this test."""
    name, url = pg_server.create_database()
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def empty_database_url(pg_server: Server) -> Iterator[str]:
    """A fresh database with no schema at all."""
    name, url = pg_server.create_database(template=None)
    yield url
    pg_server.drop_database(name)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    from upwatch.db import open_pool

    p = await open_pool(database_url, max_size=5, name=f"test-{uuid.uuid4().hex[:6]}")
    yield p
    await p.close()


def server_root(prefix: str = "upwatch-test-pg-") -> Path:
    """A new directory the embedded server's user can enter. Not under pytest's tmp dir: that is
    0700 (and reset so by every new pytest session), and as root the server runs as embedded_postgres."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)  # ours, just made; mkdtemp makes it 0700
    return path


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """A directory for a test's own PostgreSQL server, reachable by the server's user."""
    path = server_root("upwatch-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fixtures_dir() -> Path:
    return Path(__file__).parent / "fixtures"
