"""The two ways the writer puts a batch into a table: plain COPY, and an idempotent staged insert for replays."""

from __future__ import annotations

import functools
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.string import StrDumperUnknown

from upwatch.rows import TABLES, Batch, JsonText, Table, json_text, take_ids

# Registered for the exact type: psycopg otherwise looks a str subclass up through its MRO on every
# value, which made COPY of JSON columns slower than the Jsonb wrapper it replaces.
psycopg.adapters.register_dumper(JsonText, StrDumperUnknown)


def batches(table: Table, rows: list[dict[str, Any]]) -> list[Batch]:
    """Consecutive rows with the same columns form one batch (missing columns take their defaults).

    Idempotency keys are filled in; raises ValueError for an unknown column (a bug in the caller)."""
    out: list[Batch] = []
    for row in rows:
        # The prober offers one row per check: the layout of a key set is worked out once per process.
        columns, json_at, key_at = _layout(table, tuple(row))
        values = [row.get(c) for c in columns]
        if values[key_at] is None:
            values[key_at] = new_id()
        for i in json_at:
            values[i] = json_text(values[i])
        if not out or out[-1].columns != columns:
            out.append(Batch(table.name, columns, []))
        out[-1].rows.append(tuple(values))
    return out


@functools.lru_cache(maxsize=256)
def _layout(table: Table, keys: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[int, ...], int]:
    """(columns in table order, positions of the JSON columns, position of the idempotency key) for rows
    with these keys; raises ValueError for an unknown column."""
    row = table.prepare(dict.fromkeys(keys, 0))  # its check of the column names
    columns = table.order({*row, table.idempotency_key})
    json_at = tuple(i for i, c in enumerate(columns) if c in table.json_columns)
    return columns, json_at, columns.index(table.idempotency_key)


def new_id() -> str:
    """A fresh idempotency key (a version 4 UUID as 32 hex digits), from upwatch.rows.take_ids' block."""
    return take_ids(1)[0]


def _names(table: str, columns: tuple[str, ...]) -> tuple[sql.Composable, sql.Composable]:
    return sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))


async def copy_rows(conn: psycopg.AsyncConnection, batch: Batch) -> None:
    """COPY the rows of `batch` (in the caller's transaction, or on an autocommit connection as one
    statement, committed before this returns)."""
    async with conn.cursor().copy(_copy_statement(conn, batch.table, batch.columns)) as copy:
        for row in batch.rows:
            await copy.write_row(row)


_COPY_STATEMENTS: dict[tuple[str, tuple[str, ...], str], bytes] = {}


def _copy_statement(conn: psycopg.AsyncConnection, table: str, columns: tuple[str, ...]) -> bytes:
    # Composed once per table, columns and client encoding: quoting 22 identifiers through psycopg.sql
    # for every COPY cost ~150 us a flush in a profile, as much as the rows of a small flush
    # (docs/push.md, Session 11).
    key = (table, columns, conn.info.encoding)
    statement = _COPY_STATEMENTS.get(key)
    if statement is None:
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(*_names(table, columns)).as_bytes(conn)
        _COPY_STATEMENTS[key] = statement
    return statement


async def insert_idempotent(conn: psycopg.AsyncConnection, batch: Batch) -> None:
    """COPY into a temporary table, then INSERT ... ON CONFLICT DO NOTHING (and, for STORED_MATCH tables,
    only the rows not stored already): idempotent for replays."""
    table, columns = _names(batch.table, batch.columns)
    json_at = _json_at(batch)
    await conn.execute(sql.SQL("CREATE TEMPORARY TABLE upwatch_stage ON COMMIT DROP AS "
                               "SELECT {} FROM {} WITH NO DATA").format(columns, table))
    async with conn.cursor().copy(sql.SQL("COPY upwatch_stage ({}) FROM STDIN").format(columns)) as copy:
        for stored in batch.rows:
            await copy.write_row(_as_json_text(stored, json_at))
    match = STORED_MATCH.get(batch.table)
    unstored: sql.Composable = sql.SQL("")
    if match is not None:
        unstored = sql.SQL(" WHERE NOT EXISTS (SELECT 1 FROM {} t WHERE {})").format(table, sql.SQL(" AND ").join(
            sql.SQL("t.{c} = upwatch_stage.{c}").format(c=sql.Identifier(c)) for c in match))
    await conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM upwatch_stage{} ON CONFLICT DO NOTHING")
                       .format(table, columns, columns, unstored))


async def insert_row(conn: psycopg.AsyncConnection, single: Batch) -> None:
    """INSERT the one row of `single` ... ON CONFLICT DO NOTHING, unless a STORED_MATCH table holds it
    already: insert_idempotent for one row, usable in a savepoint (no temporary table)."""
    table, columns = _names(single.table, single.columns)
    row = _as_json_text(single.rows[0], _json_at(single))
    match = STORED_MATCH.get(single.table)
    if match is not None:
        cur = await conn.execute(sql.SQL("SELECT 1 FROM {} WHERE {}").format(table, sql.SQL(" AND ").join(
            sql.SQL("{} = %s").format(sql.Identifier(c)) for c in match)),
            [row[single.columns.index(c)] for c in match])
        if await cur.fetchone() is not None:
            return
    await conn.execute(sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING").format(
        table, columns, sql.SQL(", ").join(sql.Placeholder() * len(single.columns))), row)


def _json_at(batch: Batch) -> list[int]:
    spec = TABLES[batch.table]
    return [i for i, c in enumerate(batch.columns) if c in spec.json_columns]


def _as_json_text(stored: tuple[Any, ...], json_at: list[int]) -> tuple[Any, ...]:
    """A row with its JSON columns as JSON text: rows read back from the spool hold plain JSON values."""
    if not json_at:
        return stored
    return tuple(json_text(v) if i in json_at and not isinstance(v, JsonText) else v for i, v in enumerate(stored))


# Tables whose idempotency key has no unique index (it cost too much per row, sql/0190): a replayed row
# is skipped when a row with these values is stored, found through an index on the leading columns.
STORED_MATCH = {"request_logs": ("service_id", "time", "ingest_id")}
