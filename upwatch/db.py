"""Database access: psycopg 3 async pool, connection checks with readable errors."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

logger = logging.getLogger(__name__)


# NOTIFY channel the prober's writer signals after each committed batch (payload: the table
# name); the detector listens to score new rows at once.
ROWS_CHANNEL = "upwatch_rows"


def error_summary(error: BaseException) -> str:
    """The first line of a library error, for one-line log fields and messages."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class DatabaseUnavailable(Exception):
    """The database could not be reached; the message names where we tried."""


def describe(url: str) -> str:
    """host:port/dbname of a URL or conninfo string, without credentials."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        parts = urlsplit(url)
        host = parse_qs(parts.query).get("host", [parts.hostname or "?"])[0]
        return f"{host}:{parts.port or 5432}{parts.path or ''}"
    return f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}/{info.get('dbname', '')}"


async def connect(url: str, *, autocommit: bool = True, timeout_s: float = 5.0) -> psycopg.AsyncConnection:
    """One connection; raises DatabaseUnavailable with host/port instead of a traceback."""
    try:
        return await psycopg.AsyncConnection.connect(url, autocommit=autocommit, connect_timeout=max(1, int(timeout_s)))
    except psycopg.OperationalError as e:
        raise DatabaseUnavailable(f"cannot connect to database at {describe(url)}: {error_summary(e)}") from None


async def wait_until_reachable(url: str, *, attempts: int = 5, delay_s: float = 1.0) -> None:
    """Retry a connection a few times (a database starting with us is normal)."""
    for remaining in range(attempts - 1, -1, -1):
        try:
            conn = await connect(url)
        except DatabaseUnavailable as e:
            if remaining == 0:
                raise
            logger.warning("database unreachable, %d retries remaining: %s", remaining, e)
            await asyncio.sleep(delay_s)
        else:
            await conn.close()
            return


async def open_pool(url: str, *, max_size: int = 10, name: str = "upwatch") -> AsyncConnectionPool:
    """An opened pool whose connections autocommit unless a transaction is opened."""
    pool = new_pool(url, max_size=max_size, name=name)
    await pool.open(wait=True, timeout=10.0)
    return pool


def new_pool(url: str, *, max_size: int = 10, name: str = "upwatch") -> AsyncConnectionPool:
    """Such a pool, not opened yet: until it is, taking a connection raises PoolClosed (an OperationalError)."""

    async def configure(conn: psycopg.AsyncConnection) -> None:
        await conn.set_autocommit(True)

    return AsyncConnectionPool(url, min_size=1, max_size=max_size, name=name, open=False,
                               configure=configure, timeout=30.0)


async def timescaledb_active(conn: psycopg.AsyncConnection) -> bool:
    """Whether the timescaledb extension is installed in this database."""
    cur = await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    return await cur.fetchone() is not None
