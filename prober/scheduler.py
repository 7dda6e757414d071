"""One timer per enabled endpoint of this prober's shard, on the event loop.

Start phases are spread deterministically: an endpoint fires when
`unix_time mod interval == phase`, with the phase picked by hash(name) among
the interval's PHASE_STEP_MS steps, so 5,000 endpoints do not start in the same
second and every restart (and every prober) keeps the same phase. The steps
are coarse on purpose: the checks that share one start together in one turn of
the event loop, which costs much less CPU per check than waking the process
for each (measured: see docs/prober.md, Benchmark). A check still running when its next run is due is not started twice;
the skipped run is recorded as a row with error_kind "skipped", and so is a
run that fires more than one interval late (a stalled process). A global and a
per-host semaphore cap concurrent checks.

The timers are the event loop's own (call_later), not APScheduler jobs: those
cost about 90-100 µs more CPU per run on this machine (trigger arithmetic on
aware datetimes, executor and event bookkeeping, locks, a self-pipe wake-up),
a fifth of a whole check.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from prober.checks import CHECKS
from prober.writer import BatchWriter
from upwatch.config.endpoints import Endpoint
from upwatch.records import ProbeResult

logger = logging.getLogger(__name__)

PHASE_STEP_MS = 100  # 150 start times in a 15 s interval
Observer = Callable[[Endpoint, ProbeResult, float | None], None]  # (endpoint, result, start lateness in s)


def stable_hash(name: str) -> int:
    """The same number for a name in every process and on every machine."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as written on the command line: --shard 2/3
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'2/3' -> Shard(2, 3); raises ValueError otherwise."""
        index, sep, count = text.partition("/")
        if not sep or not index.isdigit() or not count.isdigit() or not 1 <= int(index) <= int(count):
            raise ValueError(f"shard {text!r} must be i/n with 1 <= i <= n, e.g. 2/3")
        return cls(int(index), int(count))

    def owns(self, name: str) -> bool:
        return stable_hash(name) % self.count == self.index - 1


def phase_s(endpoint: Endpoint) -> float:
    """Offset of this endpoint's runs within its interval, in seconds (PHASE_STEP_MS steps)."""
    return _phase_s(endpoint.name, max(1, int(endpoint.interval.total_seconds() * 1000)))


@functools.lru_cache(maxsize=65536)
def _phase_s(name: str, interval_ms: int) -> float:
    steps = max(1, interval_ms // PHASE_STEP_MS)  # cached: every run needs it
    return (stable_hash(name) % steps) * PHASE_STEP_MS / 1000


def host_of(endpoint: Endpoint) -> str:
    """The host a check connects to, for the per-host cap."""
    if endpoint.kind == "http":
        return _url_host(endpoint.url or "")
    return endpoint.host or ""


@functools.lru_cache(maxsize=65536)
def _url_host(url: str) -> str:
    return urlsplit(url).hostname or ""


@dataclass(eq=False)
class _Job:
    """An endpoint's timer and its check in flight."""

    endpoint: Endpoint
    timer: asyncio.TimerHandle | None = None
    task: asyncio.Task[None] | None = None


def next_run_s(endpoint: Endpoint, now: float) -> float:
    """The first scheduled unix time of `endpoint` after `now`."""
    interval = endpoint.interval.total_seconds()
    phase = phase_s(endpoint)
    return phase + (math.floor((now - phase) / interval) + 1) * interval


class Scheduler:
    """Schedules checks and hands each result to the writer and to `observers`."""

    def __init__(self, session: aiohttp.ClientSession, writer: BatchWriter, *, location: str, prober: str,
                 max_concurrency: int = 512, per_host_concurrency: int = 32, shard: Shard | None = None):
        self.session = session
        self.writer = writer
        self.location = location
        self.prober = prober
        self.shard = shard
        self.observers: list[Observer] = []
        self.endpoints: dict[str, Endpoint] = {}
        self.ids: dict[str, int] = {}
        self.skipped = 0
        self._running: set[asyncio.Task[object]] = set()
        self._global = asyncio.Semaphore(max_concurrency)
        self._per_host_limit = per_host_concurrency
        self._per_host: dict[str, asyncio.Semaphore] = {}
        self._jobs: dict[str, _Job] = {}
        self._started = False

    @property
    def running(self) -> bool:
        return self._started

    def start(self) -> None:
        self._started = True
        for job in self._jobs.values():
            self._arm(job)

    def shutdown(self) -> None:
        """Stop starting checks; those in flight go on (see drain)."""
        self._started = False
        for job in self._jobs.values():
            if job.timer is not None:
                job.timer.cancel()
                job.timer = None

    def intervals(self) -> dict[str, float]:
        """Seconds between runs, per scheduled endpoint."""
        return {name: job.endpoint.interval.total_seconds() for name, job in self._jobs.items()}

    async def drain(self, timeout_s: float) -> None:
        """Wait for checks in flight (after shutdown); cancel those still running after `timeout_s`."""
        pending = {t for t in self._running if not t.done()}
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=timeout_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    def wanted(self, endpoint: Endpoint) -> bool:
        """Whether this prober runs the endpoint: enabled, an active kind, in its shard."""
        return endpoint.enabled and endpoint.kind in CHECKS and (self.shard is None or self.shard.owns(endpoint.name))

    def apply(self, endpoints: list[Endpoint], ids: dict[str, int]) -> tuple[list[str], list[str], list[str]]:
        """Make the jobs match `endpoints`: (added, changed, removed) names."""
        self.ids = dict(ids)
        new = {e.name: e for e in endpoints if self.wanted(e)}
        removed = [n for n in self.endpoints if n not in new]
        added = [n for n in new if n not in self.endpoints]
        changed = [n for n in new if n in self.endpoints and new[n] != self.endpoints[n]]
        for name in removed:
            job = self._jobs.pop(name)
            if job.timer is not None:
                job.timer.cancel()
            del self.endpoints[name]
        for name in added + changed:
            endpoint, old = new[name], self.endpoints.get(name)
            self.endpoints[name] = endpoint
            job = self._jobs.get(name)
            if job is None:
                job = self._jobs[name] = _Job(endpoint)
                if self._started:
                    self._arm(job)
                continue
            job.endpoint = endpoint
            if old is not None and old.interval != endpoint.interval and self._started:
                if job.timer is not None:
                    job.timer.cancel()
                self._arm(job)
        return added, changed, removed

    def _arm(self, job: _Job, after: float | None = None) -> None:
        now = time.time()
        due = next_run_s(job.endpoint, max(now, after or now))
        job.timer = asyncio.get_running_loop().call_later(due - now, self._fire, job, due)

    def _fire(self, job: _Job, due: float) -> None:
        now = time.time()
        if now < due:  # timers may fire up to the clock's resolution early: wait for the scheduled time
            job.timer = asyncio.get_running_loop().call_later(due - now, self._fire, job, due)
            return
        self._arm(job, after=due)
        if now - due > job.endpoint.interval.total_seconds():
            self._skip(job.endpoint, due, "run missed")
        elif job.task is not None and not job.task.done():
            self._skip(job.endpoint, due, "previous check still running")
        else:
            job.task = asyncio.get_running_loop().create_task(self._probe(job.endpoint.name, due))

    async def _probe(self, name: str, due: float) -> None:
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            return
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        host = host_of(endpoint)
        per_host = self._per_host.get(host)
        if per_host is None:
            per_host = self._per_host[host] = asyncio.Semaphore(self._per_host_limit)
        try:
            async with self._global, per_host:
                lateness = time.time() - due
                result = await CHECKS[endpoint.kind](endpoint, self.session)
        except asyncio.CancelledError:  # only at shutdown, by drain(): the run is abandoned, not a failure
            logger.info("probe abandoned at shutdown endpoint=%s", name)
            return
        self._record(endpoint, result, lateness)

    def _record(self, endpoint: Endpoint, result: ProbeResult, lateness: float | None) -> None:
        endpoint_id = self.ids.get(endpoint.name)
        if endpoint_id is None:
            logger.error("probe result for an endpoint without id name=%s", endpoint.name)
            return
        row = result.to_row(endpoint_id, location=self.location, prober=self.prober)
        if not self.writer.offer("probe_results", [row]):
            logger.error("writer queue full, result not stored endpoint=%s queue_rows=%d",
                         endpoint.name, self.writer.queue_rows)
        for observer in self.observers:
            observer(endpoint, result, lateness)
        if not result.ok:
            logger.info("probe failed endpoint=%s error_kind=%s error=%r latency_ms=%s",
                        endpoint.name, result.error_kind, result.error, result.latency_ms)

    def _skip(self, endpoint: Endpoint, due: float, reason: str) -> None:
        self.skipped += 1
        logger.warning("probe skipped endpoint=%s reason=%r", endpoint.name, reason)
        self._record(endpoint, ProbeResult.failed(dt.datetime.fromtimestamp(due, dt.UTC), "skipped", reason), None)
