"""Shields-style SVG badges (anybadge draws them and measures the text) for READMEs."""

from __future__ import annotations

import re

import anybadge

from prober.pages.data import EndpointData

COLOURS = {"up": "#4c1", "degraded": "#dfb317", "down": "#e05d44", "maintenance": "#007ec6", "unknown": "#9f9f9f"}


def _svg(label: str, value: str, colour: str) -> str:
    svg = str(anybadge.Badge(label=label, value=value, default_color=colour).badge_svg_text)
    # anybadge numbers its mask per badge made in the process; each badge is its own document (an <img>),
    # so a fixed id is safe and keeps the same figures the same bytes (one ETag).
    return re.sub(r"anybadge_\d+", "anybadge_1", svg)


def status(e: EndpointData) -> str:
    return _svg(e.name, e.state, COLOURS[e.state])


def uptime(e: EndpointData, window: str) -> str:
    share = e.uptime[window].uptime
    if share is None:
        return _svg(f"uptime {window}", "no data", COLOURS["unknown"])
    colour = COLOURS["up"] if share >= 0.999 else COLOURS["degraded"] if share >= 0.99 else COLOURS["down"]
    return _svg(f"uptime {window}", percent(share), colour)


def response(e: EndpointData, window: str) -> str:
    latency = e.uptime[window].latency_ms
    if latency is None:
        return _svg(f"response {window}", "no data", COLOURS["unknown"])
    colour = COLOURS["up"] if latency < 500 else COLOURS["degraded"] if latency < 2000 else COLOURS["down"]
    return _svg(f"response {window}", f"{latency:.0f} ms", colour)


def percent(share: float) -> str:
    """Truncated, not rounded, so 99.996% never reads as 100%."""
    value = int(share * 100_000) / 1000
    return f"{value:.3f}".rstrip("0").rstrip(".") + "%"
