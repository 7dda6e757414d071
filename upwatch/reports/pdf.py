"""The Report as an A4 PDF for print: a title page with the summary, daily charts, then tables.

Drawn with matplotlib's object API (Figure, no pyplot: no global state, safe in a server thread) and
written by its PDF backend; fonts are embedded as TrueType (pdf.fonttype 42) so the text stays text.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib as mpl
from matplotlib.axes import Axes
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from upwatch.reports.data import Report

A4_IN = (8.27, 11.69)
ROWS_PER_PAGE = 34
MAX_CELL = 60
ROUTE_CHARS = 34  # what fits the routes table's route column at 8 pt
GREY = "#555555"
# rc_context changes matplotlib's global rcParams while a PDF is written: one render at a time,
# so renders in server threads (asyncio.to_thread) cannot undo each other's settings.
_RENDERING = threading.Lock()


@dataclass(frozen=True)
class Table:
    """A titled table; long ones continue over several pages."""

    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    empty: str
    widths: Sequence[float] | None = None  # column fractions; None: equal


def _ms(value: float | None) -> str:
    """Short enough for a narrow column: 12.3 ms, 1,234 ms, 20.5 s."""
    if value is None:
        return "-"
    if value >= 10_000:
        return f"{value / 1000:,.1f} s"
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"


def _pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def _cell(text: str, limit: int = MAX_CELL) -> str:
    """Text cut to `limit` characters: matplotlib's table cells do not clip what overflows them."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _page(title: str) -> Figure:
    fig = Figure(figsize=A4_IN)
    fig.text(0.08, 0.95, title, fontsize=16, weight="bold")
    return fig


def _draw_table(fig: Figure, top: float, table: Table, rows: Sequence[Sequence[str]]) -> None:
    """Rows under the table's title, from `top` (figure fraction) down."""
    fig.text(0.08, top, table.title, fontsize=12, weight="bold")
    if not rows:
        fig.text(0.08, top - 0.03, table.empty, fontsize=10, color=GREY)
        return
    height = 0.022 * (len(rows) + 1)
    ax = fig.add_axes((0.08, top - 0.015 - height, 0.84, height))
    ax.axis("off")
    drawn = ax.table(cellText=[[_cell(c) for c in r] for r in rows], colLabels=list(table.header),
                     loc="upper left", cellLoc="left", colLoc="left", bbox=Bbox.from_bounds(0, 0, 1, 1),
                     colWidths=list(table.widths) if table.widths else None)
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8)
    for (row, _), cell in drawn.get_celld().items():
        cell.set_edgecolor("#bbbbbb")
        if row == 0:
            cell.set_facecolor("#e8e8e8")
            cell.get_text().set_fontweight("bold")


def _summary_rows(report: Report) -> list[tuple[str, str]]:
    s, lat = report.summary, report.summary.latency
    return [("Requests", f"{s.requests:,}"), ("Errors (5xx or transport error)", f"{s.errors:,}"),
            ("Error rate", _pct(s.error_rate)), ("Unique clients (IPs)", f"{s.unique_clients:,}"),
            ("Latency min", _ms(lat.min_ms)), ("Latency avg", _ms(lat.avg_ms)), ("Latency p50", _ms(lat.p50_ms)),
            ("Latency p95", _ms(lat.p95_ms)), ("Latency p99", _ms(lat.p99_ms)), ("Latency max", _ms(lat.max_ms))]


def _title_page(report: Report) -> Figure:
    fig = _page(f"Report: {report.service}")
    fig.text(0.08, 0.92, f"{report.from_:%Y-%m-%d %H:%M} to {report.to:%Y-%m-%d %H:%M} UTC", fontsize=11)
    fig.text(0.08, 0.90, f"Generated {report.generated_at:%Y-%m-%d %H:%M:%S} UTC by upwatch", fontsize=9, color=GREY)
    _draw_table(fig, 0.85, Table("Summary", ("Figure", "Value"), [], ""), _summary_rows(report))
    statuses = [(str(r.status_code), f"{r.requests:,}") for r in report.status_codes]
    _draw_table(fig, 0.56, Table("Status codes", ("Status", "Requests"), statuses, "No status codes in this range."),
                statuses[:ROWS_PER_PAGE - 14])
    return fig


def _chart(ax: Axes, title: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=11, loc="left", weight="bold")
    ax.set_ylabel(ylabel, fontsize=9)
    ax.grid(axis="y", color="#dddddd")
    ax.tick_params(labelsize=8)


def _charts_page(report: Report) -> Figure:
    fig = _page("Daily traffic, errors and latency (UTC days)")
    days = list(range(len(report.days)))  # day indexes; labelled below, at most 12 labels per axis
    requests_ax, errors_ax, latency_ax = (fig.add_axes((0.12, y, 0.80, 0.22)) for y in (0.65, 0.37, 0.09))
    requests_ax.bar(days, [d.requests for d in report.days], color="#4c72b0")
    _chart(requests_ax, "Requests per day", "requests")
    rates = [100 * d.error_rate for d in report.days]
    errors_ax.plot(days, rates, marker="o", color="#c44e52")
    errors_ax.set_ylim(0, max([*rates, 1.0]) * 1.15)  # headroom, so the highest point is not cut by the frame
    _chart(errors_ax, "Error rate per day", "% of requests")
    for label, values, style in (("avg", [d.avg_latency_ms for d in report.days], "-"),
                                 ("p95", [d.p95_latency_ms for d in report.days], "--")):
        latency_ax.plot(days, [float("nan") if v is None else v for v in values], style, marker="o", label=label)
    latency_ax.legend(fontsize=8, loc="upper left")
    _chart(latency_ax, "Latency per day", "ms")
    step = max(1, -(-len(days) // 12))
    for ax in (requests_ax, errors_ax, latency_ax):
        ax.set_xticks(days[::step], [f"{d.day:%m-%d}" for d in report.days[::step]])
        ax.set_xlim(-0.6, max(len(days), 1) - 0.4)
    return fig


def _tables(report: Report) -> list[Table]:
    routes = [(r.method or "-", _cell(r.route or "(no route)", ROUTE_CHARS), f"{r.requests:,}", _pct(r.error_rate),
               _ms(r.avg_latency_ms), _ms(r.p95_latency_ms), _ms(r.max_latency_ms)) for r in report.routes]
    clients = [(c.ip, f"{c.requests:,}") for c in report.top_clients]
    return [Table("Routes", ("Method", "Route", "Requests", "Error rate", "Avg", "p95", "Max"), routes,
                  "No requests in this range.", (0.09, 0.37, 0.1, 0.11, 0.11, 0.11, 0.11)),
            Table("Top clients", ("Client IP", "Requests"), clients, "No client IPs in this range.")]


def _table_pages(report: Report) -> list[Callable[[], Figure]]:
    pages: list[Callable[[], Figure]] = []
    for table in _tables(report):
        chunks = [table.rows[i:i + ROWS_PER_PAGE] for i in range(0, len(table.rows), ROWS_PER_PAGE)] or [[]]
        for n, chunk in enumerate(chunks):
            def draw(table: Table = table, chunk: Sequence[Sequence[str]] = chunk, n: int = n) -> Figure:
                fig = _page(table.title + (" (continued)" if n else ""))
                _draw_table(fig, 0.90, Table("", table.header, chunk, table.empty, table.widths), chunk)
                return fig
            pages.append(draw)
    return pages


def render(report: Report) -> bytes:
    """The report as PDF bytes; every page is A4 with 'page N of M' at its foot. CPU-bound (about a
    second): call it through asyncio.to_thread from async code."""
    pages = [lambda: _title_page(report), lambda: _charts_page(report), *_table_pages(report)]
    out = io.BytesIO()
    with _RENDERING, mpl.rc_context({"pdf.fonttype": 42}), PdfPages(out, metadata={
            "Title": f"upwatch report: {report.service}", "Creator": "upwatch"}) as pdf:
        for number, draw in enumerate(pages, start=1):
            fig = draw()
            fig.text(0.5, 0.025, f"page {number} of {len(pages)}", ha="center", fontsize=8, color=GREY)
            fig.text(0.92, 0.025, report.service, ha="right", fontsize=8, color=GREY)
            pdf.savefig(fig)
    return out.getvalue()
