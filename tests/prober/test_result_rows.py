"""Typed results keep the stored form: a ProbeResult's row, and so the spool line the writer keeps
while the database is away, is what the previous version wrote (dicts of assertion results), and a
spool left by that version replays."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from prober.checks.http import new_session
from prober.copy import batches
from prober.scheduler import STORED_COLUMNS, Scheduler
from prober.spool import SPOOL_NAME, encode
from prober.writer import BatchWriter
from tests.prober.conftest import fetch
from upwatch.masking import masking
from upwatch.records import AssertionResult, ProbeResult
from upwatch.rows import PROBE_RESULTS

AT = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
ROW_ID = "0f0e0d0c0b0a49088706050403020100"


def old_spool_line(endpoint_id: int) -> bytes:
    """A probe_results batch as the version with `assertions: list[dict]` spooled it."""
    return ('{"table":"probe_results","columns":["time","endpoint_id","id","location","prober","source","ok",'
            '"status_code","latency_ms","dns_ms","connect_ms","tls_ms","ttfb_ms","transfer_ms","response_bytes",'
            '"final_url","cert_not_after","error_kind","error","assertions"],"rows":[["2026-03-01T12:00:00+00:00",'
            f'{endpoint_id},"{ROW_ID}","here","p1","active",false,200,12.5,1.0,null,null,null,null,2,'
            '"http://127.0.0.1/x",null,"assertion","[BODY] == UP: expected == UP, got OK",'
            '[{"assertion":"[STATUS] == 200","ok":true,"actual":"200"},'
            '{"assertion":"[BODY] == UP","ok":false,"actual":"OK","reason":"expected == UP, got OK"}]]]}\n').encode()


def result() -> ProbeResult:
    failed = AssertionResult("[BODY] == UP", ok=False, actual="OK", reason="expected == UP, got OK")
    return ProbeResult.done(AT, [AssertionResult("[STATUS] == 200", ok=True, actual="200"), failed],
                            status_code=200, latency_ms=12.5, dns_ms=1.0, response_bytes=2,
                            final_url="http://127.0.0.1/x")


def test_a_failed_assertion_makes_the_result_failed_with_its_reason() -> None:
    r = result()
    assert (r.ok, r.error_kind, r.error) == (False, "assertion", "[BODY] == UP: expected == UP, got OK")
    assert ProbeResult.done(AT, [AssertionResult("[STATUS] == 200", ok=True, actual="200")]).ok


def test_a_result_spools_as_the_previous_version_did(endpoint_ids: list[int]) -> None:
    """Same line, plus the `details` column (sql/0150) that a result without details leaves null."""
    row = result().to_row(endpoint_ids[0], location="here", prober="p1") | {"id": ROW_ID}
    (batch,) = batches(PROBE_RESULTS, [row])
    old = old_spool_line(endpoint_ids[0]).decode()
    expected = old.replace('"assertions"],', '"assertions","details"],').replace("]]]}", "],null]]}")
    assert encode(batch).decode() == expected


async def test_details_are_stored_as_json(pool: AsyncConnectionPool, database_url: str,
                                          endpoint_ids: list[int], tmp_path: Path) -> None:
    measured = ProbeResult.done(AT, latency_ms=1.0, details={"rcode": "NOERROR", "answers": ["127.0.0.1"]})
    writer = BatchWriter(pool, tmp_path, flush_interval_s=0.05)
    await writer.start()
    assert writer.offer("probe_results", [measured.to_row(endpoint_ids[0], location="here", prober="p1")])
    await writer.flush()
    await writer.stop()
    assert fetch(database_url, "SELECT details FROM probe_results") == [({"rcode": "NOERROR",
                                                                          "answers": ["127.0.0.1"]},)]


async def test_a_spool_left_by_the_previous_version_replays(pool: AsyncConnectionPool, database_url: str,
                                                            endpoint_ids: list[int], tmp_path: Path) -> None:
    (tmp_path / SPOOL_NAME).write_bytes(old_spool_line(endpoint_ids[0]))
    writer = BatchWriter(pool, tmp_path, flush_interval_s=0.05)
    await writer.start()
    await writer.flush()
    await writer.stop()
    stored = fetch(database_url, "SELECT ok, error_kind, assertions FROM probe_results")
    assert stored == [(False, "assertion", [a.to_json() for a in result().assertions])]
    assert (tmp_path / SPOOL_NAME).stat().st_size == 0


def test_a_result_without_assertions_stores_null() -> None:
    row = ProbeResult.failed(AT, "timeout", "timeout after 1s").to_row(1, location="l", prober="p")
    assert row["assertions"] is None


def results_to_store() -> list[ProbeResult]:
    """Results whose stored form is masked in each of the ways probe_row masks: a secret in the final URL,
    an assertion on a secret field (its text, actual value and the error made of it), a URL in an error."""
    secret = AssertionResult("[BODY].token == abc", ok=False, actual="xyz", reason="expected == abc, got xyz")
    return [
        result(),
        ProbeResult.done(AT, [AssertionResult("[STATUS] == 200", ok=True, actual="200")], status_code=200,
                         latency_ms=3.5, ttfb_ms=3.0, transfer_ms=0.5, dns_ms=0.0, connect_ms=0.0,
                         final_url="http://127.0.0.1/x?token=s3cret&page=2",
                         details={"ip": "127.0.0.1", "redirects": 0, "http_version": "1.1"}),
        ProbeResult.done(AT, [secret], status_code=200, latency_ms=1.0),
        ProbeResult.failed(AT, "connect", "cannot connect to http://u:pw@127.0.0.1:1/?api_key=k1"),
        ProbeResult.failed(AT, "skipped", "previous check still running"),
        ProbeResult.done(AT, latency_ms=1.0, details={}),
    ]


async def test_the_scheduler_stores_what_the_row_of_a_result_is(pool: AsyncConnectionPool, tmp_path: Path) -> None:
    """Scheduler._row lays a result out for COPY itself: the same values, masked the same, as the
    general path (to_row, Masking.probe_row, the writer's batches), twice in a row (its cache)."""
    session = new_session(reuse_connections=True)
    masks = masking()
    scheduler = Scheduler(session, BatchWriter(pool, tmp_path), location="here", prober="p1", masks=masks)
    try:
        for r in results_to_store() * 2:
            row, error = scheduler._row(7, r)
            (expected,) = batches(PROBE_RESULTS, [masks.probe_row(r.to_row(7, location="here", prober="p1"))])
            assert expected.columns == STORED_COLUMNS
            key = STORED_COLUMNS.index("id")
            assert row[:key] + row[key + 1:] == expected.rows[0][:key] + expected.rows[0][key + 1:]
            assert len(row[key]) == 32 and row[key] != expected.rows[0][key]
            assert error == expected.rows[0][STORED_COLUMNS.index("error")]
        assert "s3cret" not in str(scheduler._row(7, results_to_store()[1])[0])
        assert "xyz" not in str(scheduler._row(7, results_to_store()[2])[0])
    finally:
        await session.close()


async def test_rows_offered_one_by_one_are_stored_in_order(pool: AsyncConnectionPool, database_url: str,
                                                           endpoint_ids: list[int], tmp_path: Path) -> None:
    """offer_row appends to the batch last in the queue; a flush between offers starts a new one."""
    writer = BatchWriter(pool, tmp_path, flush_interval_s=0.05)
    scheduler = Scheduler(new_session(), writer, location="here", prober="p1")
    await writer.start()
    try:
        for i in range(6):
            r = ProbeResult.done(AT + dt.timedelta(seconds=i), latency_ms=float(i))
            assert writer.offer_row("probe_results", STORED_COLUMNS, scheduler._row(endpoint_ids[0], r)[0])
            if i == 2:
                await writer.flush()
        await writer.flush()
    finally:
        await writer.stop()
        await scheduler.session.close()
    stored = fetch(database_url, "SELECT latency_ms FROM probe_results ORDER BY time")
    assert stored == [(float(i),) for i in range(6)]
    assert writer.stats.rows_written == 6
