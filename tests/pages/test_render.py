"""The HTML of an endpoint's section (built in Python, not the template) escapes every text that is not ours, and
the page is UTF-8 whatever characters it holds."""

from __future__ import annotations

import datetime as dt

from prober.pages import render
from prober.pages.data import EndpointData, GroupData, Incident, PageData, Window
from prober.pages.uptime import Figures
from tests.pages.conftest import make_config

NOW = dt.datetime(2026, 12, 2, 6, 30, tzinfo=dt.UTC)


def _endpoint() -> EndpointData:
    e = EndpointData("api", None, state="degraded", last_at=NOW, degraded_by="[STATUS] == 203 (was <203>)")
    e.uptime = {"24h": Figures(10, 9, 1000.0, 9), "7d": Figures(70, 69, 7000.0, 69)}
    e.dates, e.day_cells = [NOW.date()], [Figures(10, 9, 1000.0, 9)]
    e.hour_starts, e.hour_cells = [NOW, NOW], [Figures(5, 5, 500.0, 5), Figures(5, 4, 800.0, 4)]
    e.locations = {"<eu>": "down", "us & co": "up"}
    e.incidents = [Incident(NOW, NOW, "high", "latency <script>x</script> 870 ms vs usual 120±15 ms", True)]
    e.maintenance = [Window("<b>db</b> upgrade", NOW, NOW + dt.timedelta(hours=1), True)]
    return e


def test_an_endpoints_section_escapes_text_that_is_not_ours() -> None:
    html = render.article(_endpoint())
    assert "<script>" not in html and "<b>" not in html and "<eu>" not in html and "<203>" not in html
    assert "Unusual for this endpoint: latency &lt;script&gt;x&lt;/script&gt; 870 ms vs usual 120±15 ms" in html
    assert "Maintenance now: &lt;b&gt;db&lt;/b&gt; upgrade (2026-12-02 06:30 UTC – 2026-12-02 07:30 UTC)" in html
    assert '<span class="state-down">&lt;eu&gt;: Down</span> · <span class="state-up">us &amp; co: Operational</span>' \
        in html
    assert "Degraded: [STATUS] == 203 (was &lt;203&gt;)" in html
    assert '<dd data-window="7d">98.571%</dd>' in html and "<dd>111 ms" in html
    assert '<polyline points="0,11 115,2"/>' in html and html.count("<rect ") == 1


def test_the_page_is_utf8_with_characters_beyond_latin1() -> None:
    page = make_config("postgresql://unused").status_pages[0]
    body = render.page(PageData(page, NOW, [GroupData("Core — main", [_endpoint()])]))
    text = body.decode("utf-8")
    assert "<h2 id=\"g1\">Core — main</h2>" in text and "120±15 ms" in text and text.count("<article") == 1
