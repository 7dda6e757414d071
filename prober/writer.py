"""BatchWriter: a bounded queue of rows -> COPY in batches; spool to disk while the database is away.

Rows are offered without waiting (`offer` returns False when the queue is
full, so a caller can answer 503). A flusher task writes them every
`flush_interval_s` or as soon as `batch_rows` are waiting. When the database
cannot be reached, batches are appended to an fsync'd spool file and, from
then on, every new batch goes behind them, so the database receives rows in
the order they were offered. The spool is replayed with INSERT ... ON CONFLICT
DO NOTHING on each row's client-generated uuid, so a batch whose commit was
never acknowledged is not stored twice.

While the spool holds rows, the flusher never waits for the database: a
separate replay task reconnects and replays, and the flusher keeps appending
new batches to the spool every cycle, with each fsync run in a worker thread so
the event loop (and the checks it times) never waits for the disk.

External rows (the push API: `external=True`) may fill only `external_share` of
the queue; the rest is kept for the prober's own results, so push load is
refused (503) before a probe result ever is. A push request reserves room for
its largest possible batch before its body is read (`reserve`), so under
overload it is refused unread, and what was read fits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from prober.copy import batches, copy_rows, insert_idempotent, insert_row
from prober.spool import Spool, encode
from upwatch.config import Config
from upwatch.db import ROWS_CHANNEL, error_summary
from upwatch.rows import PROBE_RESULTS, PUSH_IDEMPOTENCY_KEYS, TABLES, Batch, Reservation

logger = logging.getLogger(__name__)

Hook = Callable[[Batch], None]  # called after a batch is committed; must not block
_UNREACHABLE = (psycopg.OperationalError, psycopg.InterfaceError)
# A backlog is written in COPYs of up to this many times batch_rows: each transaction costs a few round
# trips and a commit, and under sustained push load (batches of 500, durable_ack) fewer, larger
# transactions raised durable throughput (bench/push_throughput.py, docs/push.md).
BACKLOG_BATCHES = 4
# Tables whose commits are NOTIFYed on ROWS_CHANNEL (payload: the table): the detector listens for new
# probe results. Nothing listens for pushed request logs, and each notification cost a round trip.
NOTIFIED = frozenset({PROBE_RESULTS.name})


@dataclass
class WriterStats:
    """Counters for /metrics; rows are counted once each."""

    rows_written: int = 0
    rows_spooled: int = 0
    rows_replayed: int = 0
    rows_dropped: int = 0
    rows_rejected: int = 0
    rows_refused: int = 0  # offers refused because the queue was full
    external_rows_refused: int = 0  # of those, external (push) rows
    requests_refused_unread: int = 0  # push requests refused before their body was read
    database_ok: bool = True
    last_error: str = ""


@dataclass
class QueueRoom:
    """Room held in this writer's queue for external rows (BatchWriter.reserve); an upwatch.rows.Reservation."""

    writer: BatchWriter
    count: int
    released: bool = False

    def release(self) -> None:
        """Give the room back (again: nothing)."""
        if not self.released:
            self.released = True
            self.writer._reserved -= self.count


class BatchWriter:
    """The one writer of measurements; see the module docstring for its guarantees."""

    def __init__(self, pool: AsyncConnectionPool, spool_dir: Path | str, *, batch_rows: int = 500,
                 flush_interval_s: float = 1.0, queue_size: int = 50_000, spool_max_bytes: int = 256 * 1024 * 1024,
                 connect_timeout_s: float = 2.0, retry_max_s: float = 5.0, external_share: float = 0.5,
                 stuck_after_s: float | None = None):
        self.pool = pool
        self.spool = Spool(Path(spool_dir), spool_max_bytes)
        self.batch_rows = batch_rows
        self.flush_interval_s = flush_interval_s
        self.queue_size = queue_size
        # Push rows stop here; the rows above it are for the prober's own results.
        self.external_limit = max(1, int(queue_size * external_share))
        self.stuck_after_s = max(30.0, 10 * flush_interval_s) if stuck_after_s is None else stuck_after_s
        self.connect_timeout_s = connect_timeout_s
        self.retry_max_s = retry_max_s
        self.stats = WriterStats()
        self.hooks: dict[str, list[Hook]] = {name: [] for name in TABLES}  # run after each committed batch
        self._queue: deque[Batch] = deque()
        self._open: Batch | None = None  # the batch offer_row appends to while it is last in the queue
        self._row_layouts: set[tuple[str, tuple[str, ...]]] = set()  # (table, columns) offer_batch has checked
        self._pending = 0
        self._reserved = 0  # external rows of room held by requests being read (reserve / release)
        self._wake = asyncio.Event()
        self._waiters: list[asyncio.Event] = []  # released when the next whole cycle is done
        # (rows, event): released as soon as that many rows, counted in queue order, are written or
        # spooled, so a durable push is answered after its own commit rather than after the whole backlog.
        self._row_waiters: deque[tuple[int, asyncio.Event]] = deque()
        self._offered = 0
        self._done = 0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._replayer: asyncio.Task[None] | None = None
        self._spool_lock = asyncio.Lock()  # appends and truncation of the spool file, which run in threads
        self._progress_at = 0.0  # the flusher last finished a batch or found nothing to do
        self._writing_since: dict[str, float] = {}  # "flusher" / "replay" -> when its database write began
        self._retry_at = 0.0
        self._retry_s = 0.0
        self._last_drop_log = 0.0

    @property
    def queue_rows(self) -> int:
        return self._pending

    @property
    def reserved_rows(self) -> int:
        """Room held for push requests being read (reserve)."""
        return self._reserved

    @property
    def spool_bytes(self) -> int:
        return self.spool.pending_bytes if self.spool.is_open else 0

    def offer(self, table: str, rows: list[dict[str, Any]], *, external: bool = False) -> bool:
        """Queue all `rows` for `table` or none of them; False when the queue lacks room. Never blocks.

        `external`: rows from the push API, which may use only `external_limit` rows of the queue.
        Call from the event loop's thread. Raises ValueError for an unknown table or column (a bug).
        """
        spec = TABLES.get(table)
        if spec is None:
            raise ValueError(f"the writer does not write table {table!r}")
        if not self._room(len(rows), external):
            return False
        for batch in batches(spec, rows):
            self._enqueue(batch)
        return True

    def offer_batch(self, batch: Batch, *, external: bool = False, room: Reservation | None = None) -> bool:
        """Like offer, for rows already laid out as `batch.columns` tuples (JSON columns as JsonText,
        the table's idempotency key included): the cheap way in for bulk producers such as the push API.
        `batch.companions` are written in the same transaction, right after it. `room`: a reservation
        (see reserve) counted as free for this offer, and released by it."""
        for part in batch.parts:
            if (part.table, part.columns) not in self._row_layouts:  # checked once per layout, not per offer
                spec = TABLES.get(part.table)
                if spec is None or spec.idempotency_key not in part.columns or set(part.columns) - set(spec.columns):
                    raise ValueError(f"the writer cannot write columns {part.columns} of table {part.table!r}")
                self._row_layouts.add((part.table, part.columns))
        held = room.count if room is not None and not room.released else 0
        if room is not None:
            room.release()
        if not self._room(batch.size, external, held):
            return False
        self._enqueue(batch)
        return True

    def offer_row(self, table: str, columns: tuple[str, ...], row: tuple[Any, ...]) -> bool:
        """Like offer_batch for one of the prober's own rows (not external), laid out as `columns`: the
        prober offers one per check, and consecutive ones go into one queued batch instead of a Batch each."""
        if (table, columns) not in self._row_layouts:
            self.offer_batch(Batch(table, columns, []))  # its checks of the table and columns; queues nothing
        if not self._room(1, False):
            return False
        last = self._queue[-1] if self._queue else None
        if last is None or last is not self._open or last.columns is not columns or last.table != table:
            last = self._open = Batch(table, columns, [])
            self._queue.append(last)
        last.rows.append(row)
        self._pending += 1
        self._offered += 1
        if self._pending >= self.batch_rows:
            self._wake.set()
        return True

    def reserve(self, count: int) -> QueueRoom | None:
        """Hold room for `count` external rows while a push request's body is read and checked, so that
        what is admitted fits and what would not is refused before it is read. None (counted as a
        request refused unread) when there is no such room. Release it, or offer with it."""
        if not self._fits(count, True):
            self.stats.requests_refused_unread += 1
            return None
        self._reserved += count
        return QueueRoom(self, count)

    def _fits(self, count: int, external: bool, held: int = 0) -> bool:
        if self._stopping:
            return False
        if not external:  # the prober's own rows are not kept out by push reservations
            return self._pending + count <= self.queue_size
        return self._pending + self._reserved - held + count <= self.external_limit

    def _room(self, count: int, external: bool, held: int = 0) -> bool:
        if self._fits(count, external, held):
            return True
        self.stats.rows_refused += count
        if external:
            self.stats.external_rows_refused += count
        return False

    def _enqueue(self, batch: Batch) -> None:
        if batch.rows:
            self._queue.append(batch)
            self._pending += batch.size
            self._offered += batch.size
            if self._pending >= self.batch_rows:
                self._wake.set()

    async def start(self) -> None:
        """Open (and lock) the spool, then start flushing; a spool left by a killed process is replayed first."""
        self.spool.open()
        if self.spool.pending_bytes:
            logger.warning("spool found, replaying path=%s bytes=%d", self.spool.path, self.spool.pending_bytes)
        self._progress_at = time.monotonic()
        self._task = asyncio.create_task(self._run(), name="batch-writer")

    async def stop(self) -> None:
        """Write everything queued; what the database cannot take now is spooled for the next start."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await self._task
            if self._replayer is not None:
                await self._replayer  # it stops after the batch it is replaying
        finally:
            self._task = None
            self._replayer = None
            left = self.spool.pending_bytes
            self.spool.close()
        logger.info("writer stopped rows_written=%d spool_bytes=%d", self.stats.rows_written, left)

    async def flush(self) -> None:
        """Wait until everything offered before this call has been written or spooled (with nothing
        queued: until one more cycle, which also replays the spool if the database is back)."""
        if self._task is None or self._task.done():
            return
        done = asyncio.Event()
        if self._offered > self._done:
            self._row_waiters.append((self._offered, done))
        else:
            self._waiters.append(done)
        self._wake.set()
        await done.wait()

    def stuck(self, now: float | None = None) -> bool:
        """True when the writer makes no progress: the flusher died, a database write (or replay) has
        been going for more than `stuck_after_s`, or rows wait and no batch was finished in that time.
        Being busy is not stuck: under steady inflow every finished batch counts as progress."""
        if self._task is None or self._task.done():
            return True
        now = time.monotonic() if now is None else now
        if any(now - since > self.stuck_after_s for since in self._writing_since.values()):
            return True
        return bool(self._pending) and now - self._progress_at > self.stuck_after_s

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # the flush interval is up: a cycle all the same
                await asyncio.wait_for(self._wake.wait(), timeout=self.flush_interval_s)
            self._wake.clear()
            waiters, self._waiters = self._waiters, []
            await self._cycle()
            self._progress_at = time.monotonic()
            replayer = self._replayer
            for waiter in waiters:  # "one more cycle" includes the replay it started
                if replayer is None or replayer.done():
                    waiter.set()
                else:
                    replayer.add_done_callback(functools.partial(_set_when_done, waiter))
            if self._stopping and not self._pending:
                return

    async def _cycle(self) -> None:
        idle = self._replayer is None or self._replayer.done()
        if idle and self.spool.pending_bytes and not self._stopping and time.monotonic() >= self._retry_at:
            self._replayer = asyncio.create_task(self._replay(), name="batch-writer-replay")
        while self._pending:
            for batch in self._take(BACKLOG_BATCHES * self.batch_rows):
                await self._write_or_spool(batch)
                self._progress_at = time.monotonic()

    def _take(self, limit: int) -> list[Batch]:
        """Up to `limit` rows from the head of the queue; consecutive rows of one table and column list
        form one batch. A batch with companions is never split (it may exceed `limit` when taken first)."""
        taken: list[Batch] = []
        count = 0
        while self._queue and count < limit:
            batch = self._queue.popleft()
            rows, companions = batch.rows, batch.companions
            if count + batch.size > limit:
                if companions and count:
                    self._queue.appendleft(batch)
                    break
                if not companions:
                    self._queue.appendleft(Batch(batch.table, batch.columns, rows[limit - count:]))
                    rows = rows[: limit - count]
            count += len(rows) + sum(len(c.rows) for c in companions)
            last = taken[-1] if taken else None
            # Batches with companions (push batches' Idempotency-Keys) merge only with each other, so
            # _units can tell their rows apart again for the spool and the row-by-row fallback.
            if (last is not None and last.table == batch.table and last.columns == batch.columns
                    and bool(last.companions) == bool(companions)):
                last.rows.extend(rows)
                last.companions += companions
            else:
                taken.append(Batch(batch.table, batch.columns, list(rows), companions))
        self._pending -= count
        return taken

    async def _write_or_spool(self, batch: Batch) -> None:
        if self.spool.pending_bytes or time.monotonic() < self._retry_at:
            await self._to_spool(batch)
        else:
            try:
                await self._timed_write("flusher", batch, replay=False)
            except _UNREACHABLE as e:
                self._unreachable(e)
                await self._to_spool(batch)
            else:
                self._reachable()
                self.stats.rows_written += batch.size
        self._done += batch.size
        while self._row_waiters and self._row_waiters[0][0] <= self._done:
            self._row_waiters.popleft()[1].set()

    async def _timed_write(self, writer: str, batch: Batch, *, replay: bool) -> None:
        self._writing_since[writer] = time.monotonic()
        try:
            await self._write(batch, replay=replay)
        finally:
            del self._writing_since[writer]

    async def _write(self, batch: Batch, *, replay: bool) -> None:
        """Write one batch (and its companions) in one transaction; bad rows are set aside one by one,
        never retried forever."""
        async with self.pool.connection(timeout=self.connect_timeout_s) as conn:
            parts = batch.parts
            try:
                if not replay and not batch.companions and batch.table not in NOTIFIED and conn.autocommit:
                    # One statement is its own transaction, committed before COPY's answer (which follows
                    # the commit): BEGIN, COMMIT and their two round trips would add nothing.
                    await copy_rows(conn, batch)
                else:
                    async with conn.transaction():
                        key = _key_of(batch) if replay else None
                        if key is not None:  # a spooled push batch with its Idempotency-Key
                            parts = await _unless_stored(conn, batch, key)
                        for part in parts:
                            await (insert_idempotent(conn, part) if replay else copy_rows(conn, part))
                        if batch.table in NOTIFIED:  # on commit: the detector scores new rows now
                            await conn.execute("SELECT pg_notify(%s, %s)", (ROWS_CHANNEL, batch.table))
            except _UNREACHABLE:
                raise
            except psycopg.Error as e:
                logger.warning("batch refused by the database, writing row by row table=%s rows=%d error=%r",
                               batch.table, len(batch.rows), error_summary(e))
                for unit in _units(batch):
                    await self._write_one_by_one(conn, unit)
                return
        for part in parts:
            for hook in self.hooks[part.table]:
                hook(part)

    async def _write_one_by_one(self, conn: psycopg.AsyncConnection, batch: Batch) -> None:
        """Each row of `batch` (one of _units) in a transaction of its own, setting aside the rows the
        database refuses. A push batch with an Idempotency-Key goes in one transaction instead, its key
        first: when the same batch is stored already (_unless_stored), its rows are skipped; otherwise
        each row is in a savepoint of its own and the key is stored with the rows that were taken."""
        written: list[Batch] = []
        key = _key_of(batch)
        if key is None:
            for part in batch.parts:
                for row in part.rows:
                    single = Batch(part.table, part.columns, [row])
                    with self._rejecting(single, written):
                        async with conn.transaction():
                            await insert_idempotent(conn, single)
        else:
            async with conn.transaction():
                parts: tuple[Batch, ...] | None = None
                with self._rejecting(key, []):  # a key the database refuses is set aside, its rows go on
                    async with conn.transaction():
                        parts = await _unless_stored(conn, batch, key)
                for part in tuple(p for p in batch.parts if p is not key) if parts is None else parts:
                    for row in part.rows:
                        single = Batch(part.table, part.columns, [row])
                        with self._rejecting(single, written):
                            async with conn.transaction():  # a savepoint
                                await insert_row(conn, single)
        for single in written:
            for hook in self.hooks[single.table]:
                hook(single)

    @contextlib.contextmanager
    def _rejecting(self, single: Batch, written: list[Batch]) -> Iterator[None]:
        """Run the write of one row: one the database refuses is kept in rejected.jsonl and counted, a
        written one is added to `written`."""
        try:
            yield
        except _UNREACHABLE:
            raise
        except psycopg.Error as e:
            self.stats.rows_rejected += 1
            logger.error("row rejected by the database, kept in %s table=%s error=%r",
                         self.spool.directory / "rejected.jsonl", single.table, error_summary(e))
            self.spool.reject(encode(single), error_summary(e))
            return
        written.append(single)

    async def _to_spool(self, batch: Batch) -> None:
        # One append, one line per push batch: a batch and its Idempotency-Key are replayed together.
        lines = b"".join(encode(unit) for unit in _units(batch))
        async with self._spool_lock:
            appended = await asyncio.to_thread(self.spool.append, lines)
        if appended:
            self.stats.rows_spooled += batch.size
            return
        self.stats.rows_dropped += batch.size
        now = time.monotonic()
        if now - self._last_drop_log >= 10.0:
            self._last_drop_log = now
            logger.error("SPOOL FULL: dropping newest rows table=%s rows=%d dropped_total=%d spool_bytes=%d "
                         "spool_max_bytes=%d path=%s", batch.table, len(batch.rows), self.stats.rows_dropped,
                         self.spool.size, self.spool.max_bytes, self.spool.path)

    async def _replay(self) -> None:
        """Replay the spool until it is empty, the database is unreachable again, or the writer stops.
        Runs beside the flusher, which meanwhile appends new batches behind the ones replayed here."""
        try:
            await self._replay_batches()
        except Exception:  # e.g. the spool's disk failing: the flusher goes on, the replay is tried again
            logger.exception("spool replay failed, will retry path=%s", self.spool.path)
            self._retry_at = time.monotonic() + self.retry_max_s

    async def _replay_batches(self) -> None:
        while not self._stopping:
            batch, length = self.spool.read_next()
            if batch is None:
                return
            try:
                await self._timed_write("replay", batch, replay=True)
            except _UNREACHABLE as e:
                self._unreachable(e)
                return
            self._reachable()
            async with self._spool_lock:
                await asyncio.to_thread(self.spool.consumed, length)
            self.stats.rows_replayed += len(batch.rows)
            self.stats.rows_written += len(batch.rows)
            if not self.spool.pending_bytes:
                logger.info("spool replayed, writing directly again rows_replayed=%d", self.stats.rows_replayed)

    def _unreachable(self, error: Exception) -> None:
        self._retry_s = min(self.retry_max_s, max(0.2, self._retry_s * 2))
        self._retry_at = time.monotonic() + self._retry_s
        message = error_summary(error)
        if self.stats.database_ok or message != self.stats.last_error:
            logger.error("database unreachable, spooling to %s retry_in_s=%.1f error=%r",
                         self.spool.path, self._retry_s, message)
        self.stats.database_ok = False
        self.stats.last_error = message

    def _reachable(self) -> None:
        if not self.stats.database_ok:
            logger.info("database reachable again")
        self.stats.database_ok = True
        self._retry_s = 0.0
        self._retry_at = 0.0


def _key_of(batch: Batch) -> Batch | None:
    """The push_idempotency_keys companion of one push batch (one of _units), if it has one."""
    keys = [c for c in batch.companions if c.table == PUSH_IDEMPOTENCY_KEYS.name]
    return keys[0] if len(keys) == 1 and len(keys[0].rows) == 1 else None


def _units(batch: Batch) -> list[Batch]:
    """A batch as the writer's queue took it, split back into one batch per Idempotency-Key with that
    key as its companion (_take merges keyed push batches only with each other; each key row's
    `accepted` is its batch's row count). Anything else stays whole."""
    keys = batch.companions
    if len(keys) < 2 or any(c.table != PUSH_IDEMPOTENCY_KEYS.name or len(c.rows) != 1 for c in keys):
        return [batch]
    at = keys[0].columns.index("accepted")
    sizes = [int(k.rows[0][at]) for k in keys]
    if sum(sizes) != len(batch.rows):
        return [batch]
    units, start = [], 0
    for key, size in zip(keys, sizes, strict=True):
        units.append(Batch(batch.table, batch.columns, batch.rows[start:start + size], (key,)))
        start += size
    return units


async def _unless_stored(conn: psycopg.AsyncConnection, batch: Batch, key: Batch) -> tuple[Batch, ...]:
    """Store `key`, the Idempotency-Key of a push batch (one of _units), in the caller's transaction; return
    the parts still to write: none when the key is stored already for the same body, i.e. this batch is
    in the table (another process accepted it too while the database was down and replayed its spool
    first, or this commit went through unacknowledged); the batch's rows otherwise. A key stored for
    another body is taken over by this batch (its rows are a different batch, which is stored)."""
    columns = sql.SQL(", ").join(map(sql.Identifier, key.columns))
    cur = await conn.execute(sql.SQL(
        "INSERT INTO push_idempotency_keys ({}) VALUES ({}) ON CONFLICT (service_id, key_hash) DO UPDATE"
        " SET accepted = EXCLUDED.accepted, body_hash = EXCLUDED.body_hash, created_at = now()"
        " WHERE push_idempotency_keys.body_hash IS DISTINCT FROM EXCLUDED.body_hash RETURNING 1").format(
        columns, sql.SQL(", ").join(sql.Placeholder() * len(key.columns))), key.rows[0])
    if await cur.fetchone() is not None:
        return tuple(p for p in batch.parts if p is not key)
    logger.info("push batch already stored under its Idempotency-Key, its rows skipped table=%s rows=%d",
                batch.table, len(batch.rows))
    return ()


def _set_when_done(event: asyncio.Event, _: asyncio.Task[None]) -> None:
    """A done-callback that sets `event` (a lambda's default argument would not type-check)."""
    event.set()


def for_push_worker(pool: AsyncConnectionPool, spool_dir: Path, config: Config) -> BatchWriter:
    """A push ingest worker's own writer (push.workers), with the prober's settings and its own spool."""
    p = config.prober
    return BatchWriter(pool, spool_dir, batch_rows=p.batch_rows, flush_interval_s=p.flush_interval.total_seconds(),
                       queue_size=p.queue_size, spool_max_bytes=p.spool_max_bytes,
                       external_share=p.push_queue_share, stuck_after_s=p.writer_stuck_after_s())
