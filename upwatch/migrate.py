"""Apply sql/NNNN_*.sql in order, each in its own transaction, once per database.

An advisory lock serialises concurrent callers (two daemons starting
together); the timescaledb extension is created first when the server has it.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql

from upwatch.db import connect, error_summary, timescaledb_active

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "sql"
LOCK_ID = 0x7570_7761_7463_68  # "upwatch"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """A migration failed and was rolled back; the message names it."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Migration files in version order; refuses duplicates and misnamed files."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"{path}: migration files are named NNNN_verb_object.sql")
        version = int(m.group(1))
        if version in found:
            raise MigrationError(f"{path}: version {version} is also used by {found[version].path.name}")
        found[version] = Migration(version, path.stem, path)
    return [found[v] for v in sorted(found)]


async def migrate(url: str, *, timescaledb: Literal["auto", "require", "off"] = "auto",
                  directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Bring the database up to date; return the names of migrations applied now."""
    conn = await connect(url)
    try:
        await conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
        try:
            if timescaledb != "off":
                await _enable_timescaledb(url, required=timescaledb == "require")
            return await _migrate_locked(conn, directory)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
    finally:
        await conn.close()


async def _migrate_locked(conn: psycopg.AsyncConnection, directory: Path) -> list[str]:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    cur = await conn.execute("SELECT version FROM schema_migrations")
    done = {row[0] for row in await cur.fetchall()}
    applied = []
    for migration in discover(directory):
        if migration.version in done:
            continue
        try:
            async with conn.transaction():
                await conn.execute(migration.path.read_text(encoding="utf-8").encode())
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                                   (migration.version, migration.name))
        except psycopg.Error as e:
            raise MigrationError(f"migration {migration.name} failed and was rolled back: {e}") from None
        logger.info("migration applied name=%s", migration.name)
        applied.append(migration.name)
    await _set_reader_password(conn)
    return applied


async def _enable_timescaledb(url: str, *, required: bool) -> None:
    """Create the extension on a connection of its own (the caller holds the migration lock on another):
    TimescaleDB that is installed but not in shared_preload_libraries fails with FATAL, which closes
    the connection it was tried on."""
    conn = await connect(url)
    try:
        if await timescaledb_active(conn):
            return
        cur = await conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
        if await cur.fetchone() is None:
            if required:
                raise MigrationError("storage.timescaledb is 'require' but the server has no timescaledb extension")
            logger.info("timescaledb not available; using plain PostgreSQL tables and upwatch's retention job")
            return
        try:
            async with conn.transaction():
                await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        except psycopg.Error as e:
            if required:
                raise MigrationError(f"cannot create the timescaledb extension: {error_summary(e)}") from None
            logger.warning("timescaledb installed but cannot be enabled, using plain PostgreSQL tables"
                           " (add it to shared_preload_libraries to use it) error=%r", error_summary(e))
    finally:
        await conn.close()


async def _set_reader_password(conn: psycopg.AsyncConnection) -> None:
    password = os.environ.get("UPWATCH_READER_PASSWORD")
    if not password:
        return
    cur = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'upwatch_reader'")
    if await cur.fetchone() is not None:
        await conn.execute(sql.SQL("ALTER ROLE upwatch_reader PASSWORD {}").format(sql.Literal(password)))


async def applied_versions(url: str) -> list[int]:
    """Versions recorded in schema_migrations (empty when none)."""
    conn = await connect(url)
    try:
        cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        row = await cur.fetchone()
        if not row or not row[0]:
            return []
        cur = await conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        return [r[0] for r in await cur.fetchall()]
    finally:
        await conn.close()
