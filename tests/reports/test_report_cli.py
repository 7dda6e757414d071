"""`upwatch report` in-process through upwatch.cli.main: the PDF checked with poppler (pages, text,
rendered charts), JSON on stdout, and clear errors."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from matplotlib import image

from tests.push.conftest import CONFIG, Api
from upwatch.cli import main

from .conftest import FROM, TO, Seeded, needs_poppler, pdf_pages, pdf_text

DAY = "%Y-%m-%d"


@pytest.fixture
def config_file(database_url: str, tmp_path: Path) -> Path:
    path = tmp_path / "upwatch.yaml"
    path.write_text(CONFIG.format(url=database_url, rate=1000.0))
    return path


async def report(config_file: Path, *args: str) -> int:
    """upwatch report in a thread: main() runs its own event loop."""
    return await asyncio.to_thread(main, ["report", "-c", str(config_file), *args])


def pdf_pngs(pdf: Path, prefix: Path) -> list[Path]:
    """Every page rendered by pdftoppm at 40 dpi."""
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(prefix)], check=True)
    return sorted(prefix.parent.glob(f"{prefix.name}-*.png"))


@needs_poppler
async def test_pdf_has_summary_charts_and_tables(api: Api, seeded: Seeded, config_file: Path,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "report.pdf"
    # --to as a date is that whole day: TO is the midnight after it.
    assert await report(config_file, "shop", "--from", f"{FROM:{DAY}}", "--to",
                        f"{TO - (TO - FROM) / 3:{DAY}}", "-o", str(out)) == 0
    assert pdf_pages(out) == 4  # title + summary, charts, routes, top clients
    rows = seeded.records
    title = pdf_text(out, 1)
    assert "Report: shop" in title and f"{FROM:%Y-%m-%d} 00:00 to {TO:%Y-%m-%d} 00:00 UTC" in title
    errors = sum(r["status_code"] >= 500 or "error" in r for r in rows)
    assert f"Requests {len(rows)}" in " ".join(title.split())
    assert f"Errors (5xx or transport error) {errors}" in " ".join(title.split())
    assert "page 1 of 4" in title
    charts = pdf_text(out, 2)
    assert all(t in charts for t in ("Requests per day", "Error rate per day", "Latency per day", "page 2 of 4"))
    routes = pdf_text(out, 3)
    assert all(route in routes for route in ("/users/{id}", "/orders", "/health")) and "/outside" not in routes
    clients = pdf_text(out, 4)
    assert "10.1." in clients and "192.0.2.99" not in clients and "page 4 of 4" in clients
    pngs = pdf_pngs(out, tmp_path / "page")
    assert len(pngs) == 4
    chart = image.imread(pngs[1])
    height, width = chart.shape[:2]
    assert abs(width / height - 210 / 297) < 0.01  # A4 portrait
    bars = ((abs(chart[..., 0] - 0x4C / 255) < 0.05) & (abs(chart[..., 1] - 0x72 / 255) < 0.05)
            & (abs(chart[..., 2] - 0xB0 / 255) < 0.05))
    assert bars.sum() > 200  # the requests bars are drawn, not just the axes


@needs_poppler
async def test_pdf_of_an_empty_range_is_valid(api: Api, seeded: Seeded, config_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "empty.pdf"
    assert await report(config_file, "shop", "--from", "2000-01-01", "--to", "2000-01-01", "-o", str(out)) == 0
    assert pdf_pages(out) == 4
    assert "No requests in this range." in pdf_text(out, 3)
    assert "Requests 0" in " ".join(pdf_text(out, 1).split())


async def test_json_on_stdout_matches_the_seeded_rows(api: Api, seeded: Seeded, config_file: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert await report(config_file, "shop", "--from", FROM.isoformat(), "--to", TO.isoformat(),
                        "--format", "json") == 0
    body = json.loads(capsys.readouterr().out)
    assert (body["service"], body["from"], body["to"]) == ("shop", FROM.isoformat(), TO.isoformat())
    assert body["summary"]["requests"] == len(seeded.records)
    assert [d["requests"] for d in body["days"]] == [
        sum(r["timestamp"][:10] == f"{FROM + (TO - FROM) * n / 3:{DAY}}" for r in seeded.records) for n in range(3)]


@pytest.mark.parametrize(("args", "message"), [
    (["nope", "--from", "2026-01-01", "--to", "2026-01-02"], "service: no service named 'nope'"),
    (["shop", "--from", "2026-01-05", "--to", "2026-01-02"], "from: must be before to"),
    (["shop", "--from", "yesterday", "--to", "2026-01-02"], "--from: 'yesterday' is not a date (YYYY-MM-DD)"),
    (["shop", "--from", "2026-01-01T10:30", "--to", "2026-01-02"], "from: must be on a whole UTC hour"),
    (["shop", "--from", "2026-01-01", "--to", "2026-01-02", "--format", "pdf"], "-o: a PDF needs an output file"),
], ids=["unknown-service", "from-after-to", "bad-date", "not-whole-hour", "pdf-without-file"])
async def test_bad_requests_exit_1_with_a_clear_message(api: Api, config_file: Path, args: list[str], message: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    await api.service("shop")
    assert await report(config_file, *args) == 1
    assert f"upwatch report: {message}" in capsys.readouterr().err
