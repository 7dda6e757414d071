"""A person's view: headless Chromium (the system's, via Selenium) on a page served by a running `upwatch up`
that probes real local HTTP targets. Skipped, with the reason, where chromium or chromedriver is absent."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="needs Debian's chromium and chromium-driver (apt-get install chromium"
                                       " chromium-driver)")
REPO = Path(__file__).parents[2]
SCREENSHOT = REPO / "docs" / "img" / "status-page.png"
# axe-core rules for the basics (those of the axe-core that axe-selenium-python ships): contrast,
# labels, landmarks, headings, lists, language, title, ids, viewport zoom.
RULES = ["color-contrast", "label", "landmark-one-main", "region", "landmark-no-duplicate-banner",
         "landmark-banner-is-top-level", "page-has-heading-one", "heading-order", "empty-heading",
         "document-title", "html-has-lang", "list", "listitem", "definition-list", "dlitem", "duplicate-id",
         "meta-viewport", "link-name"]

CONFIG = """
endpoints:
  - {{name: shop-api, url: "http://127.0.0.1:{target}/ok", interval: 1s, tags: [shop]}}
  - {{name: payments, url: "http://127.0.0.1:{target}/fail", interval: 1s, tags: [shop]}}
  - {{name: search, url: "http://127.0.0.1:{target}/ok", interval: 1s}}
status_pages:
  - slug: demo
    title: Example Shop status
    description: "Live checks of <script>window.hacked=1</script> our shop"
    groups:
      - {{name: Shop, tags: [shop]}}
      - {{name: Search, endpoints: [search]}}
push:
  listen: 127.0.0.1:{port}
storage:
  database_url: {url}
"""


ADMIN_TOKEN = "browser-test-admin-token-0123"


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST JSON to the running upwatch as the operator."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return dict(json.load(resp))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def target() -> AsyncIterator[TestServer]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=503, text="down for the test")

    app = web.Application()
    app.router.add_routes([web.get("/ok", ok), web.get("/fail", fail)])
    async with TestServer(app, host="127.0.0.1") as server:
        yield server


@pytest.fixture
def upwatch(database_url: str, tmp_path: Path, target: TestServer) -> Iterator[str]:
    """`upwatch up` on the test database; yields the status page URL it printed."""
    port = free_port()
    (tmp_path / "upwatch.yaml").write_text(CONFIG.format(target=target.port, port=port, url=database_url))
    log = (tmp_path / "upwatch.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "upwatch.cli", "up"], cwd=tmp_path, text=True, stdout=log,
                            stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(REPO), "UPWATCH_ADMIN_TOKEN": ADMIN_TOKEN})
    try:
        yield str(port)
    finally:
        # Stopping is tested elsewhere (tests/upwatch/test_cli.py); on a loaded machine `up` may take
        # longer than a fixed wait to stop its detector's workers, and must not be left running.
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        log.close()


def wait_for_checks(base: str, log: Path, names: set[str]) -> list[dict[str, Any]]:
    """The read API once every endpoint has been checked a few times (bounded: 40 s)."""
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/api/read/v1/endpoints", timeout=5) as resp:
                endpoints = json.load(resp)
            if {e["name"] for e in endpoints if e["windows"]["24h"]["checks"] >= 3} == names:
                return list(endpoints)
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"no checks in time:\n{log.read_text()}")


def browser(dark: bool = False) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1000,1200"):
        options.add_argument(arg)
    # The system chromedriver, named explicitly: nothing is looked up or downloaded (no Selenium Manager).
    driver = webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=options)
    if dark:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                               {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    return driver


def accessibility(driver: Any) -> dict[str, Any]:
    from axe_selenium_python import Axe

    Axe(driver).inject()
    # Axe.run has no rejection handler (a bad option would hang until the script timeout); this reports it.
    report = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, arguments[0]).then(r => done({violations: r.violations, passes: r.passes}),"
        " e => done({error: String(e)}))", {"runOnly": {"type": "rule", "values": RULES}})
    assert "error" not in report, report
    return dict(report)


def look(url: str, shot: Path) -> dict[str, Any]:
    """What a person sees, read from the rendered page (visible text, not the HTML source)."""
    from selenium.webdriver.common.by import By

    driver = browser()
    try:
        driver.get(url)
        seen: dict[str, Any] = {"title": driver.title, "hacked": driver.execute_script("return window.hacked"),
                                "header": driver.find_element(By.TAG_NAME, "header").text, "endpoints": {}}
        for article in driver.find_elements(By.CSS_SELECTOR, "article.endpoint"):
            seen["endpoints"][article.get_attribute("data-endpoint")] = {
                "text": article.text, "bars": len(article.find_elements(By.CSS_SELECTOR, "svg.history rect")),
                "bar_title": article.find_elements(By.CSS_SELECTOR, "svg.history rect title")[-1]
                .get_attribute("textContent")}
        seen["groups"] = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "section:not(.notices) > h2")]
        seen["incidents"] = {n.find_element(By.CSS_SELECTOR, "h3 .name").text: n.text
                             for n in driver.find_elements(By.CSS_SELECTOR, "article.notice")}
        driver.save_screenshot(str(shot))
        seen["axe"] = accessibility(driver)
        driver.set_window_size(390, 844)  # a phone
        seen["phone_overflow"] = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    finally:
        driver.quit()
    dark = browser(dark=True)
    try:
        dark.get(url)
        seen["dark_background"] = dark.execute_script("return getComputedStyle(document.body).backgroundColor")
        seen["axe_dark"] = accessibility(dark)
    finally:
        dark.quit()
    return seen


@pytest.mark.timeout(300)  # a real `upwatch up` and a real browser: minutes on a loaded machine
async def test_a_person_sees_states_uptime_history_and_incidents(upwatch: str, database_url: str,
                                                                 tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{upwatch}"
    log = tmp_path / "upwatch.log"
    await asyncio.to_thread(wait_for_checks, base, log, {"shop-api", "payments", "search"})
    banner = log.read_text()
    assert f"status     {base}/status/demo" in banner  # the URL `upwatch up` prints on start
    with psycopg.connect(database_url, autocommit=True) as conn:  # as the detector writes one
        conn.execute("INSERT INTO incidents (series, endpoint_id, started_at, ended_at, peak_score, severity, reason)"
                     " SELECT 'latency:search', id, now() - interval '3 min', now(), 0.93, 'high',"
                     " 'latency 3.1x its usual for this hour (870 ms vs 280 ms)' FROM endpoints WHERE name = 'search'")
    made = post(f"{base}/api/status/v1/incidents", {"title": "Payments failing", "endpoints": ["payments"],
                                                    "message": "Card payments fail; we are on it."})
    post(f"{base}/api/status/v1/incidents/{made['id']}/updates", {"message": "Provider outage", "state": "identified"})
    shot = tmp_path / "status-page.png"
    seen = await asyncio.to_thread(look, f"{base}/status/demo", shot)

    assert seen["title"].startswith("Example Shop status")
    assert seen["hacked"] is None and "<script>window.hacked=1</script>" in seen["header"]  # shown as text
    assert seen["groups"] == ["Shop", "Search"]
    shop, payments, search = (seen["endpoints"][n] for n in ("shop-api", "payments", "search"))
    assert "Operational" in shop["text"] and re.search(r"24h\s*100%", shop["text"])
    assert "Down" in payments["text"] and re.search(r"24h\s*0%", payments["text"])
    assert "Degraded" in search["text"]
    assert "Unusual for this endpoint: latency 3.1x its usual for this hour" in search["text"]
    assert "Ongoing high incident" in search["text"]
    operator = seen["incidents"]["Payments failing"]  # the alerter's "payments is down" may be there too
    assert "Identified" in operator and "affects payments" in operator
    assert "Provider outage" in operator and "Card payments fail; we are on it." in operator
    assert all(e["bars"] == 90 for e in seen["endpoints"].values())
    assert re.match(r"\d{4}-\d\d-\d\d: 0% up, (\d+) of \1 checks failed", payments["bar_title"])
    for report in (seen["axe"], seen["axe_dark"]):
        assert report["violations"] == [], json.dumps(report["violations"], indent=1)[:3000]
        assert {r["id"] for r in report["passes"]} >= {"color-contrast", "landmark-one-main", "region", "heading-order"}
    assert seen["phone_overflow"] <= 0
    assert seen["dark_background"] == "rgb(13, 17, 23)"
    assert shot.stat().st_size > 10_000
    if os.environ.get("UPWATCH_UPDATE_SCREENSHOT"):  # regenerate the README's picture
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
