"""The Report as a JSON document: the dataclasses' fields, datetimes and dates in ISO 8601 (UTC)."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from typing import Any

from upwatch.reports.data import Report


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k.rstrip("_"): _plain(v) for k, v in value.items()}  # from_ -> from
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def as_dict(report: Report) -> dict[str, Any]:
    """The report as JSON-ready values (keys as in the dataclasses; from_ is "from")."""
    plain: dict[str, Any] = _plain(dataclasses.asdict(report))
    return plain


def dumps(report: Report) -> str:
    """The report as a JSON text."""
    return json.dumps(as_dict(report), indent=2)
