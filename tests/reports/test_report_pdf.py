"""The PDF renderer alone: long tables continue over numbered pages, long routes are cut to fit."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from upwatch.reports import data, pdf

from .conftest import needs_poppler, pdf_pages, pdf_text

START = datetime(2026, 11, 1, tzinfo=UTC)


def report(routes: int) -> data.Report:
    rows = [data.RouteRow("GET", f"/api/v1/things/{{id}}/part-{i}/" + "w" * 40, 1000 - i, i, i / (1000 - i),
                          12.5, 150.0, 20_000.0) for i in range(routes)]
    days = [data.DayRow(date(2026, 11, 1) + timedelta(days=i), 100, 1, 0.01, 12.5, 150.0) for i in range(30)]
    summary = data.Summary(sum(r.requests for r in rows), sum(r.errors for r in rows), 0.01, 3,
                           data.Latency(1.0, 12.5, 10.0, 150.0, 300.0, 20_000.0))
    return data.Report("shop", START, START + timedelta(days=30), START, summary, rows,
                       [data.StatusRow(200, 99)], [data.ClientRow("10.0.0.1", 99)], days)


@needs_poppler
def test_long_route_table_continues_over_numbered_pages(tmp_path: Path) -> None:
    out = tmp_path / "long.pdf"
    out.write_bytes(pdf.render(report(pdf.ROWS_PER_PAGE + 6)))
    assert pdf_pages(out) == 5  # title, charts, routes, routes continued, clients
    first, second = pdf_text(out, 3), pdf_text(out, 4)
    assert "Routes" in first and "part-0/" in first and f"part-{pdf.ROWS_PER_PAGE - 1}/" in first
    assert "Routes (continued)" in second and f"part-{pdf.ROWS_PER_PAGE}/" in second and "page 4 of 5" in second
    assert "w" * 20 not in first and "…" in first  # cut to the column, not drawn over the next one
    assert "20.0 s" in first  # 20,000 ms written short
