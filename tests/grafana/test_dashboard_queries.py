"""Every panel, annotation and variable query of every dashboard, expanded the way Grafana expands it,
run as the read-only upwatch_reader role against seeded data, returns what its panel can draw."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grafana_dashboards
import grafana_seed
import psycopg
import pytest
from grafana_dashboards import run_as_reader
from grafana_macros import Context, TimeRange, Variable, expand, interval_ms

# PostgreSQL type OIDs
TIME_TYPES = {1184, 1114}  # timestamptz, timestamp
NUMERIC_TYPES = {20, 21, 23, 700, 701, 1700}  # int8, int2, int4, float4, float8, numeric
TEXT_TYPES = {25, 1043, 19, 1042}  # text, varchar, name, bpchar

QUERIES = grafana_dashboards.all_queries()
RANGES = {"6h": timedelta(hours=6), "24h": timedelta(hours=24), "30d": timedelta(days=30)}
SCALE = grafana_seed.Scale()
VARIABLES = {"endpoint": Variable("api-000"), "service": Variable("o'brien-api")}


@dataclass(frozen=True)
class Seeded:
    url: str
    now: datetime
    timescaledb: bool


@pytest.fixture(scope="module")
def seeded(pg_server) -> Iterator[Seeded]:  # type: ignore[no-untyped-def]
    name, url = pg_server.create_database()
    now = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(url, autocommit=True) as conn:
        grafana_seed.seed(conn, SCALE, now)
    yield Seeded(url, now, pg_server.timescaledb(url))
    pg_server.drop_database(name)


@pytest.fixture(scope="module")
def empty(pg_server) -> Iterator[str]:  # type: ignore[no-untyped-def]
    name, url = pg_server.create_database()
    yield url
    pg_server.drop_database(name)


def expanded(query: grafana_dashboards.Query, time_range: TimeRange, timescaledb: bool) -> str:
    ctx = Context(time_range, VARIABLES, timescaledb=timescaledb,
                  min_interval=grafana_dashboards.datasource()["jsonData"]["timeInterval"])
    return expand(query.sql, ctx, panel_interval=query.interval, panel_max_data_points=query.max_data_points)


def check_shape(query: grafana_dashboards.Query, columns: list[tuple[str, int]], rows: list[tuple],  # type: ignore[type-arg]
                time_range: TimeRange) -> None:
    """Assert the result is something the panel type can draw (and that it is not empty)."""
    names = [name for name, _ in columns]
    types = dict(columns)
    numeric = [n for n, t in columns if t in NUMERIC_TYPES and n != "time"]
    assert rows, f"{query.id}: no rows on seeded data"
    if query.kind in ("timeseries", "heatmap"):
        assert query.format == "time_series"
        assert "time" in names, f"{query.id}: no time column in {names}"
        assert types["time"] in TIME_TYPES | NUMERIC_TYPES
        assert numeric, f"{query.id}: no numeric value column in {names}"
        others = [n for n, t in columns if n != "time" and t not in NUMERIC_TYPES]
        assert all(types[n] in TEXT_TYPES for n in others), f"{query.id}: non-text label columns {others}"
        check_times_in_range(query, [row[names.index("time")] for row in rows], time_range)
    elif query.kind == "stat":
        assert len(rows) == 1, f"{query.id}: a stat panel expects one row, got {len(rows)}"
        assert numeric, f"{query.id}: no numeric column in {names}"
        assert any(rows[0][names.index(n)] is not None for n in numeric), f"{query.id}: every value is NULL"
    elif query.kind in ("bargauge", "piechart"):
        assert numeric and any(t in TEXT_TYPES for _, t in columns), f"{query.id}: needs label + value, got {names}"
    elif query.kind == "annotation":
        assert "time" in names and "text" in names, f"{query.id}: annotations need time and text, got {names}"
        check_times_in_range(query, [row[names.index("time")] for row in rows], time_range)
    elif query.kind == "variable":
        assert types[names[0]] in TEXT_TYPES
    else:
        assert query.kind == "table", f"{query.id}: unexpected panel type {query.kind}"


def check_times_in_range(query: grafana_dashboards.Query, times: list, time_range: TimeRange) -> None:  # type: ignore[type-arg]
    # Grouping floors a time to its bucket, so the first one may start up to one interval early.
    slack = timedelta(days=1)
    for value in times:
        moment = value if isinstance(value, datetime) else datetime.fromtimestamp(float(value), UTC)
        assert time_range.start - slack <= moment <= time_range.end, f"{query.id}: time {moment} outside the range"


@pytest.mark.parametrize("span", RANGES)
@pytest.mark.parametrize("query", QUERIES, ids=[q.id for q in QUERIES])
def test_query_returns_what_its_panel_draws(seeded: Seeded, query: grafana_dashboards.Query, span: str) -> None:
    time_range = TimeRange.last(RANGES[span], seeded.now + timedelta(seconds=1))
    columns, rows = run_as_reader(seeded.url, expanded(query, time_range, timescaledb=False))
    check_shape(query, columns, rows, time_range)


@pytest.mark.parametrize("span", ["6h", "30d"])
@pytest.mark.parametrize("query", QUERIES, ids=[q.id for q in QUERIES])
def test_query_with_timescaledb_time_bucket(seeded: Seeded, query: grafana_dashboards.Query, span: str) -> None:
    if not seeded.timescaledb:
        pytest.skip("UPWATCH_TEST_DATABASE_URL has no timescaledb extension: time_bucket() is TimescaleDB-only")
    time_range = TimeRange.last(RANGES[span], seeded.now + timedelta(seconds=1))
    sql = expanded(query, time_range, timescaledb=True)
    columns, rows = run_as_reader(seeded.url, sql)
    check_shape(query, columns, rows, time_range)


Panel = dict[str, Any]
TABLES = [(uid, panel) for uid, model in sorted(grafana_dashboards.load().items())
          for panel in grafana_dashboards.panels(model) if panel["type"] == "table"]


def _filled(value: object) -> bool:
    return value is not None and str(value).strip() not in ("", "[]", "{}")


TABLE_IDS = [f"{uid.removeprefix('upwatch-')}/{p['title']}" for uid, p in TABLES]


def _table_result(seeded: Seeded, uid: str, panel: Panel, span: str) -> tuple[str, list[str], list[tuple[Any, ...]]]:
    (query,) = [q for q in QUERIES if q.dashboard == uid and q.where == panel["title"]]
    time_range = TimeRange.last(RANGES[span], seeded.now + timedelta(seconds=1))
    columns, rows = run_as_reader(seeded.url, expanded(query, time_range, timescaledb=False))
    return query.id, [name for name, _ in columns], rows


@pytest.mark.parametrize("span", RANGES)
@pytest.mark.parametrize(("uid", "panel"), TABLES, ids=TABLE_IDS)
def test_table_panel_columns_are_returned(seeded: Seeded, uid: str, panel: Panel, span: str) -> None:
    """Every column a table panel names (its column list, overrides, links, sorting) comes back from its query."""
    where, names, rows = _table_result(seeded, uid, panel, span)
    errors = grafana_dashboards.shown(panel, names).errors
    assert not errors, f"{where}: " + "; ".join(errors)
    assert rows, f"{where}: no rows on seeded data"


@pytest.mark.parametrize(("uid", "panel"), TABLES, ids=TABLE_IDS)
def test_table_panel_shows_no_empty_column(seeded: Seeded, uid: str, panel: Panel) -> None:
    """On data shaped as the services store it, over 30 days, no column a table shows is empty in every row."""
    where, names, rows = _table_result(seeded, uid, panel, "30d")
    shown = grafana_dashboards.shown(panel, names).fields
    empty = [name for name in names if name in shown and not any(_filled(r[names.index(name)]) for r in rows)]
    assert rows and not empty, f"{where}: columns empty in all {len(rows)} rows: {empty}"


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p["fieldConfig"]["overrides"].append({"matcher": {"id": "byName", "options": "expected"},
                                                     "properties": []}), "refers to column 'expected'"),
    (lambda p: p.update(transformations=[{"id": "organize", "options": {"indexByName": {"time": 0, "message": 1}}}]),
     "organize.indexByName names 'message'"),
    (lambda p: p.update(transformations=[{"id": "organize", "options": {"indexByName": {"time": 0}}}]),
     "returned column 'status' is not in the panel's indexByName"),
    (lambda p: p["fieldConfig"]["defaults"].update(links=[{"url": "/d/x?var-e=${__data.fields.name}"}]),
     "refers to column 'name'"),
    (lambda p: p.update(styles=[{"pattern": "name"}]), "column style for 'name'"),
    (lambda p: p.update(transformations=[{"id": "merge", "options": {}}]), "transformation 'merge' is not modelled"),
], ids=["override", "index", "undeclared", "link", "style", "unknown-transformation"])
def test_a_panel_naming_a_column_its_query_does_not_return_is_caught(change: Callable[[Panel], None],
                                                                     message: str) -> None:
    panel: Panel = {"type": "table", "title": "t", "fieldConfig": {"defaults": {}, "overrides": []}, "options": {}}
    change(panel)
    errors = grafana_dashboards.shown(panel, ["time", "status"]).errors
    assert any(message in e for e in errors), errors


@pytest.mark.parametrize("query", QUERIES, ids=[q.id for q in QUERIES])
def test_query_runs_on_an_empty_database(empty: str, query: grafana_dashboards.Query) -> None:
    time_range = TimeRange.last(RANGES["24h"], datetime.now(UTC))
    columns, rows = run_as_reader(empty, expanded(query, time_range, timescaledb=False))
    assert columns
    if query.kind == "stat":
        assert len(rows) == 1  # a stat query still answers with one row of zeros or NULLs


def test_short_ranges_read_raw_rows_and_long_ranges_read_rollups() -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    assert interval_ms(TimeRange.last(RANGES["6h"], now), 1000, "15s") < 60000
    assert interval_ms(TimeRange.last(RANGES["24h"], now), 1000, "15s") >= 60000
    assert interval_ms(TimeRange.last(RANGES["30d"], now), 1000, "15s") >= 60000


def test_raw_branch_is_pruned_when_reading_rollups(seeded: Seeded) -> None:
    (query,) = [q for q in QUERIES if q.id == "overview/Failed checks"]
    time_range = TimeRange.last(RANGES["30d"], seeded.now)
    sql = expanded(query, time_range, timescaledb=False)
    with psycopg.connect(seeded.url) as conn:
        plan = "\n".join(r[0] for r in conn.execute(("EXPLAIN ANALYZE " + sql).encode()).fetchall())
    # The probe_results branch is planned behind a false one-time filter and never executed.
    assert "One-Time Filter: false" in plan
    assert "probe_results" not in plan or "never executed" in plan


def test_overview_status_shows_planted_states(seeded: Seeded) -> None:
    (query,) = [q for q in QUERIES if q.id == "overview/Status now"]
    sql = expanded(query, TimeRange.last(RANGES["6h"], seeded.now), timescaledb=False)
    _, rows = run_as_reader(seeded.url, sql)
    status = {row[0]: row[1] for row in rows}
    assert status["api-001"] == "DOWN"
    assert status["api-002"] == "ANOMALOUS"
    assert status["api-003"] == "UP"
    assert f"api-{SCALE.endpoints - 1:03d}" not in status  # disabled endpoints are not listed


def test_endpoint_variable_lists_every_endpoint(seeded: Seeded) -> None:
    (query,) = [q for q in QUERIES if q.id == "endpoint/variable: endpoint"]
    _, rows = run_as_reader(seeded.url, query.sql)
    assert [r[0] for r in rows] == grafana_seed.endpoint_names(SCALE)


def test_reader_cannot_write_or_read_key_hashes(seeded: Seeded) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        run_as_reader(seeded.url, "SELECT key_hash FROM api_keys")
    with psycopg.connect(seeded.url) as conn:
        conn.execute("SET ROLE upwatch_reader")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM probe_results")


def _class_counts(url: str, service: str, time_range: TimeRange) -> list[tuple[str, int]]:
    """Requests by status class straight from the raw request logs."""
    with psycopg.connect(url) as conn:
        return [(label, int(n)) for label, n in conn.execute(
            "SELECT CASE WHEN status_code IS NULL THEN 'no response' ELSE (status_code / 100)::text || 'xx' END,"
            " count(*) FROM request_logs l JOIN services s ON s.id = l.service_id"
            " WHERE s.name = %s AND l.time BETWEEN %s AND %s GROUP BY 1 ORDER BY 1",
            (service, time_range.start, time_range.end)).fetchall()]


@pytest.mark.parametrize(("start_ago", "length"), [
    (timedelta(hours=6), timedelta(hours=6)),
    (timedelta(hours=24), timedelta(hours=24)),
    (timedelta(days=30), timedelta(days=30)),
    (timedelta(hours=5, minutes=17, seconds=3), timedelta(hours=3, minutes=2)),  # both ends inside an hour
    (timedelta(hours=2, minutes=50), timedelta(minutes=20)),  # shorter than an hour
    (timedelta(hours=30), timedelta(hours=4)),  # starts and ends on the hour (seeded.now is on the second)
], ids=["6h", "24h", "30d", "mid-hour-ends", "under-an-hour", "on-the-hour"])
def test_status_classes_from_hourly_counts_equal_the_raw_logs(seeded: Seeded, start_ago: timedelta,
                                                              length: timedelta) -> None:
    (query,) = [q for q in QUERIES if q.id == "traffic/Status codes"]
    if start_ago == timedelta(hours=30):
        hour = seeded.now.replace(minute=0, second=0) - timedelta(hours=30)
        time_range = TimeRange(hour, hour + length)
    else:
        start = seeded.now - start_ago
        time_range = TimeRange(start, start + length)
    _, rows = run_as_reader(seeded.url, expanded(query, time_range, seeded.timescaledb))
    service = VARIABLES["service"].value
    assert isinstance(service, str)
    expected = _class_counts(seeded.url, service, time_range)
    assert expected, "no seeded logs in the range"
    assert [(label, int(n)) for label, n in rows] == expected
