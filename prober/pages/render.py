"""HTML for a status page: Jinja2 with autoescaping on, so names and descriptions are always text."""

from __future__ import annotations

import datetime as dt

import jinja2
from markupsafe import Markup

from prober.pages.badges import percent
from prober.pages.data import EndpointData, PageData
from prober.pages.uptime import DayCache, Figures

ENV = jinja2.Environment(loader=jinja2.PackageLoader("prober.pages", "templates"), autoescape=True,
                         trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
LABELS = {"up": "Operational", "degraded": "Degraded", "down": "Down", "maintenance": "Maintenance",
          "unknown": "No data"}


def pct(share: float | None) -> str:
    return "no data" if share is None else percent(share)


def ms(latency: float | None) -> str:
    return "no data" if latency is None else f"{latency:.0f} ms"


def bar(share: float | None) -> str:
    """Colour class of a day: none, ≥ 99.9 %, ≥ 99 %, ≥ 95 %, below."""
    if share is None:
        return "u-none"
    return "u-ok" if share >= 0.999 else "u-minor" if share >= 0.99 else "u-major" if share >= 0.95 else "u-bad"


def day_text(f: Figures) -> str:
    if not f.checks:
        return "no checks"
    return f"{pct(f.uptime)} up, {f.checks - f.ok} of {f.checks} checks failed"


def _rects(e: EndpointData, start: int, stop: int) -> str:
    return "".join(f'<rect x="{k * 4}" width="3" height="28" class="{bar(f.uptime)}">'
                   f"<title>{day.isoformat()}: {day_text(f)}</title></rect>"
                   for k, day, f in zip(range(start, stop), e.dates[start:stop], e.day_cells[start:stop], strict=True))


def history(e: EndpointData, cache: DayCache | None = None) -> Markup:
    """The day-by-day bar as SVG, built here rather than in the template: a 500-endpoint page has 45,000
    of these. The final days' bars never change, so with a cache they are rendered once a day. Only dates
    and numbers go in."""
    if cache is None or e.id is None:
        rects = _rects(e, 0, len(e.dates))
    else:
        markup = cache.days.markup
        if e.id not in markup:
            markup[e.id] = _rects(e, 0, e.final_days)
        rects = markup[e.id] + _rects(e, e.final_days, len(e.dates))
    # Only numbers and ISO dates are formatted in (no names or other text from users), so no escaping is needed.
    svg = (f'<svg class="history" viewBox="0 0 {len(e.dates) * 4} 28" preserveAspectRatio="none" role="img"'
           f' aria-label="Uptime per day, last {len(e.dates)} days">{rects}</svg>')
    return Markup(svg)  # noqa: S704 -- numbers and dates only, see above


def spark(e: EndpointData) -> str:
    """Polyline points (100 × 20 box) of the hourly mean response time; empty with under two points."""
    points = [(k, f.latency_sum / f.latency_n) for k, f in enumerate(e.hour_cells) if f.latency_n]
    if len(points) < 2:
        return ""
    scale = 18 / (max(v for _, v in points) or 1.0)
    step = 100 / max(len(e.hour_cells) - 1, 1)
    return " ".join([f"{k * step:.1f},{20 - v * scale:.1f}" for k, v in points])


def when(t: dt.datetime | None) -> str:
    return "open-ended" if t is None else t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def page(data: PageData, cache: DayCache | None = None) -> str:
    """The page; `cache` (the one data.load used) keeps the final days' bars between requests."""
    bars = {e.name: history(e, cache) for e in data.endpoints}
    return ENV.get_template("page.html.j2").render(data=data, bars=bars)


# Filters rather than globals: the template calls a filter directly, a global through Context.call,
# which cost more than the functions themselves on a 500-endpoint page.
ENV.filters.update(label=LABELS.__getitem__, pct=pct, ms=ms, spark=spark, when=when)
