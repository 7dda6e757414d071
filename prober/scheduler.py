"""One APScheduler interval job per start step: the enabled endpoints of this prober's shard that start together.

Start phases are spread deterministically: an endpoint fires when
`unix_time mod interval == phase`, with the phase picked by hash(name) among
the interval's PHASE_STEP_MS steps, so 5,000 endpoints do not start in the same
second and every restart (and every prober) keeps the same phase. The steps
are coarse on purpose: the checks that share one start together in one turn of
the event loop, which costs much less CPU per check than waking the process
for each (measured: see docs/prober.md, Benchmark). For the same reason a step
is one APScheduler job, not one job per endpoint: APScheduler's bookkeeping per
job run (due-job scan, executor, events, job store re-sort) cost more than a
check's own Python code at 40,000 endpoints. A check still running when its
next run is due is not started twice, and a run that comes due more than one
interval late (a stalled process) is not run; either is recorded as a row with
error_kind "skipped". A global and a per-host semaphore cap concurrent checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent, JobSubmissionEvent
from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from prober import checks
from prober.copy import new_id
from prober.writer import BatchWriter
from upwatch.config.endpoints import Endpoint
from upwatch.masking import Masking, masking
from upwatch.records import AssertionResult, ProbeResult
from upwatch.rows import PROBE_RESULTS, JsonText, json_text

logger = logging.getLogger(__name__)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
PHASE_STEP_MS = 250  # 60 start times in a 15 s interval
Step = tuple[int, int]  # (interval ms, phase ms): the endpoints that start together, one job
Observer = Callable[[Endpoint, ProbeResult, float | None], None]  # (endpoint, result, start lateness in s)
# The columns of Scheduler._row, which lays a result out in this order (the table's: checked at import).
STORED_COLUMNS = ("time", "endpoint_id", "id", "location", "prober", "source", "ok", "status_code", "latency_ms",
                  "dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "transfer_ms", "response_bytes", "final_url",
                  "cert_not_after", "error_kind", "error", "assertions", "details")
if PROBE_RESULTS.columns != STORED_COLUMNS:
    raise ImportError("prober.scheduler.STORED_COLUMNS no longer matches upwatch.rows.PROBE_RESULTS")
_UNCAPPED = contextlib.nullcontext()
MASKED_CACHE = 4096  # distinct (assertions, error_kind, error) of results kept with their masked, stored form


def stable_hash(name: str) -> int:
    """The same number for a name in every process and on every machine."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")


class Owner(Protocol):
    """Which endpoints this prober runs: a static Shard, or the leases it holds (prober.leases)."""

    def owns(self, name: str) -> bool: ...


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
        return _name_hash(name) % self.count == self.index - 1


@functools.lru_cache(maxsize=65536)
def _name_hash(name: str) -> int:
    return stable_hash(name)  # cached: the scheduler asks before every run


def phase_s(endpoint: Endpoint) -> float:
    """Offset of this endpoint's runs within its interval, in seconds (PHASE_STEP_MS steps)."""
    return _phase_s(endpoint.name, max(1, int(endpoint.interval.total_seconds() * 1000)))


@functools.lru_cache(maxsize=65536)
def _phase_s(name: str, interval_ms: int) -> float:
    steps = max(1, interval_ms // PHASE_STEP_MS)  # cached: every run needs it
    return (stable_hash(name) % steps) * PHASE_STEP_MS / 1000


class _LoopScheduler(AsyncIOScheduler):  # type: ignore[misc]  # APScheduler 3 ships no types
    """AsyncIOScheduler whose timer processes due jobs in the callback itself.

    The stock timer callback is the thread-safe `wakeup`, which goes through
    call_soon_threadsafe: a self-pipe write, a read and one more loop turn per
    wake-up. The timer always fires on the loop's own thread, so that hop buys
    nothing here.
    """

    def _start_timer(self, wait_seconds: float | None) -> None:
        self._stop_timer()
        if wait_seconds is not None:
            self._timeout = self._eventloop.call_later(wait_seconds, self._wake_on_loop)

    def _wake_on_loop(self) -> None:
        self._stop_timer()
        self._start_timer(self._process_jobs())


def step_of(endpoint: Endpoint) -> Step:
    """The start step an endpoint belongs to: its interval and phase, in ms."""
    interval_ms = max(1, int(endpoint.interval.total_seconds() * 1000))
    return interval_ms, round(_phase_s(endpoint.name, interval_ms) * 1000)


class _StepExecutor(AsyncIOExecutor):  # type: ignore[misc]  # APScheduler 3 ships no types
    """AsyncIOExecutor that does not cancel the job tasks not yet run at shutdown.

    The stock one does, and APScheduler logs each as a job error. A step job only starts checks, in
    one loop turn; one that runs after shutdown starts nothing (Scheduler._start_step), and checks
    in flight are the business of Scheduler.drain.
    """

    def shutdown(self, wait: bool = True) -> None:
        self._pending_futures.clear()


class Scheduler:
    """Schedules checks and hands each result to the writer and to `observers`."""

    def __init__(self, session: aiohttp.ClientSession, writer: BatchWriter, *, location: str, prober: str,
                 max_concurrency: int = 512, per_host_concurrency: int = 32, shard: Owner | None = None,
                 masks: Masking | None = None):
        self.session = session
        self.masks = masks if masks is not None else masking()  # for what is stored and logged of a result
        self.writer = writer
        self.location = location
        self.prober = prober
        self.shard = shard
        self.observers: list[Observer] = []
        self.endpoints: dict[str, Endpoint] = {}
        self.ids: dict[str, int] = {}
        self.skipped = 0
        self._steps: dict[Step, dict[str, None]] = {}  # names in insertion order, per start step (job)
        self._step_of: dict[str, Step] = {}
        self._busy: set[str] = set()  # endpoints whose check is running
        self._running: set[asyncio.Task[None]] = set()
        self._global = asyncio.Semaphore(max_concurrency)
        self._global_limit = max_concurrency
        self._per_host_limit = per_host_concurrency
        self._per_host: dict[str, asyncio.Semaphore] = {}
        self._masked: dict[tuple[tuple[AssertionResult, ...], str | None, str | None],
                           tuple[JsonText | None, str | None]] = {}
        # Without coalescing, every run time that came due more than misfire_grace_time
        # (one interval) ago is reported as missed, and at most the latest one runs.
        self._aps = _LoopScheduler(timezone=dt.UTC, job_defaults={"max_instances": 1, "coalesce": False},
                                   executors={"default": _StepExecutor()})
        self._aps.add_listener(self._on_missed, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        # A missed run is logged here once per step, with the endpoints it held; APScheduler's own
        # warning for it would be a second line for the same event.
        logging.getLogger("apscheduler.executors.default").setLevel(logging.ERROR)

    @property
    def running(self) -> bool:
        return bool(self._aps.running)

    @property
    def job_count(self) -> int:
        """APScheduler jobs: one per start step in use, however many endpoints share it."""
        return len(self._aps.get_jobs())

    def start(self) -> None:
        self._aps.start()

    def shutdown(self) -> None:
        """Stop starting checks; those in flight go on (see drain)."""
        if self._aps.running:
            self._aps.shutdown(wait=False)

    def intervals(self) -> dict[str, float]:
        """Seconds between runs, per scheduled endpoint."""
        return {name: step[0] / 1000 for name, step in self._step_of.items()}

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
        """Whether this prober runs the endpoint: enabled, a probed kind, in its shard."""
        return (endpoint.enabled and checks.probed(endpoint.kind)
                and (self.shard is None or self.shard.owns(endpoint.name)))

    def apply(self, endpoints: list[Endpoint], ids: dict[str, int]) -> tuple[list[str], list[str], list[str]]:
        """Make the jobs match `endpoints`: (added, changed, removed) names."""
        self.ids = dict(ids)
        new = {e.name: e for e in endpoints if self.wanted(e)}
        removed = [n for n in self.endpoints if n not in new]
        added = [n for n in new if n not in self.endpoints]
        # `is` first: a reload hands back the same Endpoint for every unchanged entry (EndpointCache).
        changed = [n for n in new if n in self.endpoints and new[n] is not self.endpoints[n]
                   and new[n] != self.endpoints[n]]
        for name in removed:
            self._leave(name)
            del self.endpoints[name]
        for name in added + changed:
            endpoint = self.endpoints[name] = new[name]
            step = step_of(endpoint)
            if self._step_of.get(name) != step:
                self._leave(name)
                self._join(name, step)
        return added, changed, removed

    def _join(self, name: str, step: Step) -> None:
        members = self._steps.get(step)
        if members is None:
            members = self._steps[step] = {}
            interval_s, phase = step[0] / 1000, step[1] / 1000
            trigger = IntervalTrigger(seconds=interval_s, start_date=EPOCH + dt.timedelta(seconds=phase),
                                      timezone=dt.UTC)
            self._aps.add_job(self._start_step, trigger, args=[step], id=_job_id(step), name=_job_id(step),
                              misfire_grace_time=max(1, int(interval_s)))
        members[name] = None
        self._step_of[name] = step

    def _leave(self, name: str) -> None:
        step = self._step_of.pop(name, None)
        if step is None:
            return
        members = self._steps[step]
        del members[name]
        if not members:
            del self._steps[step]
            self._aps.remove_job(_job_id(step))

    def lateness_s(self, endpoint: Endpoint, now: float) -> float:
        """How late a run starting at unix time `now` is against its schedule."""
        interval = endpoint.interval.total_seconds()
        return (now - phase_s(endpoint)) % interval

    async def _start_step(self, step: Step) -> None:
        """The job of one start step: a task per endpoint; one whose previous check still runs is skipped."""
        if not self._aps.running:
            return  # due just before shutdown
        busy: list[Endpoint] = []
        interval, phase = step[0] / 1000, step[1] / 1000  # what lateness_s works out per endpoint
        for name in self._steps.get(step, ()):
            if self.shard is not None and not self.shard.owns(name):
                continue  # a lease ran out or was given back since the last apply: not ours to run or skip
            endpoint = self.endpoints[name]
            if name in self._busy:
                busy.append(endpoint)
            else:
                self._busy.add(name)
                task = asyncio.create_task(self._probe(endpoint, phase, interval))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
        if busy:
            now = time.time()
            due = dt.datetime.fromtimestamp(now - self.lateness_s(busy[0], now), dt.UTC)
            self._skip(busy, due, "previous check still running")

    async def _probe(self, endpoint: Endpoint, phase: float, interval: float) -> None:
        endpoint_id = self.ids.get(endpoint.name)  # now: a reload may remove the endpoint while it runs
        per_host = self._host_cap(endpoint)
        try:
            async with self._global, per_host:
                lateness = (time.time() - phase) % interval  # lateness_s, with the step's phase and interval
                result = await checks.run(endpoint, self.session)
        except asyncio.CancelledError:  # only at shutdown, by drain(): the run is abandoned, not a failure
            logger.info("probe abandoned at shutdown endpoint=%s", endpoint.name)
            return
        finally:
            self._busy.discard(endpoint.name)
        self._record(endpoint, endpoint_id, result, lateness)

    def _host_cap(self, endpoint: Endpoint) -> contextlib.AbstractAsyncContextManager[Any]:
        """The per-host semaphore of the endpoint's host; none when the cap is at least the global one,
        which then always binds first (a semaphore per check that never waits is CPU for nothing)."""
        if self._per_host_limit >= self._global_limit:
            return _UNCAPPED
        host = endpoint.options.connects_to
        per_host = self._per_host.get(host)
        if per_host is None:
            per_host = self._per_host[host] = asyncio.Semaphore(self._per_host_limit)
        return per_host

    def _record(self, endpoint: Endpoint, endpoint_id: int | None, result: ProbeResult, lateness: float | None) -> None:
        """Store a result under the id the endpoint had when its run started, and show it to the observers
        while the endpoint is still scheduled as it was: a run that a reload (or a lease given back) removed
        or changed while it ran is stored, as it was measured, but brings no metric series back."""
        if endpoint_id is None:
            logger.error("probe result for an endpoint without id name=%s", endpoint.name)
            return
        row, error = self._row(endpoint_id, result)
        if not self.writer.offer_row("probe_results", STORED_COLUMNS, row):
            logger.error("writer queue full, result not stored endpoint=%s queue_rows=%d",
                         endpoint.name, self.writer.queue_rows)
        if self.endpoints.get(endpoint.name) is endpoint:
            for observer in self.observers:
                observer(endpoint, result, lateness)
        if not result.ok:
            logger.info("probe failed endpoint=%s error_kind=%s error=%r latency_ms=%s",
                        endpoint.name, result.error_kind, error, result.latency_ms)

    def _row(self, endpoint_id: int, result: ProbeResult) -> tuple[tuple[Any, ...], str | None]:
        """The probe_results row of a result in STORED_COLUMNS order, and its stored (masked) error: what
        `masks.probe_row(result.to_row(...))` gives, laid out as the writer's COPY takes it, without the dict.
        Grafana reads probe_results: no query secret in a final URL or an error, no secret field's value."""
        key = (result.assertions, result.error_kind, result.error)
        masked = self._masked.get(key)
        if masked is None:
            masked = self._masked[key] = self._mask(result)
        assertions, error = masked
        details = result.details
        return (result.time, endpoint_id, new_id(), self.location, self.prober, result.source, result.ok,
                result.status_code, result.latency_ms, result.dns_ms, result.connect_ms, result.tls_ms,
                result.ttfb_ms, result.transfer_ms, result.response_bytes, self.masks.url(result.final_url),
                result.cert_not_after, result.error_kind, error, assertions,
                json_text(dict(details)) if details else None), error

    def _mask(self, result: ProbeResult) -> tuple[JsonText | None, str | None]:
        """(assertions as stored JSON, stored error) of a result: masked as Masking.probe_row masks them.
        Kept per (assertions, error_kind, error): most endpoints see the same ones run after run."""
        if len(self._masked) >= MASKED_CACHE:
            self._masked.clear()
        row = self.masks.probe_row({"assertions": [a.to_json() for a in result.assertions] or None,
                                    "error_kind": result.error_kind, "error": result.error})
        return json_text(row["assertions"]), row["error"]

    def _on_missed(self, event: JobSubmissionEvent | JobExecutionEvent) -> None:
        """A step run APScheduler did not start: over an interval late, or (an overloaded loop) while
        the step's previous start had not yet been run."""
        step = _step_from_id(event.job_id)
        names = list(self._steps.get(step, ())) if step is not None else []
        if self.shard is not None:  # no skipped row for a run that is not ours (a lease given back, run out)
            names = [n for n in names if self.shard.owns(n)]
        times = getattr(event, "scheduled_run_times", None) or [getattr(event, "scheduled_run_time", None)]
        due = times[-1] or dt.datetime.now(dt.UTC)
        reason = "run missed" if event.code == EVENT_JOB_MISSED else "previous start still waiting"
        self._skip([self.endpoints[n] for n in names], due, reason)

    def _skip(self, endpoints: list[Endpoint], due: dt.datetime, reason: str) -> None:
        """A skipped row for each endpoint; one log line for them all (a stalled process misses thousands)."""
        if not endpoints:
            return
        self.skipped += len(endpoints)
        logger.warning("probe skipped endpoints=%d first=%s reason=%r", len(endpoints), endpoints[0].name, reason)
        for endpoint in endpoints:
            self._record(endpoint, self.ids.get(endpoint.name), ProbeResult.failed(due, "skipped", reason), None)


def _job_id(step: Step) -> str:
    return f"step {step[0]}ms+{step[1]}ms"


def _step_from_id(job_id: str) -> Step | None:
    interval, sep, phase = job_id.removeprefix("step ").removesuffix("ms").partition("ms+")
    return (int(interval), int(phase)) if sep and interval.isdigit() and phase.isdigit() else None
