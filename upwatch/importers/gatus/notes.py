"""What a Gatus conversion left out or changed, and the value spellings Gatus and upwatch differ in."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from upwatch import durations

_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
# Gatus expands $VAR and ${VAR} in the whole file; upwatch expands ${VAR} in values. $$ is a dollar in both.
_ENV = re.compile(r"\$\$|\$\{[^}]*\}|\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class Note:
    key: str  # the Gatus key path: endpoints[2].client.dns-resolver
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


@dataclass
class Notes:
    skipped: list[Note] = field(default_factory=list)  # not converted
    changed: list[Note] = field(default_factory=list)  # converted, but behaves differently

    def skip(self, key: str, message: str) -> None:
        self.skipped.append(Note(key, message))

    def change(self, key: str, message: str) -> None:
        self.changed.append(Note(key, message))


def go_duration(value: Any) -> timedelta:
    """A Go duration as Gatus reads it (`1h45m30s`, `300ms`, `1.5h`, `0`); raise ValueError otherwise."""
    text = str(value).strip()
    if text == "0":
        return timedelta(0)
    pos, total = 0, 0.0
    for m in _GO_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text or isinstance(value, bool):
        raise ValueError(f"{value!r} is not a Go duration such as 30s, 5m or 1h30m")
    return timedelta(seconds=total)


def spelled(value: timedelta) -> str:
    """upwatch's spelling of a duration."""
    return durations.format(value)


def env_references(data: Any) -> Any:
    """`data` with Gatus's `$VAR` written as upwatch's `${VAR}`, in every string."""
    if isinstance(data, str):
        return _ENV.sub(lambda m: "${" + m.group(1) + "}" if m.group(1) else m.group(0), data)
    if isinstance(data, dict):
        return {key: env_references(value) for key, value in data.items()}
    if isinstance(data, list):
        return [env_references(item) for item in data]
    return data


def dotted(base: str, *parts: str | int) -> str:
    """`base` extended by keys and list indexes: dotted('endpoints', 2, 'client') -> 'endpoints[2].client'."""
    out = base
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out
