"""Gatus endpoint alerts as upwatch routes and thresholds, and Gatus maintenance as upwatch windows."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from upwatch.importers.gatus.endpoints import Converted
from upwatch.importers.gatus.notes import Notes, go_duration, spelled
from upwatch.importers.gatus.providers import Providers

# Gatus alert key -> (upwatch alerting key, Gatus's default)
THRESHOLDS: dict[str, tuple[str, Any]] = {
    "failure-threshold": ("failure_threshold", 3),
    "success-threshold": ("success_threshold", 2),
    "send-on-resolved": ("send_resolved", False),
    "minimum-reminder-interval": ("repeat_interval", "0"),
}
_ALERT_KEYS = {"type", "enabled", "description", "provider-override", *THRESHOLDS}
_DAYS = {"monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu", "friday": "fri",
         "saturday": "sat", "sunday": "sun"}

Spot = tuple[Any, str]  # a value and the Gatus key it came from


def convert(endpoints: list[Converted], providers: Providers, notes: Notes) -> dict[str, Any]:
    """`routes` and the thresholds under `alerting`, for every endpoint's Gatus alerts."""
    targets: dict[str, tuple[set[str], set[str], set[str]]] = {}
    spots: dict[str, list[Spot]] = {name: [] for name in THRESHOLDS}
    for endpoint in endpoints:
        for j, alert in enumerate(endpoint.alerts):
            _alert(alert, f"{endpoint.key}.alerts[{j}]", endpoint, providers, notes, targets, spots)
    out: dict[str, Any] = _thresholds(spots, notes) if targets else {}
    unrouted = [e.name for e in endpoints if e.name not in targets]
    if targets and unrouted:
        notes.change("*.alerts", f"none on {len(unrouted)} endpoints ({', '.join(unrouted[:5])}"
                     f"{', ...' if len(unrouted) > 5 else ''}): upwatch alerts for every endpoint, and with no"
                     " route of their own theirs go to alerting.smtp.recipients and every webhook")
    routes: dict[tuple[tuple[str, ...], ...], list[str]] = {}
    for name, sent_to in targets.items():
        routes.setdefault(tuple(tuple(sorted(to)) for to in sent_to), []).append(name)
    # Recipients and webhooks as before; channels of types other than email and webhook (apprise) by name.
    out["routes"] = [{"endpoints": names, **({"recipients": list(r)} if r else {}),
                      **({"webhooks": list(w)} if w else {}), **({"channels": list(c)} if c else {})}
                     for (r, w, c), names in routes.items()]
    return out


def _alert(alert: Any, key: str, endpoint: Converted, providers: Providers, notes: Notes,
           targets: dict[str, tuple[set[str], set[str], set[str]]], spots: dict[str, list[Spot]]) -> None:
    if not isinstance(alert, dict):
        notes.skip(key, "not a mapping; not converted")
        return
    kind = str(alert.get("type") or "")
    provider = providers.by_type.get(kind)
    if provider is None:
        why = ("was not converted" if kind in providers.not_converted
               else "is not configured (Gatus ignores the alert too)")
        notes.skip(key, f"type {kind or 'missing'}: alerting.{kind or '?'} {why}; not converted")
        return
    defaults = provider.default_alert
    if alert.get("enabled", defaults.get("enabled")) is False:
        notes.skip(key, "disabled; not converted")
        return
    for name in THRESHOLDS:
        if name in alert:
            spots[name].append((alert[name], f"{key}.{name}"))
        elif name in defaults:
            spots[name].append((defaults[name], f"alerting.{kind}.default-alert.{name}"))
        else:
            spots[name].append((THRESHOLDS[name][1], f"{key} (Gatus's default {name})"))
    for name in [k for k in alert if k not in _ALERT_KEYS]:
        notes.skip(f"{key}.{name}", "not a Gatus alert setting; not converted")
    if "description" in alert:
        notes.skip(f"{key}.description", "upwatch's alert messages have no custom description")
    if "provider-override" in alert:
        notes.skip(f"{key}.provider-override", "upwatch has no per-alert channel settings")
    channel = provider.channel_for(endpoint.group)
    recipients, webhooks, channels = targets.setdefault(endpoint.name, (set(), set(), set()))
    recipients.update(channel.recipients)
    webhooks.update(channel.webhooks)
    channels.update(channel.channels)


def _thresholds(spots: dict[str, list[Spot]], notes: Notes) -> dict[str, Any]:
    """One value per setting (upwatch's are global): the most common; every other one is noted."""
    out: dict[str, Any] = {}
    for name, found in spots.items():
        target = THRESHOLDS[name][0]
        values = [_threshold(name, value) for value, _ in found]
        common = Counter(values).most_common(1)[0][0]
        for value, (_, at) in zip(values, found, strict=True):
            if value != common:
                notes.skip(at, f"{_shown(value)}: upwatch has one {target} for every endpoint; {_shown(common)},"
                               " the most common, is used")
        if name == "minimum-reminder-interval":
            if common == timedelta(0):
                notes.change("alerts[].minimum-reminder-interval", "not set: Gatus sends no reminders; upwatch"
                                                                   " reminds every repeat_interval (4h) while down")
            else:
                out[target] = spelled(common)
        else:
            out[target] = common
    return out


def _threshold(name: str, value: Any) -> Any:
    if name == "minimum-reminder-interval":
        try:
            return go_duration(value)
        except ValueError:
            return timedelta(0)
    if name == "send-on-resolved":
        return value is True
    return int(value) if isinstance(value, int) and value >= 1 else THRESHOLDS[name][1]


def _shown(value: Any) -> str:
    if isinstance(value, timedelta):
        return spelled(value) if value else "0 (none)"
    return str(value).lower() if isinstance(value, bool) else str(value)


def maintenance(top: Any, endpoints: list[Converted], notes: Notes) -> list[dict[str, Any]]:
    """Gatus's global `maintenance` and every endpoint's `maintenance-windows` as upwatch windows."""
    out = []
    if top is not None:
        window = _window(top, "maintenance", "maintenance", notes)
        if window is not None:
            out.append(window)
    for endpoint in endpoints:
        for k, conf in enumerate(endpoint.windows):
            window = _window(conf, f"{endpoint.key}.maintenance-windows[{k}]", f"{endpoint.name} maintenance {k + 1}",
                             notes)
            if window is not None:
                out.append({**window, "endpoints": [endpoint.name]})
    return out


def _window(conf: Any, key: str, name: str, notes: Notes) -> dict[str, Any] | None:
    if not isinstance(conf, dict):
        notes.skip(key, "not a mapping; not converted")
        return None
    if conf.get("enabled") is False:
        notes.skip(key, "disabled; not converted")
        return None
    zone = str(conf.get("timezone") or "UTC")
    try:
        start = _clock(conf.get("start"))
        length = go_duration(conf.get("duration"))
        _zone(zone)
        days = [_day(d) for d in conf.get("every") or []]
    except ValueError as e:
        notes.skip(key, f"{e}; not converted")
        return None
    if not timedelta(minutes=1) <= length < timedelta(days=1):
        notes.skip(f"{key}.duration", f"{conf.get('duration')}: upwatch's weekly windows last 1m to under 24h;"
                                      " not converted")
        return None
    end = (start + length) % timedelta(days=1)
    weekly: dict[str, Any] = {"start": _hhmm(start), "end": _hhmm(end)}
    if days:
        weekly = {"days": list(dict.fromkeys(days)), **weekly}
    for other in [k for k in conf if k not in {"enabled", "start", "duration", "timezone", "every"}]:
        notes.skip(f"{key}.{other}", "not a Gatus maintenance setting; not converted")
    return {"name": name, "weekly": weekly, "timezone": zone}


def _zone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone {name!r} is not a time zone like Europe/Amsterdam") from None


def _day(value: Any) -> str:
    text = str(value).lower()
    found = [short for day, short in _DAYS.items() if len(text) >= 3 and day.startswith(text)]
    if not found:
        raise ValueError(f"{value!r} is not a day such as Monday")
    return found[0]


def _clock(value: Any) -> timedelta:
    """hh:mm; YAML 1.1 (PyYAML) reads an unquoted 23:00 as the base-60 number 1380, Gatus's YAML as text."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return timedelta(minutes=value)
    hours, sep, minutes = str(value).partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or int(hours) > 23 or int(minutes) > 59:
        raise ValueError(f"start {value!r} is not hh:mm")
    return timedelta(hours=int(hours), minutes=int(minutes))


def _hhmm(value: timedelta) -> str:
    minutes = int(value.total_seconds()) // 60
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
