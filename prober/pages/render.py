"""HTML for a status page: Jinja2 with autoescaping on, so names and descriptions are always text."""

from __future__ import annotations

import datetime as dt

import jinja2
from markupsafe import Markup, escape

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


def history(e: EndpointData, cache: DayCache | None = None) -> str:
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
    return (f'<svg class="history" viewBox="0 0 {len(e.dates) * 4} 28" preserveAspectRatio="none" role="img"'
            f' aria-label="Uptime per day, last {len(e.dates)} days">{rects}</svg>')


def spark(e: EndpointData) -> str:
    """Polyline points (115 × 20 box, whole numbers: 5 apart for 24 hours, about a pixel high each) of the
    hourly mean response time; empty with under two points."""
    points = [(k, lat_sum / lat_n) for k, (_, _, lat_sum, lat_n) in enumerate(e.hour_cells) if lat_n]
    if len(points) < 2:
        return ""
    scale = 18 / (max(v for _, v in points) or 1.0)
    step = 115 // max(len(e.hour_cells) - 1, 1)
    return " ".join([f"{k * step},{20 - round(v * scale)}" for k, v in points])


def when(t: dt.datetime | None) -> str:
    return "open-ended" if t is None else t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _locations(e: EndpointData) -> str:
    if not e.locations:
        return ""
    spans = " · ".join(f'<span class="state-{state}">{escape(location)}: {LABELS[state]}</span>'
                       for location, state in e.locations.items())
    return f'<p class="locations">{spans}</p>\n'


def _uptime(e: EndpointData) -> str:
    rows = "".join(f'<dt>{window}</dt> <dd data-window="{window}">{pct(f.uptime)}</dd>\n'
                   for window, f in e.uptime.items())
    points = spark(e)
    line = ('<svg class="spark" viewBox="0 0 115 20" preserveAspectRatio="none" role="img"'
            f' aria-label="Response time over the last 24 hours"><polyline points="{points}"/></svg>'
            if points else "")
    latency = e.uptime["24h"].latency_ms if e.uptime else None
    return f'<dl class="uptime">\n{rows}<dt>response 24h</dt> <dd>{ms(latency)}\n{line}</dd>\n</dl>\n'


def _events(e: EndpointData) -> str:
    if not (e.maintenance or e.incidents):
        return ""
    items = []
    for w in e.maintenance:
        name = f": {escape(w.name)}" if w.name else ""
        span = f" ({when(w.starts_at)} – {when(w.ends_at)})" if w.starts_at else ""
        items.append(f'<li class="maintenance">{"Maintenance now" if w.active else "Scheduled maintenance"}'
                     f"{name}{span}</li>")
    for i in e.incidents:
        until = "" if i.active else f", until {when(i.ended_at)}"
        items.append(f'<li class="incident">{"Ongoing" if i.active else "Recent"} {escape(i.severity)} incident'
                     f" since {when(i.started_at)}{until}: {escape(i.reason)}</li>")
    return '<ul class="events">\n' + "".join(items) + "\n</ul>\n"


def article(e: EndpointData, cache: DayCache | None = None) -> str:
    """One endpoint's section. Built here rather than in the template, like its day bars: on a 500-endpoint
    page the template's attribute and filter lookups cost more than the text they made. Every text
    that is not ours (names, locations, conditions, reasons) goes through `escape`. A str, not Markup: each
    Markup is another copy of ~11 KiB; page() marks the joined sections once."""
    state = f'<span class="state state-{e.state}">{LABELS[e.state]}</span>'
    degraded = f'<p class="unusual">Degraded: {escape(e.degraded_by)}</p>\n' if e.degraded_by else ""
    unusual = e.unusual
    odd = (f'<p class="unusual">Unusual for this endpoint: {escape(unusual.reason or unusual.severity)}</p>\n'
           if unusual else "")
    name = escape(e.name)
    return (f'<article class="endpoint" data-endpoint="{name}">\n<h3><span class="name">{name}</span> {state}</h3>\n'
            f"{_locations(e)}{degraded}{odd}{_uptime(e)}{history(e, cache)}\n"
            f'<p class="legend"><span>{len(e.dates)} days ago</span><span>today</span></p>\n{_events(e)}</article>')


def page(data: PageData, cache: DayCache | None = None) -> bytes:
    """The page as UTF-8; `cache` (the one data.load used) keeps the final days' bars between requests.

    Encoded piece by piece rather than joined first: one character above U+00FF anywhere (the title's
    dash, a "±" in a reason) makes a joined str two bytes a character, so a 5.6 MiB page would be built
    and encoded as 11 MiB; the pieces (the day bars, nearly all of it) are ASCII and encode as a copy."""
    # Every section is built by article(), which escapes what is not ours.
    sections = [Markup("\n".join([article(e, cache) for e in g.endpoints]))  # noqa: S704 -- see above
                for g in data.groups]
    chunks = ENV.get_template("page.html.j2").generate(data=data, sections=sections)
    return b"".join([chunk.encode() for chunk in chunks])


# Filters rather than globals: the template calls a filter directly, a global through Context.call.
ENV.filters.update(label=LABELS.__getitem__, when=when)
