"""The expander produces what Grafana's PostgreSQL datasource produces (examples from Grafana's docs and source)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from grafana_macros import (
    Context,
    MacroError,
    TimeRange,
    Variable,
    expand,
    interpolate_macros,
    interval_ms,
    interval_text,
)

RANGE = TimeRange(datetime(2017, 4, 21, 5, 1, 17, tzinfo=UTC), datetime(2017, 4, 21, 5, 6, 17, tzinfo=UTC))


@pytest.mark.parametrize(("sql", "timescaledb", "expected"), [
    ("$__timeFilter(dateColumn)", False, "dateColumn BETWEEN '2017-04-21T05:01:17Z' AND '2017-04-21T05:06:17Z'"),
    ("$__timeFrom()", False, "'2017-04-21T05:01:17Z'"),
    ("$__timeTo()", False, "'2017-04-21T05:06:17Z'"),
    ("$__time(dateColumn)", False, 'dateColumn AS "time"'),
    ("$__timeEpoch(dateColumn)", False, 'extract(epoch from dateColumn) as "time"'),
    ("$__timeGroup(dateColumn,'5m')", False, "floor(extract(epoch from dateColumn)/300)*300"),
    ("$__timeGroup(dateColumn, 1h)", False, "floor(extract(epoch from dateColumn)/3600)*3600"),
    ("$__timeGroupAlias(dateColumn,'5m')", False, 'floor(extract(epoch from dateColumn)/300)*300 AS "time"'),
    ("$__timeGroup(dateColumn,'5m')", True, "time_bucket('300.000s',dateColumn)"),
    ("$__timeGroupAlias(r.time, 30d)", False, 'floor(extract(epoch from r.time)/2.592e+06)*2.592e+06 AS "time"'),
    ("SELECT $__timeGroup(t, 1m), v", False, 'SELECT floor(extract(epoch from t)/60)*60 AS "time", v'),
    ("$__unixEpochFilter(ts)", False, "ts >= 1492750877 AND ts <= 1492751177"),
], ids=["timeFilter", "timeFrom", "timeTo", "time", "timeEpoch", "timeGroup", "timeGroup-unquoted",
        "timeGroupAlias", "timeGroup-timescaledb", "timeGroup-exponent", "timeGroup-legacy-alias", "unixEpochFilter"])
def test_macros_expand_like_grafana(sql: str, timescaledb: bool, expected: str) -> None:
    assert interpolate_macros(sql, RANGE, timescaledb) == expected


def test_fractional_times_keep_milliseconds() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)
    assert interpolate_macros("$__timeFrom()", TimeRange(moment, moment), False) == "'2026-01-02T03:04:05.12Z'"


@pytest.mark.parametrize("sql", ["$__nope(x)", "$__timeGroup(t)", "$__timeFilter()", "$__timeGroup(t, 5 minutes)"])
def test_bad_macros_are_errors(sql: str) -> None:
    with pytest.raises(MacroError):
        interpolate_macros(sql, RANGE, False)


@pytest.mark.parametrize(("span", "points", "minimum", "expected"), [
    (timedelta(minutes=5), 1000, "15s", "15s"),  # never below the minimum interval
    (timedelta(hours=6), 1000, "15s", "20s"),
    (timedelta(hours=24), 1000, "15s", "1m"),
    (timedelta(days=7), 1000, "15s", "10m"),
    (timedelta(days=30), 1000, "15s", "30m"),
    (timedelta(days=30), 300, "15s", "2h"),
    (timedelta(hours=1), 1000, "1m", "1m"),
], ids=["5m", "6h", "24h", "7d", "30d", "30d-narrow", "panel-minimum"])
def test_interval_follows_grafanas_ladder(span: timedelta, points: int, minimum: str, expected: str) -> None:
    time_range = TimeRange.last(span, datetime(2026, 11, 22, tzinfo=UTC))
    assert interval_text(interval_ms(time_range, points, minimum)) == expected


def test_single_value_variable_is_inserted_with_quotes_doubled() -> None:
    ctx = Context(RANGE, {"service": Variable("o'brien-api")})
    assert expand("WHERE s.name = '$service'", ctx) == "WHERE s.name = 'o''brien-api'"


def test_multi_value_variable_becomes_a_quoted_list() -> None:
    ctx = Context(RANGE, {"endpoint": Variable(["a", "b'c"], multi=True)})
    assert expand("WHERE name IN ($endpoint)", ctx) == "WHERE name IN ('a','b''c')"
    assert expand("WHERE name IN (${endpoint})", ctx) == "WHERE name IN ('a','b''c')"
    assert expand("x = '${endpoint:csv}'", ctx) == "x = 'a,b'c'"


def test_interval_builtins_and_unknown_variables() -> None:
    ctx = Context(TimeRange.last(timedelta(days=1), datetime(2026, 11, 22, tzinfo=UTC)))
    sql = "SELECT $__timeGroupAlias(t, $__interval), count(*) * 60000.0 / $__interval_ms, '$nothing' FROM x"
    assert expand(sql, ctx) == ('SELECT floor(extract(epoch from t)/60)*60 AS "time", count(*) * 60000.0 / 60000, '
                                "'$nothing' FROM x")
