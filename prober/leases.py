"""Lease-based sharding (`prober.shard: auto`): the probers of one location share its endpoints
through leases in PostgreSQL, so that when one stops or hangs the others take its endpoints over.

Contract (docs/production.md, "More than one machine"):

- The endpoints are split into `slots` slots by a stable hash of their name (the same in every
  process). A prober probes an endpoint only while it holds the endpoint's slot.
- Every `renew_s` (a quarter of the lease) a prober, in one transaction: refreshes its membership
  row, renews the slots it holds (only for the generation it was given: the fencing token), gives
  back what it holds above its fair share `ceil(slots / live members)`, and claims expired or free
  slots up to its share with FOR UPDATE SKIP LOCKED (two probers never claim the same slot).
- A claim raises the slot's generation. A prober that was hung or cut off finds at its next renewal
  that its generation is gone and drops the slot at once; so two probers never probe the same
  endpoint for longer than the time it takes the returning one to renew once.
- A prober that cannot reach the database keeps probing the slots it holds (its results are spooled
  and nothing is lost in a database outage), and a hung prober (its renewal did not run in time)
  stops probing its slots until it has renewed them.
- A clean stop gives every slot back at once, so the others take over at their next renewal.

Why leases in a table rather than advisory locks: an advisory lock lives as long as one session, so
every prober would hold a connection per slot (or all slots on one connection, lost together with
it), and a lock cannot carry the generation that fences a prober coming back; a row can, and it shows
who probes what (`SELECT * FROM prober_slots`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg_pool import AsyncConnectionPool

from upwatch.db import error_summary
from upwatch.runtime import pause

logger = logging.getLogger(__name__)

_UNREACHABLE = (psycopg.OperationalError, psycopg.InterfaceError)


@dataclass
class Held:
    """What a renewal returned: the slots held and their generations."""

    slots: dict[int, int] = field(default_factory=dict)
    members: int = 1


class Leases:
    """This prober's share of its location's slots; `owns(name)` says whether to probe an endpoint."""

    def __init__(self, pool: AsyncConnectionPool, *, location: str, instance: str, slots: int, ttl_s: float,
                 slot_of: Callable[[str], int], on_change: Callable[[], None] | None = None):
        self.pool = pool
        self.location = location
        # The instance name alone may be shared by mistake (two probers started from one config): the
        # random part keeps their leases apart.
        self.holder = f"{instance}/{secrets.token_hex(4)}"
        self.slots = slots
        self.ttl_s = ttl_s
        self.renew_s = ttl_s / 4
        self.slot_of = slot_of
        self.on_change = on_change
        self.held: dict[int, int] = {}  # slot -> generation
        self.members = 0
        self.reachable = True  # the last renewal reached the database
        self._valid_until = 0.0  # monotonic: when the leases of the last renewal run out by our clock
        self._slot_cache: dict[str, int] = {}

    def slot(self, name: str) -> int:
        found = self._slot_cache.get(name)
        if found is None:
            found = self._slot_cache[name] = self.slot_of(name) % self.slots
        return found

    def owns(self, name: str) -> bool:
        """Whether to probe this endpoint now: its slot is held, and the lease has not run out by our
        own clock (unless the database is unreachable: then nobody can take it over)."""
        if self.slot(name) not in self.held:
            return False
        return not self.reachable or time.monotonic() < self._valid_until

    async def run(self, stop: asyncio.Event) -> None:
        """Renew every renew_s until `stop`; then give the slots back."""
        while not stop.is_set():
            await self.renew()
            await pause(stop, self.renew_s)

    async def renew(self) -> None:
        """One renewal (see the module docstring); never raises for an unreachable database."""
        started = time.monotonic()
        before = dict(self.held)
        try:
            async with self.pool.connection(timeout=max(1.0, self.renew_s)) as conn, conn.transaction():
                held = await self._renew(conn)
        except _UNREACHABLE as e:
            if self.reachable:
                logger.warning("lease renewal failed, probing the slots held until the database is back "
                               "slots=%d error=%r", len(self.held), error_summary(e))
            self.reachable = False
            return
        # A lease is valid for ttl from when the server stamped it, which is after `started`.
        self._valid_until = started + self.ttl_s
        self.reachable, self.members = True, held.members
        self.held = held.slots
        if set(before) != set(self.held):
            lost = sorted(s for s in before if s not in self.held or self.held[s] != before[s])
            logger.info("leases changed holder=%s held=%d members=%d gained=%d lost=%s", self.holder,
                        len(self.held), self.members, len(set(self.held) - set(before)), lost[:8])
            if self.on_change is not None:
                self.on_change()

    async def release(self) -> None:
        """Give every slot back and leave (a clean stop): the others take over at their next renewal."""
        if not self.held and not self.members:
            return
        try:
            async with self.pool.connection(timeout=2.0) as conn, conn.transaction():
                await conn.execute("UPDATE prober_slots SET holder = NULL, expires_at = NULL"
                                   " WHERE location = %s AND holder = %s", (self.location, self.holder))
                await conn.execute("DELETE FROM prober_members WHERE location = %s AND holder = %s",
                                   (self.location, self.holder))
        except _UNREACHABLE as e:
            logger.warning("leases not given back (they run out by themselves) error=%r", error_summary(e))
        self.held, self.members = {}, 0

    async def _renew(self, conn: psycopg.AsyncConnection) -> Held:
        loc, me, ttl = self.location, self.holder, f"{self.ttl_s} seconds"
        await conn.execute(
            "INSERT INTO prober_members (location, holder, expires_at) VALUES (%s, %s, now() + %s::interval)"
            " ON CONFLICT (location, holder) DO UPDATE SET expires_at = EXCLUDED.expires_at", (loc, me, ttl))
        await conn.execute("DELETE FROM prober_members WHERE location = %s AND expires_at < now() - interval '1 hour'",
                           (loc,))
        await conn.execute("INSERT INTO prober_slots (location, slot) SELECT %s, g FROM generate_series(0, %s) g"
                           " ON CONFLICT DO NOTHING", (loc, self.slots - 1))
        # Fenced: only the generation this prober was given, and only while it has not run out.
        cur = await conn.execute(
            "UPDATE prober_slots s SET expires_at = now() + %s::interval"
            " FROM unnest(%s::integer[], %s::bigint[]) AS h(slot, generation)"
            " WHERE s.location = %s AND s.slot = h.slot AND s.generation = h.generation AND s.holder = %s"
            " AND s.expires_at > now() RETURNING s.slot, s.generation",
            (ttl, list(self.held), list(self.held.values()), loc, me))
        held = {int(slot): int(gen) for slot, gen in await cur.fetchall() if int(slot) < self.slots}
        cur = await conn.execute("SELECT count(*) FROM prober_members WHERE location = %s AND expires_at > now()",
                                 (loc,))
        row = await cur.fetchone()
        members = max(1, int(row[0]) if row else 1)
        share = math.ceil(self.slots / members)
        if len(held) > share:
            extra = sorted(held)[share:]
            # Stop probing them before they are free: once this transaction commits another prober may
            # claim one and start probing it, while this one had not yet stored what the renewal returned.
            for slot in extra:
                self.held.pop(slot, None)
            await conn.execute("UPDATE prober_slots SET holder = NULL, expires_at = NULL"
                               " WHERE location = %s AND holder = %s AND slot = ANY(%s::integer[])", (loc, me, extra))
            for slot in extra:
                del held[slot]
        elif len(held) < share:
            cur = await conn.execute(
                "UPDATE prober_slots s SET holder = %s, generation = s.generation + 1,"
                " expires_at = now() + %s::interval, claimed_at = now()"
                " FROM (SELECT slot FROM prober_slots WHERE location = %s AND slot < %s"
                "       AND (holder IS NULL OR expires_at IS NULL OR expires_at <= now())"
                "       ORDER BY slot FOR UPDATE SKIP LOCKED LIMIT %s) free"
                " WHERE s.location = %s AND s.slot = free.slot RETURNING s.slot, s.generation",
                (me, ttl, loc, self.slots, share - len(held), loc))
            held.update({int(slot): int(gen) for slot, gen in await cur.fetchall()})
        return Held(held, members)
