"""Fixtures for prober tests: endpoint rows, and a PostgreSQL server a test may stop and restart."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from upwatch.embedded import EmbeddedPostgres


@pytest.fixture
def endpoint_ids(database_url: str) -> list[int]:
    """Three endpoint rows in the test database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        return [conn.execute("INSERT INTO endpoints (name, kind) VALUES (%s, 'http') RETURNING id",
                             (f"ep{i}",)).fetchone()[0] for i in range(3)]  # type: ignore[index]


@pytest.fixture(scope="session")
def own_pg_template() -> Iterator[Path]:
    """An initdb'd data directory, copied for each test that owns a server (initdb is the slow part)."""
    root = Path(tempfile.mkdtemp(prefix="upwatch-ownpg-"))
    root.chmod(0o755)  # the server's user (embedded_postgres, as root) must enter it; mkdtemp makes 0700
    data = root / "data"
    server = EmbeddedPostgres(data, settings={"fsync": "off"})
    server.start()
    server.stop()
    yield data
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def own_pg(own_pg_template: Path, server_dir: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL server owned by this test alone, so the test may stop and restart it."""

    data = server_dir / "pg"
    shutil.copytree(own_pg_template, data, symlinks=True)
    server = EmbeddedPostgres(data, settings={"fsync": "off"})
    _fix_owner(own_pg_template, data)
    server.start()
    yield server
    server.stop()


def _fix_owner(source: Path, target: Path) -> None:
    st = source.stat()
    for root, dirs, files in os.walk(target):
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), st.st_uid, st.st_gid)
    os.chown(target, st.st_uid, st.st_gid)
    target.chmod(0o700)


def insert_endpoints(url: str, count: int) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [conn.execute("INSERT INTO endpoints (name, kind) VALUES (%s, 'http') RETURNING id",
                             (f"ep{i}",)).fetchone()[0] for i in range(count)]  # type: ignore[index]


def result_row(endpoint_id: int, seq: int, **extra: Any) -> dict[str, Any]:
    """A probe_results row whose time encodes its sequence number."""
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return {"time": base + dt.timedelta(milliseconds=seq), "endpoint_id": endpoint_id, "ok": True,
            "latency_ms": float(seq), **extra}


def fetch(url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql.SQL(query), args or None).fetchall()  # type: ignore[arg-type]
