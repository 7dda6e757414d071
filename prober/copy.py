"""The two ways the writer puts a batch into a table: plain COPY, and an idempotent staged insert for replays."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.string import StrDumperUnknown

from upwatch.rows import TABLES, Batch, JsonText, Table, json_text, new_ids

# Registered for the exact type: psycopg otherwise looks a str subclass up through its MRO on every
# value, which made COPY of JSON columns slower than the Jsonb wrapper it replaces.
psycopg.adapters.register_dumper(JsonText, StrDumperUnknown)


def batches(table: Table, rows: list[dict[str, Any]]) -> list[Batch]:
    """Consecutive rows with the same columns form one batch (missing columns take their defaults).

    Idempotency keys are filled in; raises ValueError for an unknown column (a bug in the caller)."""
    out: list[Batch] = []
    key = table.idempotency_key
    ids = iter(new_ids(sum(1 for row in rows if row.get(key) is None)))
    for given in rows:
        row = table.prepare(given) if given.get(key) is not None else table.prepare({**given, key: next(ids)})
        columns = table.order(row.keys())
        if not out or out[-1].columns != columns:
            out.append(Batch(table.name, columns, []))
        out[-1].rows.append(table.values(columns, row))
    return out


def _names(batch: Batch) -> tuple[sql.Composable, sql.Composable]:
    return sql.Identifier(batch.table), sql.SQL(", ").join(map(sql.Identifier, batch.columns))


async def copy_rows(conn: psycopg.AsyncConnection, batch: Batch) -> None:
    table, columns = _names(batch)
    async with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(table, columns)) as copy:
        for row in batch.rows:
            await copy.write_row(row)


async def insert_idempotent(conn: psycopg.AsyncConnection, batch: Batch) -> None:
    """COPY into a temporary table, then INSERT ... ON CONFLICT DO NOTHING: idempotent for replays."""
    table, columns = _names(batch)
    spec = TABLES[batch.table]
    json_at = [i for i, c in enumerate(batch.columns) if c in spec.json_columns]
    await conn.execute(sql.SQL("CREATE TEMPORARY TABLE upwatch_stage ON COMMIT DROP AS "
                               "SELECT {} FROM {} WITH NO DATA").format(columns, table))
    async with conn.cursor().copy(sql.SQL("COPY upwatch_stage ({}) FROM STDIN").format(columns)) as copy:
        for stored in batch.rows:
            # Rows read back from the spool hold plain JSON values.
            row = stored if not json_at else tuple(
                json_text(v) if i in json_at and not isinstance(v, JsonText) else v for i, v in enumerate(stored))
            await copy.write_row(row)
    await conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM upwatch_stage ON CONFLICT DO NOTHING")
                       .format(table, columns, columns))
