"""Expand a Grafana PostgreSQL panel query into the SQL Grafana would send, without Grafana.

Two passes, in Grafana's order:

1. the browser replaces template variables (`$endpoint`, `${service}`,
   `[[x]]`) and the built-ins `$__interval`, `$__interval_ms`, `$__from`,
   `$__to`; a single-value variable is inserted with quotes doubled, a multi-value
   one as a comma-separated list of quoted literals (the SQL datasources'
   `interpolateVariable`); unknown names are left alone;
2. the PostgreSQL backend replaces its macros `$__name(args)`: `$__timeFilter(c)`
   becomes `c BETWEEN '<from>' AND '<to>'` (RFC 3339 UTC), `$__timeGroup(c, 1m)`
   becomes `floor(extract(epoch from c)/60)*60` or, with the datasource's
   TimescaleDB flag, `time_bucket('60.000s',c)`; `$__timeGroupAlias` adds
   ` AS "time"`.

`$__interval` itself comes from the range: range / max data points, rounded to
Grafana's ladder of "nice" intervals, but never below the panel's (or else the
datasource's) minimum interval.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

DEFAULT_MAX_DATA_POINTS = 1000  # about the pixel width of a wide panel

# Grafana's rounding of range/points to a readable interval: (below ms, use ms).
_LADDER = [(10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
           (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000),
           (90000, 60000), (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000),
           (1500000, 1200000), (2700000, 1800000), (5400000, 3600000), (9000000, 7200000),
           (16200000, 10800000), (32400000, 21600000), (86400000, 43200000), (604800000, 86400000),
           (1814400000, 604800000), (3628800000, 2592000000)]
_UNITS_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000, "y": 31536000}
_INTERVAL = re.compile(r"^(\d+(?:\.\d+)?)(ms|[smhdwMy])$")
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^}]+))?\}")
_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")


class MacroError(ValueError):
    """A macro Grafana would also reject (unknown name, missing argument, bad interval)."""


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    @classmethod
    def last(cls, span: timedelta, now: datetime) -> TimeRange:
        """The range "now-<span> to now", at Grafana's millisecond precision."""
        end = now.astimezone(UTC).replace(microsecond=now.microsecond // 1000 * 1000)
        return cls(end - span, end)

    @property
    def span_ms(self) -> int:
        return int((self.end - self.start) / timedelta(milliseconds=1))


@dataclass(frozen=True)
class Variable:
    value: str | list[str]
    multi: bool = False
    include_all: bool = False


@dataclass(frozen=True)
class Context:
    """Everything a query's expansion depends on."""

    time_range: TimeRange
    variables: dict[str, Variable] = field(default_factory=dict)
    timescaledb: bool = False
    max_data_points: int = DEFAULT_MAX_DATA_POINTS
    min_interval: str = "15s"


def parse_interval(text: str) -> float:
    """'15s', '1m', '1h', '7d' -> seconds (Grafana's interval syntax; a bare number is seconds)."""
    text = text.strip().strip("'\"")
    if re.fullmatch(r"\d+", text):
        return float(text)
    m = _INTERVAL.match(text)
    if not m:
        raise MacroError(f"invalid interval {text!r}")
    return float(m.group(1)) * _UNITS_S[m.group(2)]


def interval_ms(time_range: TimeRange, max_data_points: int, min_interval: str) -> int:
    """Grafana's $__interval_ms for a range, panel width and minimum interval."""
    raw = time_range.span_ms / max_data_points
    rounded = next((nice for below, nice in _LADDER if raw < below), 31536000000)
    return max(rounded, int(parse_interval(min_interval) * 1000))


def interval_text(ms: int) -> str:
    """$__interval as Grafana writes it: the largest whole unit (1y, 1d, 2h, 5m, 30s, 500ms)."""
    seconds = ms / 1000
    for unit, size in (("y", 31536000), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{ms}ms"


def expand(sql: str, ctx: Context, *, panel_interval: str | None = None,
           panel_max_data_points: int | None = None) -> str:
    """The SQL Grafana would execute for this query text in this context."""
    ms = interval_ms(ctx.time_range, panel_max_data_points or ctx.max_data_points,
                     panel_interval or ctx.min_interval)
    builtins = {"__interval": interval_text(ms), "__interval_ms": str(ms),
                "__from": str(int(ctx.time_range.start.timestamp() * 1000)),
                "__to": str(int(ctx.time_range.end.timestamp() * 1000)),
                "__range_ms": str(ctx.time_range.span_ms), "__range_s": str(ctx.time_range.span_ms // 1000)}
    return interpolate_macros(interpolate_variables(sql, ctx.variables, builtins), ctx.time_range, ctx.timescaledb)


def interpolate_variables(sql: str, variables: dict[str, Variable], builtins: dict[str, str]) -> str:
    """Pass 1 (browser): template variables and built-in variables."""

    def replace(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        fmt = m.group(3) or m.group(5)
        if name in builtins:
            return builtins[name]
        if name not in variables:
            return m.group(0)
        return _format(variables[name], fmt)

    return _VARIABLE.sub(replace, sql)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _format(variable: Variable, fmt: str | None) -> str:
    values = variable.value if isinstance(variable.value, list) else [variable.value]
    if fmt is None:
        if isinstance(variable.value, str) and not (variable.multi or variable.include_all):
            return variable.value.replace("'", "''")
        return ",".join(_quote(v) for v in values)
    if fmt == "raw":
        return ",".join(values)
    if fmt == "csv":
        return ",".join(values)
    if fmt == "sqlstring":
        return ",".join(_quote(v) for v in values)
    raise MacroError(f"variable format {fmt!r} is not supported by this expander")


def interpolate_macros(sql: str, time_range: TimeRange, timescaledb: bool) -> str:
    """Pass 2 (backend): the PostgreSQL datasource's $__macros(...)."""

    def replace(m: re.Match[str]) -> str:
        name, args = m.group(1), [a.strip(" ") for a in m.group(2).split(",")]
        if name == "__timeGroup":
            after = sql.find(m.group(0)) + len(m.group(0))
            if sql[after:after + 1] == ",":  # pre-5.3 dashboards: $__timeGroup(...), meant the alias form
                name = "__timeGroupAlias"
        return _macro(name, args, time_range, timescaledb)

    return _MACRO.sub(replace, sql)


def _macro(name: str, args: list[str], time_range: TimeRange, timescaledb: bool) -> str:
    start, end = _rfc3339(time_range.start), _rfc3339(time_range.end)
    column = args[0] if args and args[0] else None
    if name in ("__time", "__timeEpoch", "__timeFilter", "__unixEpochFilter") and column is None:
        raise MacroError(f"missing time column argument for macro {name}")
    if name == "__time":
        return f'{column} AS "time"'
    if name == "__timeEpoch":
        return f'extract(epoch from {column}) as "time"'
    if name == "__timeFilter":
        return f"{column} BETWEEN '{start}' AND '{end}'"
    if name == "__timeFrom":
        return f"'{start}'"
    if name == "__timeTo":
        return f"'{end}'"
    if name in ("__timeGroup", "__timeGroupAlias"):
        if len(args) < 2:
            raise MacroError(f"macro {name} needs time column and interval and optional fill value")
        if len(args) > 2:
            raise MacroError(f"macro {name}: fill values are not supported by this expander")
        seconds = parse_interval(args[1])
        group = (f"time_bucket('{seconds:.3f}s',{args[0]})" if timescaledb
                 else f"floor(extract(epoch from {args[0]})/{_go_float(seconds)})*{_go_float(seconds)}")
        return group + (' AS "time"' if name == "__timeGroupAlias" else "")
    if name == "__unixEpochFilter":
        low, high = int(time_range.start.timestamp()), int(time_range.end.timestamp())
        return f"{column} >= {low} AND {column} <= {high}"
    raise MacroError(f"unknown macro {name!r}")


def _rfc3339(moment: datetime) -> str:
    """Go's RFC3339Nano in UTC: fraction without trailing zeros, 'Z' for UTC."""
    utc = moment.astimezone(UTC)
    fraction = f"{utc.microsecond:06d}".rstrip("0")
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def _go_float(value: float) -> str:
    """Go's %v for a float64: shortest digits, exponent form from 1e+06 or below 1e-4."""
    digits = Decimal(repr(value)).normalize()
    sign, numerals, exponent = digits.as_tuple()
    assert isinstance(exponent, int)
    point = len(numerals) + exponent  # position of the decimal point within the digits
    if -4 <= point - 1 < 6:
        text = format(digits, "f")
        return text
    mantissa = "".join(map(str, numerals))
    mantissa = mantissa[0] + ("." + mantissa[1:] if len(mantissa) > 1 else "")
    power = point - 1
    return f"{'-' if sign else ''}{mantissa}e{'+' if power >= 0 else '-'}{abs(power):02d}"
