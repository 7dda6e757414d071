"""Run one or more upwatch services in a process: resolve the database (embedded
or URL), migrate, open a pool, run until SIGTERM/SIGINT, stop within 5 s."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

from upwatch import db, logs
from upwatch.config import Config, ConfigError
from upwatch.embedded import EmbeddedError, EmbeddedPostgres
from upwatch.migrate import MigrationError, migrate

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0
# Services that can start while the database is unreachable: the prober probes the endpoints of its
# snapshot and spools the results (docs/prober.md); retention just waits. Others need the database.
STARTS_WITHOUT_DATABASE = frozenset({"prober", "retention"})
T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed, else asyncio's. Not a dependency: the prober's CPU per
    check measured the same on both (docs/prober.md, Benchmark)."""
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]  # optional: typed where it is installed
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, on uvloop when it is installed."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


@dataclass
class Runtime:
    """What every service gets: the validated config and an open pool."""

    config: Config
    config_path: Path
    database_url: str
    pool: AsyncConnectionPool


# A service runs until `stop` is set; an `async def` (a coroutine, so that it can run as a task).
Service = Callable[[Runtime, asyncio.Event], Coroutine[Any, Any, None]]


class ListenError(Exception):
    """The listen address is taken or not ours to use; the message names the setting."""


@contextlib.contextmanager
def embedded(config: Config) -> Iterator[EmbeddedPostgres | None]:
    """The embedded server when no database URL is configured (started here, stopped after), else None."""
    if config.storage.database_url:
        yield None
        return
    server = EmbeddedPostgres(config.storage.embedded.data_dir, port=config.storage.embedded.port, relocate=True)
    server.start()
    logger.info("embedded postgres ready data_dir=%s reused=%s", server.data_dir, not server.started_here)
    try:
        yield server
    finally:
        if server.started_here:
            server.stop()
            logger.info("embedded postgres stopped")


@contextlib.contextmanager
def database(config: Config) -> Iterator[str]:
    """The database URL: the configured one, or the embedded server's."""
    with embedded(config) as server:
        yield server.url if server else str(config.storage.database_url)


def check_listen(host: str, port: int) -> None:
    """Bind and release `host:port` the way the prober's listener will, so a taken port fails at once,
    before the database is started and migrated (aiohttp also binds with SO_REUSEADDR)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in infos:
            with socket.socket(family, kind, proto) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind(address)
    except OSError as e:
        raise ListenError(f"push.listen {host}:{port}: {e.strerror or e}; another process (another upwatch?)"
                          " is listening there: stop it or choose another push.listen") from None


def where(config: Config, services: dict[str, Service], server: EmbeddedPostgres | None, url: str) -> str:
    """Where to look once we run: the listener, the metrics, and how to open the database."""
    lines = [f"upwatch running: {', '.join(services)} (Ctrl-C or SIGTERM stops it)"]
    if "prober" in services:
        base = f"http://{config.push.listen}"
        lines.append(f"  listening  {base}  (push API /api/v1, metrics /metrics, health /healthz)")
    if server is not None:
        lines.append(f"  database   embedded PostgreSQL, data in {server.data_dir}")
        lines.append(f"  psql       {psql_command(url, server)}")
    else:
        lines.append(f"  database   {db.describe(url)}")
    if "prober" in services:
        lines += [f"  status     http://{config.push.listen}/status/{p.slug}" for p in config.status_pages]
    return "\n".join(lines)


def psql_command(url: str, server: EmbeddedPostgres | None) -> str:
    """A shell command line opening `url` in psql, without any password (the embedded one comes from its
    passfile; for others libpq's PGPASSWORD or ~/.pgpass)."""
    params = {k: v for k, v in conninfo_to_dict(url).items() if k != "password"}
    program = str(server.psql) if server is not None else "psql"
    return f"{shlex.quote(program)} {shlex.quote(make_conninfo('', **params))}"


async def serve(config: Config, config_path: Path, url: str, services: dict[str, Service],
                stop: asyncio.Event, banner: str = "") -> None:
    """Migrate, open the pool and run `services` until `stop` is set or one of them fails. With the
    database unreachable, services that can do without it (STARTS_WITHOUT_DATABASE) start on a pool
    that opens, after the migrations, once the database answers."""
    pool = db.new_pool(url, max_size=config.storage.pool_size)
    connecting: asyncio.Task[None] | None = None
    try:
        await db.wait_until_reachable(url)
    except db.DatabaseUnavailable as e:
        if not set(services) <= STARTS_WITHOUT_DATABASE:
            raise
        logger.warning("database unavailable, starting without it; migrations run when it is back error=%s", e)
        connecting = asyncio.create_task(_connect_when_back(config, url, pool, stop), name="connect")
    else:
        await migrate(url, timescaledb=config.storage.timescaledb)
        await pool.open(wait=True, timeout=10.0)
    try:
        await _run_services(Runtime(config, config_path, url, pool), services, stop, banner)
    finally:
        if connecting is not None:
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
        await pool.close()
        logger.info("upwatch stopped")


async def _connect_when_back(config: Config, url: str, pool: AsyncConnectionPool, stop: asyncio.Event) -> None:
    """Migrate, then open `pool`, once the database answers; until then the services see a closed pool."""
    delay_s = 1.0
    while not stop.is_set():
        try:
            await migrate(url, timescaledb=config.storage.timescaledb)
        except (db.DatabaseUnavailable, psycopg.OperationalError) as e:
            logger.debug("database still unavailable error=%s", db.error_summary(e))
        except MigrationError as e:
            logger.error("migrations failed, the database stays unused, retrying error=%s", e)
            delay_s = 30.0
        else:
            await pool.open(wait=False)
            logger.info("database reachable, migrations applied, pool open")
            return
        await pause(stop, delay_s)
        delay_s = min(delay_s * 2, 30.0)


async def _run_services(runtime: Runtime, services: dict[str, Service], stop: asyncio.Event, banner: str) -> None:
    tasks = {asyncio.create_task(fn(runtime, stop), name=name): name for name, fn in services.items()}
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]  # "uvloop" or "asyncio"
    logger.info("upwatch started services=%s loop=%s", ",".join(services), loop)
    if banner:
        print(banner, file=sys.stderr, flush=True)
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    failed = [t for t in tasks if t in done and t.exception() is not None]
    for task in failed:
        logger.error("service failed name=%s error=%r", tasks[task], task.exception())
    stop.set()
    pending = [t for t in tasks if not t.done()]
    if pending:
        _, late = await asyncio.wait(pending, timeout=STOP_TIMEOUT_S)
        for task in late:
            logger.warning("service did not stop in %.0f s, cancelling name=%s", STOP_TIMEOUT_S, tasks[task])
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
    stopper.cancel()
    if failed:
        raise RuntimeError(f"service {tasks[failed[0]]} failed: {failed[0].exception()}")


def run(config: Config, config_path: Path, services: dict[str, Service]) -> int:
    """Blocking entry point for daemons; returns the process exit code."""
    logs.setup(config.log_level)

    async def main(url: str, banner: str) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, config_path, url, services, stop, banner)

    try:
        with embedded(config) as server:
            url = server.url if server else str(config.storage.database_url)
            run_async(main(url, where(config, services, server, url)))
    except (db.DatabaseUnavailable, EmbeddedError, MigrationError) as e:
        print(f"upwatch: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"upwatch: {e}", file=sys.stderr)
        return 1
    return 0


async def pause(stop: asyncio.Event, seconds: float, wake: asyncio.Event | None = None) -> None:
    """Sleep up to `seconds`, returning early when `stop` (or `wake`) is set. `wake` is left as it is:
    the caller clears it where it starts looking for work, so a wake-up during that work is not lost."""
    events = [stop] + ([wake] if wake is not None else [])
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


def report_config_error(error: ConfigError) -> int:
    print(error, file=sys.stderr)
    return 2
