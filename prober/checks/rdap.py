"""[DOMAIN_EXPIRATION]: when the endpoint's registered domain expires, from RDAP (RFC 9082/9083), cached.

`GET {server}/domain/{name}` on the configured server only, the name being the registered domain of the
endpoint's host (www.example.co.uk -> example.co.uk, from the public suffix list's ICANN section), and
the date of the answer's `events` entry whose eventAction is "expiration".

Contract: `expiry()` returns an Expiry (a date, or an error saying why there is none) and never raises
for network or RDAP errors; one lookup per domain at a time, answers kept for `cache_ttl` (failures for
FAILURE_TTL_S, while an earlier date is kept: expiry dates are absolute, so a stale one still counts down).
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import functools
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from upwatch import conditions
from upwatch.assertions import Assertion
from upwatch.records import ProbeResult, Target

if TYPE_CHECKING:
    import aiohttp
    from publicsuffixlist import PublicSuffixList

    from prober.checks.base import Check, CheckOptions

logger = logging.getLogger(__name__)

DEFAULT_SERVER = "https://rdap.org"  # redirects to the registry's own RDAP server (IANA's bootstrap)
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_CACHE_TTL_S = 12 * 3600.0  # a renewal shows within this; registries answer slowly and rate-limit
FAILURE_TTL_S = 600.0  # an RDAP outage or a 404 is asked again after this, not on every 15 s probe
MAX_ENTRIES = 10_000
MAX_ANSWER_BYTES = 1024 * 1024
MAX_REDIRECTS = 3  # rdap.org sends a name to its registry's server in one

# The lookup for the check running in this task, read by prober.checks.assertions.Observed.
CURRENT: contextvars.ContextVar[Expiry | None] = contextvars.ContextVar("upwatch_domain_expiry", default=None)


@dataclass(frozen=True, slots=True)
class Expiry:
    """What RDAP said of a domain: when it expires, or why that is not known."""

    domain: str
    expires_at: dt.datetime | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """prober.rdap: the server asked and how long to wait and to keep answers."""

    server: str = DEFAULT_SERVER
    timeout_s: float = DEFAULT_TIMEOUT_S
    cache_ttl_s: float = DEFAULT_CACHE_TTL_S


def uses(assertions: Sequence[Assertion]) -> bool:
    """Whether any assertion reads [DOMAIN_EXPIRATION] (on either side)."""
    return any(conditions.reads_domain(a) for a in assertions)


def host_of(kind: str, options: CheckOptions) -> str:
    """The name the endpoint is known by: a TLS server_name when set (host may be an address), else its host."""
    if kind in conditions.NO_DOMAIN_KINDS:
        return ""
    server_name = getattr(options, "server_name", None)
    return str(server_name) if server_name else options.connects_to


def problem(kind: str, options: CheckOptions, assertions: Sequence[Assertion]) -> tuple[int, str] | None:
    """(index of the assertion, message) when an endpoint reads [DOMAIN_EXPIRATION] but has no domain."""
    index = next((i for i, a in enumerate(assertions) if conditions.reads_domain(a)), None)
    if index is None:
        return None
    found = conditions.domain_problem(kind, host_of(kind, options))
    return None if found is None else (index, found)


@functools.cache
def _suffixes() -> PublicSuffixList:
    from publicsuffixlist import PublicSuffixList

    # ICANN's section: registries answer RDAP for example.com, not for the private suffixes (foo.github.io).
    return PublicSuffixList(only_icann=True)


@functools.lru_cache(maxsize=MAX_ENTRIES)
def registered_domain(host: str) -> str | None:
    """example.co.uk for www.example.co.uk; None for a public suffix itself (co.uk) or a single label."""
    name = conditions.ascii_host(host)
    if "." not in name:
        return None
    found: str | None = _suffixes().privatesuffix(name)
    return found


class Lookups:
    """The process's RDAP answers: one lookup per domain at a time, a bounded cache of dates and failures."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self._cache: OrderedDict[str, tuple[Expiry, float]] = OrderedDict()  # domain -> (answer, monotonic expiry)
        self._pending: dict[str, asyncio.Task[Expiry]] = {}

    def configure(self, settings: Settings) -> None:
        """Use these settings from now on; answers from another server are forgotten."""
        if settings.server != self.settings.server:
            self._cache.clear()
        self.settings = settings

    async def expiry(self, host: str, session: aiohttp.ClientSession) -> Expiry:
        """When the registered domain of `host` expires (or why that is not known); never raises."""
        if _suffixes.cache_info().currsize == 0:  # reading the list takes ~0.2 s: not on the event loop
            await asyncio.to_thread(_suffixes)
        unusable = conditions.domain_problem("", host)  # a /probe target may be an address
        if unusable is not None:
            return Expiry(host, error=unusable)
        domain = registered_domain(host)
        if domain is None:
            return Expiry(host, error=f"{host} is not a registered domain nor below one")
        cached = self._cache.get(domain)
        if cached is not None and time.monotonic() < cached[1]:
            self._cache.move_to_end(domain)
            return cached[0]
        task = self._pending.get(domain)
        if task is None:
            task = self._pending[domain] = asyncio.create_task(self._refresh(domain, session))
            task.add_done_callback(lambda _: self._pending.pop(domain, None))
        return await asyncio.shield(task)  # a cancelled probe leaves the lookup to the others waiting on it

    async def _refresh(self, domain: str, session: aiohttp.ClientSession) -> Expiry:
        answer = await fetch(domain, session, self.settings)
        fresh = answer.error is None
        if fresh:
            logger.info("rdap lookup domain=%s expires_at=%s", domain, answer.expires_at)
        else:
            logger.warning("rdap lookup failed domain=%s error=%r", domain, answer.error)
            previous = self._cache.get(domain)
            if previous is not None and previous[0].error is None:
                answer = previous[0]  # keep the known date, which still counts down; ask again soon
        ttl = self.settings.cache_ttl_s if fresh else FAILURE_TTL_S
        self._cache[domain] = (answer, time.monotonic() + ttl)
        self._cache.move_to_end(domain)
        while len(self._cache) > MAX_ENTRIES:
            self._cache.popitem(last=False)
        return answer


LOOKUPS = Lookups()


async def run(check: Check, target: Target[Any], session: aiohttp.ClientSession) -> ProbeResult:
    """Run `check` with the domain's expiry looked up first (cached), for its assertions to read."""
    found = await LOOKUPS.expiry(host_of(target.kind, target.options), session)
    token = CURRENT.set(found)
    try:
        return await check(target, session)
    finally:
        CURRENT.reset(token)


async def fetch(domain: str, session: aiohttp.ClientSession, settings: Settings) -> Expiry:
    """Ask the RDAP server once (following its redirects); never raises for network or RDAP errors."""
    import aiohttp

    url = f"{settings.server.rstrip('/')}/domain/{quote(domain, safe='')}"
    try:
        async with asyncio.timeout(settings.timeout_s):
            answer = await _get(session, url, domain, settings.server)
    except TimeoutError:
        return Expiry(domain, error=f"RDAP lookup of {domain} timed out after {settings.timeout_s:g}s")
    except (aiohttp.ClientError, OSError) as e:
        return Expiry(domain, error=f"RDAP lookup of {domain} failed: {type(e).__name__}: {str(e)[:200]}")
    return answer if isinstance(answer, Expiry) else parse(domain, answer)


_REDIRECTS = frozenset({301, 302, 303, 307, 308})


async def _get(session: aiohttp.ClientSession, url: str, domain: str, server: str) -> Expiry | bytes:
    """The answer's body, or why there is none. Redirects are followed by hand: a bootstrap service
    (rdap.org) sends each name to its registry, but never from https to plain http nor to another scheme."""
    import yarl

    for _ in range(MAX_REDIRECTS + 1):
        async with session.get(url, headers={"Accept": "application/rdap+json, application/json"},
                               allow_redirects=False) as resp:
            location = resp.headers.get("Location") if resp.status in _REDIRECTS else None
            if location is None:
                return await _body(resp, domain, server)
            target = resp.url.join(yarl.URL(location))
        if target.scheme not in ("http", "https") or (resp.url.scheme == "https" and target.scheme != "https"):
            return Expiry(domain, error=f"RDAP server {server} redirected {domain} to {target.scheme}:, "
                                        "which is not followed")
        url = str(target)
    return Expiry(domain, error=f"RDAP server {server} redirected {domain} more than {MAX_REDIRECTS} times")


async def _body(resp: aiohttp.ClientResponse, domain: str, server: str) -> Expiry | bytes:
    if resp.status == 404:
        return Expiry(domain, error=f"RDAP server {server} does not know {domain} (404)")
    if resp.status != 200:
        return Expiry(domain, error=f"RDAP server {server} answered {resp.status} for {domain}")
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            return Expiry(domain, error=f"RDAP answer for {domain} is larger than {MAX_ANSWER_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse(domain: str, body: bytes) -> Expiry:
    """The expiration event of an RDAP domain answer (RFC 9083 section 4.5)."""
    try:
        document = json.loads(body)
    except ValueError:
        return Expiry(domain, error=f"RDAP answer for {domain} is not JSON")
    events = document.get("events") if isinstance(document, dict) else None
    found = next((e for e in events if isinstance(e, dict) and e.get("eventAction") == "expiration"), None) \
        if isinstance(events, list) else None
    if found is None:
        return Expiry(domain, error=f"RDAP answer for {domain} has no expiration event")
    try:
        expires_at = dt.datetime.fromisoformat(str(found.get("eventDate")))
    except ValueError:
        return Expiry(domain, error=f"RDAP answer for {domain}: expiration date {found.get('eventDate')!r} "
                                    "is not an RFC 3339 date")
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=dt.UTC)
    return Expiry(domain, expires_at=expires_at)
