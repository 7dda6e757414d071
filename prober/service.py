"""The prober service: sync endpoints, schedule checks, write results, serve /metrics, reload the config."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import hashlib
import logging
import os
import signal
import time
from pathlib import Path

import psycopg

from prober.app import State, build_app
from prober.checks import rdap
from prober.checks.http import new_session
from prober.heartbeats import HeartbeatWatcher
from prober.leases import Leases
from prober.metrics import Metrics
from prober.rollups import Rollups
from prober.scheduler import Owner, Scheduler, Shard, stable_hash
from prober.snapshot import Snapshot
from prober.writer import BatchWriter, for_push_worker
from push import workers as push_workers
from upwatch import config as configuration
from upwatch.catalog import SyncReport, sync_endpoints
from upwatch.config import Config, ConfigError
from upwatch.db import describe, error_summary
from upwatch.masking import masking
from upwatch.runtime import Runtime, pause

logger = logging.getLogger(__name__)

ROLLUP_INTERVAL_S = 5.0


def fingerprint(path: Path) -> str:
    """Content hash of the config file ('' when unreadable), to notice edits without extra dependencies."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def _stat_key(path: Path) -> tuple[int, int, int, int] | None:
    """What os.stat says about the file's content: mtime, size and which file (None when missing)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev


class ConfigFile:
    """Notices edits of the config file, and holds one back while it is still being written."""

    # A write in the same filesystem clock tick as our read leaves mtime and size as they were (and a
    # network filesystem's clock may run behind ours): a file modified less than this before our last
    # read is read again, as git does with "racily clean" index entries.
    RACY_NS = 1_000_000_000

    def __init__(self, path: Path):
        self.path = path
        self._stat: tuple[int, int, int, int] | None = None  # at the last read
        self._read_at_ns = 0
        # The content at the previous poll, and the content last loaded (or rejected): with no stat yet,
        # _content reads the file.
        self._seen = self.loaded = self._content()

    def settled_change(self) -> bool:
        """Whether the file differs from the content last loaded and read the same at the previous
        poll: an editor that rewrites the file in place is not caught half-way through."""
        now = self._content()
        ready = now != self.loaded and now == self._seen
        self._seen = now
        return ready

    def _content(self) -> str:
        """The file's fingerprint, hashed again only when os.stat says it may have changed: hashing a
        50,000-endpoint file (several MB) on every poll cost more than the poll. A touch still costs
        one read (and no reload: same content); an in-place rewrite that keeps size and mtime and
        inode, long after the last read (`touch -r`, a restored backup), goes unseen until SIGHUP."""
        stat = _stat_key(self.path)
        if stat is not None and stat == self._stat and stat[0] < self._read_at_ns - self.RACY_NS:
            return self._seen
        self._stat, self._read_at_ns = stat, time.time_ns()
        return fingerprint(self.path)


class ProberService:
    """Everything the prober runs, started and stopped in order."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.config: Config = runtime.config
        p = self.config.prober
        self.writer = BatchWriter(runtime.pool, p.data_dir / "spool", batch_rows=p.batch_rows,
                                  flush_interval_s=p.flush_interval.total_seconds(), queue_size=p.queue_size,
                                  spool_max_bytes=p.spool_max_bytes, external_share=p.push_queue_share,
                                  stuck_after_s=p.writer_stuck_after_s())
        # Stored endpoints and probe results are masked like push records (Grafana reads them all).
        self.masks = masking(self.config.push.sensitive_headers, self.config.push.secret_names)
        self.rollups = Rollups(runtime.pool)
        self.writer.hooks["probe_results"].append(self.rollups.note)
        self.session = new_session(p.max_concurrency, reuse_connections=p.reuse_connections)
        rdap.LOOKUPS.configure(p.rdap.settings())  # [DOMAIN_EXPIRATION] of the scheduler's checks and /probe's
        # shard: auto: the endpoints of the slots this prober holds, re-applied whenever they change.
        self.leases = Leases(runtime.pool, location=p.location, instance=p.instance, slots=p.lease_slots,
                             ttl_s=p.lease_ttl.total_seconds(), slot_of=stable_hash,
                             on_change=self._leases_changed) if p.shard == "auto" else None
        owner: Owner | None = self.leases or (Shard.parse(p.shard) if p.shard else None)
        self.scheduler = Scheduler(self.session, self.writer, location=p.location, prober=p.instance,
                                   max_concurrency=p.max_concurrency, per_host_concurrency=p.per_host_concurrency,
                                   shard=owner, masks=self.masks)
        self.metrics = Metrics(p.location)
        self.scheduler.observers.append(self.metrics.observe)
        self.heartbeats = HeartbeatWatcher(runtime.pool, self.writer, location=p.location, prober=p.instance)
        self.reload_requested = asyncio.Event()
        self.config_file = ConfigFile(runtime.config_path)
        self._endpoint_cache = configuration.EndpointCache()
        self._listener: push_workers.Listener | None = None
        self._synced: SyncReport | None = None
        self.snapshot = Snapshot(p.data_dir, describe(runtime.database_url))
        self.ids: dict[str, int] = {}  # endpoint name -> endpoints.id, from the last sync or the snapshot
        self.synced = False  # whether the running config is in the endpoints table
        self._sync_failing = False
        self._lease_stop = asyncio.Event()
        self._lease_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._prime_endpoint_cache()
        await self.writer.start()
        if self.leases is not None:
            await self.leases.renew()  # the first share before the jobs are made: no probe of another's slot
            self._lease_task = asyncio.create_task(self.leases.run(self._lease_stop), name="prober-leases")
        if not await self._try_sync(self.config):
            # A restart during an outage still probes: ids from the snapshot, results spooled.
            saved = self.snapshot.load()
            self.ids = {e.name: saved[e.name] for e in self.config.endpoints if e.name in saved}
            logger.warning("database unavailable at start, probing the endpoints of the snapshot known=%d "
                           "configured=%d path=%s", len(self.ids), len(self.config.endpoints), self.snapshot.path)
        self._apply(self.config, self.ids)
        app = build_app(self.runtime, State(self.scheduler, self.writer, self.metrics))
        # push.listen, shared with push.workers - 1 ingest worker processes (SO_REUSEPORT) when set.
        self._listener = await push_workers.Listener.start(app, self.runtime, for_push_worker)
        self.scheduler.start()
        # Endpoints, jobs and triggers live as long as the process: keep them out of every
        # full garbage collection (with thousands of endpoints these otherwise cause loop stalls).
        gc.collect()
        gc.freeze()
        logger.info("prober started endpoints=%d location=%s shard=%s", len(self.scheduler.endpoints),
                    self.config.prober.location, self.config.prober.shard or "all")

    async def run_until(self, stop: asyncio.Event) -> None:
        """Watch for SIGHUP / file edits and missing heartbeats until `stop` is set."""
        p = self.config.prober
        next_heartbeat = next_rollup = 0.0
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            await pause(stop, p.config_poll_interval.total_seconds(), self.reload_requested)
            if stop.is_set():
                return
            if self.config_file.settled_change() or self.reload_requested.is_set():
                await self.reload()
            elif not self.synced and await self._try_sync(self.config):
                added, _, _ = self._apply(self.config, self.ids)
                logger.info("database back, endpoints synced endpoints=%d newly_probed=%d",
                            len(self.config.endpoints), len(added))
            if loop.time() >= next_heartbeat:
                next_heartbeat = loop.time() + p.heartbeat_check_interval.total_seconds()
                await self._check_heartbeats()
            if loop.time() >= next_rollup:
                next_rollup = loop.time() + ROLLUP_INTERVAL_S
                await self._roll_up()

    async def reload(self) -> bool:
        """Load the config file again; an invalid one is logged and the running config kept."""
        self.reload_requested.clear()
        path = self.runtime.config_path
        self.config_file.loaded = fingerprint(path)
        try:
            new = configuration.load(path, cache=self._endpoint_cache)
        except ConfigError as e:
            logger.error("config reload rejected, keeping the running config path=%s\n%s", path, e)
            return False
        if "endpoints" not in new.model_fields_set and self.config.endpoints:
            # What an emptied or cut-short file (a non-atomic write, a full disk) looks like.
            logger.error("config reload rejected, keeping the running config path=%s\n%s: no endpoints key while "
                         "%d endpoints run; to remove them all, write `endpoints: []`",
                         path, path, len(self.config.endpoints))
            return False
        if not await self._try_sync(new):
            waiting = sum(e.name not in self.ids for e in new.endpoints)
            logger.warning("config reload applied without the database: endpoints new to it wait for their ids "
                           "waiting=%d", waiting)
        added, changed, removed = self._apply(new, self.ids)
        if new.model_dump(exclude={"endpoints"}) != self.config.model_dump(exclude={"endpoints"}):
            logger.warning("config reload: settings outside endpoints take effect after a restart")
        self.config = new
        # The push API reads endpoints from the shared runtime config: without this, a push endpoint
        # added by a reload answered 404 until a restart while its missing heartbeats were recorded.
        # Other settings there stay as started (see the warning above).
        self.runtime.config = self.runtime.config.model_copy(update={"endpoints": new.endpoints})
        logger.info("config reloaded added=%d changed=%d removed=%d", len(added), len(changed), len(removed))
        return True

    async def stop(self) -> None:
        self.scheduler.shutdown()
        await self.scheduler.drain(timeout_s=2.0)
        if self._lease_task is not None:
            self._lease_stop.set()
            await self._lease_task
        if self.leases is not None:
            await self.leases.release()
        if self._listener is not None:
            await self._listener.stop()
        await self.writer.stop()
        await self.session.close()

    def _prime_endpoint_cache(self) -> None:
        """Validate the file once more, keeping each endpoint's input, so that the first reload too
        validates only the endpoints that changed (seconds, with tens of thousands of them)."""
        try:
            configuration.load(self.runtime.config_path, cache=self._endpoint_cache)
        except ConfigError:
            self.reload_requested.set()  # edited since the process read it: report it at the first poll
            return
        if not self._endpoint_cache.adopt(self.config.endpoints):
            self.reload_requested.set()  # edited since the process read it

    async def _try_sync(self, cfg: Config) -> bool:
        """Sync `cfg`'s endpoints to the table and keep their ids (in memory and in the snapshot);
        False, with the ids kept as they were, while the database is unavailable."""
        try:
            async with self.runtime.pool.connection(timeout=5.0) as conn:
                self._synced = await sync_endpoints(conn, cfg.endpoints, since=self._synced, masks=self.masks)
        except (psycopg.OperationalError, psycopg.InterfaceError) as e:
            if not self._sync_failing:
                logger.warning("endpoint sync deferred: database unavailable error=%r", error_summary(e))
            self._sync_failing, self.synced = True, False
            return False
        moved = sorted(n for n, i in self._synced.ids.items() if self.ids.get(n, i) != i)
        if moved:  # the database came back as another one (restored, recreated): say so loudly
            logger.error("endpoint ids changed while the database was away: results recorded under the old ids "
                         "may be stored against other endpoints count=%d first=%s", len(moved), moved[0])
        self.ids, self.synced, self._sync_failing = dict(self._synced.ids), True, False
        try:
            self.snapshot.save(self.ids)
        except OSError as e:
            logger.error("endpoint snapshot not saved path=%s error=%r", self.snapshot.path, str(e))
        return True

    def _apply(self, cfg: Config, ids: dict[str, int]) -> tuple[list[str], list[str], list[str]]:
        # An endpoint without an id (new while the database is away) has nowhere to put its results.
        known = [e for e in cfg.endpoints if e.name in ids]
        added, changed, removed = self.scheduler.apply(known, ids)
        shard = self.scheduler.shard
        self.heartbeats.apply([e for e in known if shard is None or shard.owns(e.name)], ids)
        self.metrics.forget(removed + changed)
        return added, changed, removed

    def _leases_changed(self) -> None:
        added, _, removed = self._apply(self.config, self.ids)
        logger.info("probing the endpoints of the slots held slots=%d endpoints=%d added=%d removed=%d",
                    len(self.leases.held) if self.leases else 0, len(self.scheduler.endpoints), len(added),
                    len(removed))

    async def _check_heartbeats(self) -> None:
        if not self.heartbeats.watched:
            return
        try:
            await self.heartbeats.check(dt.datetime.now(dt.UTC))
        except (psycopg.OperationalError, psycopg.InterfaceError) as e:
            logger.warning("heartbeat check skipped: database unavailable error=%r", error_summary(e))


    async def _roll_up(self) -> None:
        try:
            await self.rollups.tick(dt.datetime.now(dt.UTC))
        except (psycopg.OperationalError, psycopg.InterfaceError) as e:
            logger.warning("rollup deferred: database unavailable error=%r", error_summary(e))


async def run(runtime: Runtime, stop: asyncio.Event) -> None:
    """Run the prober until `stop` is set; SIGHUP reloads the config."""
    service = ProberService(runtime)
    try:
        await service.start()
    except BaseException:
        await service.stop()
        raise
    loop = asyncio.get_running_loop()
    hup = False
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGHUP, service.reload_requested.set)
        hup = True
    try:
        await service.run_until(stop)
    finally:
        if hup:
            loop.remove_signal_handler(signal.SIGHUP)
        await service.stop()
        logger.info("prober stopped")
