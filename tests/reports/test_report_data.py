"""upwatch.reports.data over the real rollups, against figures computed here from the seeded rows."""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from tests.push.conftest import Api
from upwatch.reports import data, document

from .conftest import FROM, TO, Seeded, outside_records


def percentile_cont(values: list[float], q: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation at rank 1 + q (n - 1)."""
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def failed(r: dict[str, Any]) -> bool:
    return r["status_code"] >= 500 or "error" in r


async def build(api: Api, service: str = "shop", since: Any = FROM, until: Any = TO) -> data.Report:
    async with api.pool.connection() as conn:
        return await data.build(conn, service, since, until)


async def test_summary_matches_the_seeded_rows(api: Api, seeded: Seeded) -> None:
    report = await build(api)
    rows = seeded.records
    latencies = [r["latency_ms"] for r in rows]
    errors = sum(map(failed, rows))
    s = report.summary
    assert (s.requests, s.errors, s.unique_clients) == (
        len(rows), errors, len({r["source_ip"] for r in rows if "source_ip" in r}))
    assert s.error_rate == errors / len(rows)
    assert (s.latency.min_ms, s.latency.max_ms) == (min(latencies), max(latencies))
    assert s.latency.avg_ms == pytest.approx(sum(latencies) / len(latencies), rel=1e-12)
    for got, q in ((s.latency.p50_ms, 0.5), (s.latency.p95_ms, 0.95), (s.latency.p99_ms, 0.99)):
        assert got == pytest.approx(percentile_cont(latencies, q), rel=0.01)  # the sketches' bound (sql/0090)
    assert (report.service, report.from_, report.to) == ("shop", FROM, TO)


async def test_routes_statuses_and_clients_match_the_seeded_rows(api: Api, seeded: Seeded) -> None:
    report = await build(api)
    rows = seeded.records
    per_route: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        per_route.setdefault((r["method"], r["route"]), []).append(r)
    expected = sorted(per_route.items(), key=lambda kv: (-len(kv[1]), kv[0][1], kv[0][0]))
    assert [(r.method, r.route, r.requests, r.errors) for r in report.routes] == [
        (m, route, len(rs), sum(map(failed, rs))) for (m, route), rs in expected]
    for row, (_, rs) in zip(report.routes, expected, strict=True):
        latencies = [r["latency_ms"] for r in rs]
        assert row.max_latency_ms == max(latencies)
        assert row.p95_latency_ms == pytest.approx(percentile_cont(latencies, 0.95), rel=0.01)
    assert [(s.status_code, s.requests) for s in report.status_codes] == sorted(
        Counter(r["status_code"] for r in rows).items())
    clients = Counter(r["source_ip"] for r in rows if "source_ip" in r)
    assert [(c.ip, c.requests) for c in report.top_clients] == sorted(
        clients.items(), key=lambda kv: (-kv[1], kv[0]))[:data.TOP_CLIENTS]


async def test_daily_series_covers_every_day_of_the_range(api: Api, seeded: Seeded) -> None:
    report = await build(api, since=FROM - timedelta(days=2))  # starts before the traffic
    by_day: dict[Any, list[dict[str, Any]]] = {}
    for r in seeded.records + outside_records():  # the row at FROM - 30 min is in range now; the one at TO not
        if r["timestamp"] < TO.isoformat():
            by_day.setdefault(r["timestamp"][:10], []).append(r)
    assert [d.day.isoformat() for d in report.days] == [
        (FROM + timedelta(days=n)).date().isoformat() for n in range(-2, 3)]
    assert (report.days[0].requests, report.days[0].avg_latency_ms, report.days[0].p95_latency_ms) == (0, None, None)
    assert len(by_day[report.days[1].day.isoformat()]) == 1
    for day in report.days[1:]:
        rs = by_day[day.day.isoformat()]
        assert (day.requests, day.errors) == (len(rs), sum(map(failed, rs)))
        assert day.avg_latency_ms == pytest.approx(sum(r["latency_ms"] for r in rs) / len(rs), rel=1e-12)


async def test_a_range_without_traffic_gives_an_empty_report(api: Api, seeded: Seeded) -> None:
    report = await build(api, since=FROM - timedelta(days=9), until=FROM - timedelta(days=8))
    assert (report.summary.requests, report.summary.errors, report.summary.error_rate,
            report.summary.unique_clients) == (0, 0, 0.0, 0)
    assert report.summary.latency == data.Latency()
    assert (report.routes, report.status_codes, report.top_clients) == ([], [], [])
    assert [(d.requests, d.error_rate) for d in report.days] == [(0, 0.0)]
    assert document.as_dict(report)["summary"]["latency"]["p95_ms"] is None


@pytest.mark.parametrize(("service", "since", "until", "message"), [
    ("nope", FROM, TO, "service: no service named 'nope'"),
    ("shop", TO, FROM, "from: must be before to"),
    ("shop", FROM + timedelta(minutes=30), TO, "from: must be on a whole UTC hour"),
    ("shop", FROM.replace(tzinfo=None), TO, "from: needs a time zone"),
    ("shop", FROM - timedelta(days=400), TO, "to: the range may span at most 366 days"),
], ids=["unknown-service", "from-after-to", "not-whole-hour", "naive", "too-long"])
async def test_bad_requests_name_the_field(api: Api, service: str, since: Any, until: Any, message: str) -> None:
    await api.service("shop")
    with pytest.raises(data.ReportError, match=message.replace("(", r"\(")):
        await build(api, service, since, until)
