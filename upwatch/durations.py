"""Durations as operators write them: 500ms, 15s, 5m, 1h, 7d, or a number of seconds."""

from __future__ import annotations

import functools
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse(text: str | int | float | timedelta) -> timedelta:
    """Parse '1h30m', '15s', '7d' or a bare number of seconds; raise ValueError otherwise."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a duration (use e.g. 15s, 5m, 1h, 7d)")
    if isinstance(text, int | float):
        return timedelta(seconds=text)
    return _parse_text(str(text))


@functools.lru_cache(maxsize=1024)  # a config repeats a few spellings (15s, 10s) for thousands of endpoints
def _parse_text(text: str) -> timedelta:
    s = text.strip().replace(" ", "")
    if not s:
        raise ValueError("empty duration (use e.g. 15s, 5m, 1h, 7d)")
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s):
        raise ValueError(f"{text!r} is not a duration (use e.g. 15s, 5m, 1h, 7d)")
    return timedelta(seconds=total)


def format(value: timedelta) -> str:
    """The shortest exact spelling: 15s, 5m, 1h30m, 7d."""
    ms = round(value.total_seconds() * 1000)
    if ms == 0:
        return "0s"
    if ms % 1000:
        return f"{ms}ms"
    seconds, out = ms // 1000, ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out


def at_least(minimum: str) -> Any:
    """A pydantic validator that parses a duration and refuses values below `minimum`."""
    low = parse(minimum)

    def check(value: Any) -> timedelta:
        parsed = parse(value)
        if parsed < low:
            raise ValueError(f"{value!r} must be at least {minimum}")
        return parsed

    return BeforeValidator(check)


_serialize = PlainSerializer(format, return_type=str)

Duration = Annotated[timedelta, BeforeValidator(parse), _serialize]
PositiveDuration = Annotated[timedelta, at_least("1ms"), _serialize]
Interval = Annotated[timedelta, at_least("1s"), _serialize]
