"""`upwatch import gatus`: a Gatus configuration as an upwatch.yaml, and a list of what did not convert.

Contract: `convert(data)` takes Gatus's parsed YAML (any shape) and never raises for its content;
what it cannot express is a Note with the Gatus key and why, and the config it returns is meant
to pass `upwatch check-config` as written (the tests load every conversion with the real loader).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from upwatch.importers.gatus import alerts, endpoints, external, providers
from upwatch.importers.gatus.notes import Note, Notes, env_references

__all__ = ["Conversion", "GatusError", "Note", "convert", "read", "render"]

_DASHBOARD = "not applicable: upwatch's dashboards are Grafana's and its status pages (status_pages)"
NOT_APPLICABLE = {
    "ui": _DASHBOARD,
    "web": f"{_DASHBOARD}; the push API and /metrics listen on push.listen",
    "security": f"{_DASHBOARD}; upwatch's APIs use keys (upwatch key create)",
    "announcements": f"{_DASHBOARD}",
    "storage": "not applicable: upwatch stores results in PostgreSQL (storage.database_url, or the embedded one)",
    "metrics": "not applicable: upwatch always serves /metrics on push.listen",
    "suites": "upwatch has no suites (chained requests sharing a context); not converted",
    "connectivity": "upwatch has no connectivity checker; depends_on a canary endpoint holds back children's alerts",
    "remote": "upwatch reads no remote Gatus instances; not converted",
    "tunneling": "upwatch has no SSH tunnels; not converted",
    "skip-invalid-config-update": "not applicable: upwatch keeps its running config when a changed file is invalid",
}
_HANDLED = {"endpoints", "external-endpoints", "alerting", "maintenance", "concurrency", "disable-monitoring-lock"}


class GatusError(Exception):
    """The Gatus file cannot be read at all (missing, not YAML, not a mapping)."""


@dataclass
class Conversion:
    config: dict[str, Any]
    skipped: list[Note] = field(default_factory=list)  # not converted, with why
    changed: list[Note] = field(default_factory=list)  # converted, but behaves differently


def read(path: Path) -> dict[str, Any]:
    """Gatus's YAML, anchors and merge keys resolved; a directory is every *.yaml / *.yml below it, merged
    as Gatus merges them (mappings deeply, lists appended). GatusError with file:line when it does not parse."""
    if not path.is_dir():
        return _read_file(path)
    files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    if not files:
        raise GatusError(f"{path}: no *.yaml or *.yml files in this directory")
    merged: dict[str, Any] = {}
    for file in files:
        merged = _merged(merged, _read_file(file), "", file)
    return merged


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise GatusError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise GatusError(f"{where}: invalid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise GatusError(f"{path}: invalid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise GatusError(f"{path}: a Gatus configuration is a mapping (endpoints:, alerting:, ...)")
    return data


def _merged(into: Any, new: Any, key: str, file: Path) -> Any:
    if isinstance(into, dict) and isinstance(new, dict):
        out = dict(into)
        for name, value in new.items():
            out[name] = _merged(out[name], value, f"{key}.{name}" if key else str(name), file) if name in out else value
        return out
    if isinstance(into, list) and isinstance(new, list):
        return into + new
    raise GatusError(f"{file}: {key}: is set in more than one file (Gatus refuses that too)")


def convert(data: dict[str, Any]) -> Conversion:
    """The upwatch config for a Gatus one."""
    data = env_references(data)
    notes = Notes()
    names = endpoints.Names(notes)
    converted = endpoints.convert(data.get("endpoints"), notes, names)
    converted += external.convert(data.get("external-endpoints"), notes, names)
    config: dict[str, Any] = {}
    _top_level(data, config, notes)
    sent = providers.convert(data.get("alerting"), notes)
    alerting: dict[str, Any] = {}
    if sent.smtp:
        alerting["smtp"] = sent.smtp
    if sent.webhooks:
        alerting["webhooks"] = sent.webhooks
    if sent.channels:
        alerting["channels"] = sent.channels
    alerting.update(alerts.convert(converted, sent, notes))
    if not alerting.get("routes"):
        alerting.pop("routes", None)
    windows = alerts.maintenance(data.get("maintenance"), converted, notes)
    if windows:
        alerting["maintenance"] = windows
    config["endpoints"] = [c.endpoint for c in converted]
    if alerting:
        config["alerting"] = alerting
    return Conversion(config, notes.skipped, notes.changed)


def _top_level(data: dict[str, Any], config: dict[str, Any], notes: Notes) -> None:
    for key, value in data.items():
        name = str(key)
        if name in NOT_APPLICABLE:
            notes.skip(name, NOT_APPLICABLE[name])
        elif name == "concurrency" and isinstance(value, int) and value > 0:
            config["prober"] = {"max_concurrency": value}
        elif name in ("concurrency", "disable-monitoring-lock"):
            if value not in (None, False):
                notes.change(name, "unlimited in Gatus; upwatch's prober.max_concurrency (512) applies")
        elif name not in _HANDLED:
            notes.skip(name, "not a Gatus setting; left out (anchors in it were merged where they are used)")


def render(conversion: Conversion, source: str) -> str:
    """The config as YAML, headed by comments listing what was not converted and what differs."""
    lines = [f"# Converted from the Gatus configuration {source} by `upwatch import gatus`.",
             "# Check it with: upwatch check-config -c FILE"]
    for title, notes in (("Not converted", conversion.skipped), ("Converted, but different", conversion.changed)):
        if notes:
            lines += ["#", f"# {title} (Gatus key: why):"] + [f"#   {_one_line(note)}" for note in notes]
    body = yaml.safe_dump(conversion.config, sort_keys=False, allow_unicode=True, width=120, default_flow_style=False)
    return "\n".join(lines) + "\n\n" + body


def _one_line(note: Note) -> str:
    """A note as one comment line, whatever text (a multi-line body, a condition) it quotes."""
    return str(note).replace("\r", "\\r").replace("\n", "\\n")
