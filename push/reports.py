"""GET /reports: one service's report (upwatch.reports) over a range, as JSON or PDF.

A service key reads its own service's report only; the admin token names any service.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from push.bodies import Refusal
from push.context import reply
from push.keys import DB_TIMEOUT_S
from push.operations import Call
from push.query import Reader, named_scope
from upwatch.reports import data, document

WHEN = ("YYYY-MM-DD or an ISO 8601 time on a whole UTC hour (no zone: UTC); as `to`, a date is the end of"
        " that day")


class ReportQuery(BaseModel):
    """Parameters of GET /reports."""

    model_config = ConfigDict(extra="forbid")

    service: Annotated[str, Field(max_length=100, pattern=r"^[^\x00]*$",
                                  description="required with the admin token; a key reads its own")] | None = None
    # Documented as text: a date or a time, which no single JSON Schema format covers.
    from_: Annotated[datetime, Field(alias="from"), WithJsonSchema({"type": "string", "description": WHEN})]
    to: Annotated[datetime, WithJsonSchema({"type": "string", "description": WHEN})]
    format: Literal["json", "pdf"] = "json"

    @field_validator("from_", mode="before")
    @classmethod
    def _from(cls, value: Any) -> datetime:
        return _bound(value, "from", end=False)

    @field_validator("to", mode="before")
    @classmethod
    def _to(cls, value: Any) -> datetime:
        return _bound(value, "to", end=True)


def _bound(value: Any, field: str, *, end: bool) -> datetime:
    if not isinstance(value, str):
        raise ValueError("must be a date or an ISO 8601 time")
    try:
        return data.whole_hour(data.parse_bound(value, field, end=end), field)
    except data.ReportError as e:
        raise ValueError(e.reason) from None


def _filename(service: str, report: data.Report) -> str:
    """A header-safe file name: services may be named with any characters."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", service)[:60] or "service"
    return f"report-{safe}-{report.from_:%Y%m%dT%H}-{report.to:%Y%m%dT%H}.pdf"


async def get_report(call: Call[Reader, None, ReportQuery]) -> web.StreamResponse:
    """The report of the key's service (or the named one, for the admin) over [from, to)."""
    q = call.query
    scope = await named_scope(call.context, call.caller, q.service)
    if isinstance(scope, Refusal):
        return scope.response()
    if scope is None:
        return Refusal(422, "invalid query parameters",
                       [{"field": "service", "reason": "required with the admin token"}]).response()
    try:
        async with call.context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
            report = await data.build(conn, scope[1], q.from_, q.to)
    except data.ReportError as e:
        return Refusal(422, "invalid query parameters", [{"field": e.field, "reason": e.reason}]).response()
    if q.format == "json":
        return reply(document.as_dict(report))
    # matplotlib (and numpy) load on the first PDF, not with every `upwatch` command.
    from upwatch.reports import pdf

    body = await asyncio.to_thread(pdf.render, report)  # about a second of CPU: off the event loop
    return web.Response(body=body, content_type="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="{_filename(scope[1], report)}"'})
