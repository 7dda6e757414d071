"""Ingest workers: more processes serving POST /logs on push.listen, for when one process is the limit.

One Python process parses, validates, masks and formats rows for COPY on one core, while PostgreSQL
takes less than half of another. With `push.workers: N` the prober binds push.listen with SO_REUSEPORT
and starts N-1 worker processes (`Listener`) bound to the same address, so the kernel spreads incoming
connections over all N. A worker is the push API with a writer of its own (each its own spool
directory, `<prober.data_dir>/spool-push-<n>`: a spool is locked by one writer); it answers
POST /api/v1/logs itself and passes every other request (queries, admin, check-ins, /metrics,
/healthz, status pages, /probe) to the prober over a unix socket of its own, with the caller's
address, so whatever those keep in memory (check-in starts, config reloads, rate limits, the
scheduler) stays in one process. What POST /logs keeps per process, and how it stays correct:

- durable 202: each worker's own commit (or spool fsync); a worker killed loses only what it had
  not acknowledged, and its spool is replayed by the worker started in its place;
- Idempotency-Key: held across processes by a PostgreSQL advisory lock (push.idempotency), so a
  retry reaching another worker while the first attempt is still committing waits for its answer;
- API keys: each process caches a key's answer for 5 s; a revoke (API or CLI) is NOTIFYed, and every
  process drops the cached answer on it (push.keys.KeyStore.follow);
- rate_limit_per_key: per process (a key may make up to N x the limit; docs/push.md).

Contract: `await Listener.start(app, runtime, new_writer, workers=N)` serves `app` on push.listen (reuse_port
when N > 1) and starts the workers; `await listener.stop()` stops them all (SIGTERM, then SIGKILL
after STOP_TIMEOUT_S) and the listener. A worker that exits is restarted (logged with its exit code).
`serve(runtime, writer, host, port)` serves the push API alone on a shared port (the benchmark's
workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from push import PREFIX
from push.app import create_app
from push.context import Writer
from upwatch.config import Config
from upwatch.runtime import Runtime

logger = logging.getLogger(__name__)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

WORKER_HEADER = "X-Upwatch-Worker"  # which process answered (0: the prober), on every response
PEER_HEADER = "X-Upwatch-Peer"  # the caller's address, trusted only over the prober's unix socket
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 2.5  # the daemon stops within 5 s (README): the prober's own stop runs alongside
RESTART_MAX_S = 30.0
INGEST = ("POST", f"{PREFIX}/logs")
# Not passed on by the proxy (RFC 9110 7.6.1) or set again by aiohttp.
_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                  "upgrade", "content-length", PEER_HEADER.lower()})


async def serve(runtime: Runtime, writer: Writer, host: str, port: int, *,
                admin_token: str | None = None) -> web.AppRunner:
    """Serve the push API at PREFIX on host:port, sharing the port (SO_REUSEPORT) with other workers.
    Raises OSError when the port is held by a socket bound without SO_REUSEPORT."""
    root = web.Application()
    root.add_subapp(PREFIX, create_app(runtime, writer, admin_token=admin_token))
    return await _start(root, host, port)


async def _start(root: web.Application, host: str, port: int, unix: str | None = None) -> web.AppRunner:
    runner = web.AppRunner(root, handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_port=True).start()
        if unix is not None:
            await web.UnixSite(runner, unix).start()
    except OSError:
        await runner.cleanup()
        raise
    logger.info("push worker listening address=%s:%d", host, port)
    return runner


def _tag(worker: int) -> Any:
    async def tag(_: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault(WORKER_HEADER, str(worker))  # a passed-on answer keeps the prober's
    return tag


@web.middleware
async def _peer(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Requests a worker passes on arrive over the unix socket with the caller's address in
    PEER_HEADER: the prober's handlers (e.g. /probe's probe_callers) see that address. Over TCP the
    header is nobody's to set and is ignored."""
    sock = request.transport.get_extra_info("socket") if request.transport is not None else None
    if sock is not None and sock.family == socket.AF_UNIX:
        return await handler(request.clone(remote=request.headers.get(PEER_HEADER, "")))
    return await handler(request)


class WorkerWriter(Writer, Protocol):
    """The writer a worker process runs for itself."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


# Makes a worker's writer from its pool, its own spool directory and the config. The prober passes
# its own (a module-level function, pickled by reference): push does not import the prober.
WriterFactory = Callable[[AsyncConnectionPool, Path, Config], WorkerWriter]


@dataclass
class Spec:
    """What a worker process needs (pickled to it): the config as the prober validated it."""

    new_writer: WriterFactory
    number: int
    config: Config
    config_path: Path
    database_url: str
    host: str
    port: int
    prober_socket: str
    spool_dir: Path


class Listener:
    """push.listen served by the prober's app and, with push.workers > 1, by worker processes."""

    def __init__(self, runner: web.AppRunner, runtime: Runtime, socket_dir: str | None):
        self.runner = runner
        self.runtime = runtime
        self.socket_dir = socket_dir
        self.processes: dict[int, tuple[BaseProcess, Connection]] = {}
        self.restarts = 0
        self._specs: dict[int, Spec] = {}
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False

    @classmethod
    async def start(cls, app: web.Application, runtime: Runtime, new_writer: WriterFactory, *,
                    workers: int | None = None) -> Listener:
        """Serve `app` on push.listen and start the workers; raises OSError when the address is taken,
        RuntimeError when a worker does not start."""
        push = runtime.config.push
        count = push.workers if workers is None else workers
        app.middlewares.append(_peer)
        app.on_response_prepare.append(_tag(0))
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        socket_dir = tempfile.mkdtemp(prefix="upwatch-") if count > 1 else None  # 0700; short for AF_UNIX
        try:
            await web.TCPSite(runner, push.host, push.port, reuse_port=count > 1).start()
            if socket_dir is not None:
                await web.UnixSite(runner, os.path.join(socket_dir, "prober.sock")).start()
        except OSError:
            await runner.cleanup()
            _remove(socket_dir)
            raise
        self = cls(runner, runtime, socket_dir)
        port = _bound_port(runner) or push.port  # push.listen may say port 0
        logger.info("prober listening address=%s:%d workers=%d", push.host, port, count)
        if socket_dir is None:
            return self
        data_dir = runtime.config.prober.data_dir
        for n in range(1, count):
            self._specs[n] = Spec(new_writer, n, runtime.config, runtime.config_path, runtime.database_url,
                                  push.host, port, os.path.join(socket_dir, "prober.sock"),
                                  data_dir / f"spool-push-{n}")
        try:
            await asyncio.gather(*(self._spawn(n) for n in self._specs))
        except BaseException:
            await self.stop()
            raise
        self._watch = asyncio.create_task(self._supervise(), name="push-workers")
        return self

    @property
    def port(self) -> int:
        return _bound_port(self.runner) or self.runtime.config.push.port

    async def _spawn(self, n: int) -> None:
        ours, theirs = multiprocessing.get_context("spawn").Pipe()
        process = multiprocessing.get_context("spawn").Process(
            target=worker_main, args=(self._specs[n], theirs), name=f"upwatch-push-{n}", daemon=True)
        process.start()
        theirs.close()
        self.processes[n] = (process, ours)
        ready = await asyncio.to_thread(ours.poll, START_TIMEOUT_S)
        message = ours.recv() if ready else ("failed", f"no answer within {START_TIMEOUT_S:.0f} s")
        if message[0] != "ready":
            raise RuntimeError(f"push worker {n} did not start: {message[1]}")
        logger.info("push worker started worker=%d pid=%d", n, process.pid)

    async def _supervise(self) -> None:
        delay_s = 1.0
        while not self._stopping:
            await asyncio.sleep(0.5)
            for n, (process, _) in list(self.processes.items()):
                if process.is_alive() or self._stopping:
                    continue
                logger.error("push worker exited, restarting it worker=%d pid=%s exitcode=%s", n, process.pid,
                             process.exitcode)
                self.restarts += 1
                try:
                    await self._spawn(n)
                    delay_s = 1.0
                except (RuntimeError, OSError) as e:
                    logger.error("push worker not restarted, retrying in %.0f s worker=%d error=%s", delay_s, n, e)
                    await asyncio.sleep(delay_s)
                    delay_s = min(RESTART_MAX_S, delay_s * 2)

    async def stop(self) -> None:
        """Stop the workers (each stops its listener and writer: what it acknowledged is committed or
        spooled already) and the prober's listener, within STOP_TIMEOUT_S plus the listener's own."""
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        for process, _ in self.processes.values():
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S  # the workers stop while the prober's listener does
        await self.runner.cleanup()
        for n, (process, conn) in self.processes.items():
            await asyncio.to_thread(process.join, max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                logger.error("push worker did not stop in time, killed worker=%d pid=%s", n, process.pid)
                process.kill()
                await asyncio.to_thread(process.join, 1.0)
            conn.close()
        _remove(self.socket_dir)


def _bound_port(runner: web.AppRunner) -> int | None:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    return None


def _remove(directory: str | None) -> None:
    if directory is None:
        return
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(directory, "prober.sock"))
    with contextlib.suppress(OSError):
        os.rmdir(directory)


def worker_main(spec: Spec, control: Connection) -> None:
    """A worker process: serve until SIGTERM or until the prober goes away (its pipe closes)."""
    # Ctrl-C reaches the whole process group: the prober stops its workers itself (SIGTERM), after
    # setting itself stopping, so that it does not take them for dead and start them again.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from upwatch import logs
    from upwatch.runtime import run_async

    logs.setup(spec.config.log_level)
    try:
        run_async(_worker(spec, control))
    except Exception as e:  # reported to the prober, which says so and stops (at start) or restarts it
        logger.exception("push worker failed worker=%d", spec.number)
        with contextlib.suppress(OSError):
            control.send(("failed", f"{type(e).__name__}: {e}"))
        raise SystemExit(1) from None


async def _worker(spec: Spec, control: Connection) -> None:
    from upwatch import db

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # The prober going away (even killed) closes the pipe: no worker outlives it.
    loop.add_reader(control.fileno(), stop.set)
    pool = db.new_pool(spec.database_url, max_size=spec.config.storage.pool_size)
    await pool.open(wait=False)
    writer = spec.new_writer(pool, spec.spool_dir, spec.config)
    await writer.start()
    runtime = Runtime(spec.config, spec.config_path, spec.database_url, pool)
    runner: web.AppRunner | None = None
    try:
        proxy = _Proxy(spec.prober_socket)
        root = web.Application(middlewares=[proxy.middleware])
        root.on_cleanup.append(proxy.close)
        root.add_subapp(PREFIX, create_app(runtime, writer, rollups=False))
        root.on_response_prepare.append(_tag(spec.number))
        runner = await _start(root, spec.host, spec.port)
        control.send(("ready", os.getpid()))
        await stop.wait()
    finally:
        loop.remove_reader(control.fileno())
        if runner is not None:
            await runner.cleanup()
        await writer.stop()
        await pool.close()
        logger.info("push worker stopped worker=%d", spec.number)


class _Proxy:
    """A middleware passing every request but POST /logs to the prober over its unix socket."""

    def __init__(self, path: str):
        self.path = path
        self.session: aiohttp.ClientSession | None = None

    @web.middleware
    async def middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        if (request.method, request.path) == INGEST:
            return await handler(request)
        if self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=self.path),
                                                 auto_decompress=False,
                                                 timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP]
        headers.append((PEER_HEADER, request.remote or ""))
        body = request.content.iter_chunked(65536) if request.body_exists else None
        try:
            upstream = await self.session.request(request.method, f"http://prober{request.rel_url}",
                                                  headers=headers, data=body, allow_redirects=False)
        except aiohttp.ClientError as e:
            logger.warning("push worker could not reach the prober path=%s error=%r", request.path, str(e))
            return web.json_response({"error": "service restarting; retry later"}, status=503,
                                     headers={"Retry-After": "1"})
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for k, v in upstream.headers.items():
                if k.lower() not in _HOP:
                    response.headers.add(k, v)
            if upstream.headers.get("Content-Length") is not None:
                response.content_length = int(upstream.headers["Content-Length"])
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(65536):
                await response.write(chunk)
            await response.write_eof()
            return response

    async def close(self, _: web.Application) -> None:
        if self.session is not None:
            await self.session.close()
