"""How assertion values read as numbers and text, following Gatus's condition semantics.

Gatus resolves both sides of a condition to text and compares them as integers
when both parse as one in Go's base-prefixed syntax (`0x1F`, `0o17`, `0b11`,
`1_000`), otherwise as text. We keep that, and additionally compare decimals
numerically when one side is a real number (a JSON number, a latency), so
`[BODY].price == 1.50` holds for `{"price": 1.5}` while the JSON string
"1.10" stays different from 1.1.
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any

# Go's strconv.ParseInt(s, 0, 64) syntax, except that a leading 0 is decimal (see docs/prober.md).
_INTEGER = re.compile(r"[+-]?(?:0[xX](?:_?[0-9a-fA-F])+|0[oO](?:_?[0-7])+|0[bB](?:_?[01])+|[0-9](?:_?[0-9])*)")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_BASES = {"x": 16, "o": 8, "b": 2}


def integer(value: Any) -> int | None:
    """`value` as an integer (42, "0x2A", "0o52", "0b101010", "-4_2", 42.0), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    text = value if isinstance(value, str) else None
    if text is None or not _INTEGER.fullmatch(text):
        return None
    sign, digits = (-1, text[1:]) if text[0] == "-" else (1, text.lstrip("+"))
    base = _BASES.get(digits[1:2].lower(), 10) if digits[:1] == "0" else 10
    return sign * int(digits[2:] if base != 10 else digits, base)


def number(value: Any) -> float | None:
    """`value` as a finite number (any integer syntax or a decimal such as 1.5e3), or None."""
    whole = integer(value)
    if whole is not None:
        return float(whole)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return float(value)
    return None


def is_measured(value: Any) -> bool:
    """A number that is one (JSON number, status, latency), not text that looks like one."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def equal(actual: Any, expected: Any) -> bool:
    """Gatus's `==` on two resolved values, numbers being read as numbers."""
    a, e = integer(actual), integer(expected)
    if a is not None and e is not None:
        return a == e
    if is_measured(actual) or is_measured(expected):
        x, y = number(actual), number(expected)
        if x is not None and y is not None:
            return x == y
    return text(actual) == text(expected)


def text(value: Any) -> str:
    """What a value looks like in a condition: JSON for null, booleans and containers, 5 for 5.0."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def duration_text(ms: float) -> str:
    """A number of milliseconds the way Gatus shows certificate expiry: 336h, 1h30m, 1h0m15s, -24h."""
    seconds = int(ms / 1000)  # whole seconds, towards zero
    if seconds == 0:
        return "0s"
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    parts = [(seconds // 3600, "h"), (seconds // 60 % 60, "m"), (seconds % 60, "s")]
    while parts[-1][0] == 0:
        parts.pop()
    while parts[0][0] == 0:
        parts.pop(0)
    return sign + "".join(f"{n}{unit}" for n, unit in parts)


@functools.lru_cache(maxsize=4096)
def pattern(text: str) -> re.Pattern[str]:
    """A pat() pattern, in Go's filepath.Match syntax as Gatus uses it (* ? [a-z] [^a-z] \\x), matching whole values.

    Raises ValueError for a malformed pattern, which Gatus would silently never match.
    """
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "[":
            cls, i = _char_class(text, i + 1)
            out.append(cls)
            continue
        if c == "\\":
            literal, i = _escaped(text, i)
            out.append(re.escape(literal))
            continue
        out.append({"*": ".*", "?": "."}.get(c) or re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _char_class(text: str, i: int) -> tuple[str, int]:
    negate = text[i:i + 1] == "^"
    i += negate
    parts: list[str] = []
    while i >= len(text) or text[i] != "]" or not parts:
        lo, i = _class_char(text, i)
        if text[i:i + 1] != "-":
            parts.append(re.escape(lo))
            continue
        hi, i = _class_char(text, i + 1)
        if hi < lo:
            raise ValueError(f"bad range {lo}-{hi} in pattern {text!r}")
        parts.append(f"{re.escape(lo)}-{re.escape(hi)}")
    return ("[^" if negate else "[") + "".join(parts) + "]", i + 1


def _class_char(text: str, i: int) -> tuple[str, int]:
    if i >= len(text):
        raise ValueError(f"unclosed [ in pattern {text!r}")
    if text[i] in "-]":
        raise ValueError(f"bad character class in pattern {text!r} (escape - and ] with \\)")
    return _escaped(text, i) if text[i] == "\\" else (text[i], i + 1)


def _escaped(text: str, i: int) -> tuple[str, int]:
    if i + 1 >= len(text):
        raise ValueError(f"pattern {text!r} ends with a lone backslash")
    return text[i + 1], i + 2
