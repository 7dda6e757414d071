"""A real Prometheus (Debian's `prometheus` binary) scrapes the prober's /metrics, and its /probe through
the relabelling blackbox_exporter's README gives: every target up, the series queryable through
Prometheus's HTTP API with `instance` = the probed target. Skipped where prometheus is not installed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from psycopg_pool import AsyncConnectionPool

from prober import probe
from prober.app import State, build_app, serve
from prober.checks.http import new_session
from prober.metrics import Metrics
from prober.scheduler import Scheduler
from prober.writer import BatchWriter
from tests.prober import targets
from upwatch import config as configuration
from upwatch.config.endpoints import Endpoint
from upwatch.runtime import Runtime

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None,
                                reason="prometheus not installed (Debian: apt-get install prometheus)")
WAIT_S = 40.0


def prometheus_config(listener: str, base: str) -> dict[str, Any]:
    """Two jobs: the listener's own /metrics, and blackbox_exporter's relabelling onto /probe."""
    port = base.rsplit(":", 1)[1]

    def blackbox(job: str, module: str, probed: list[str]) -> dict[str, Any]:
        return {"job_name": job, "metrics_path": "/probe", "params": {"module": [module]},
                "static_configs": [{"targets": probed}],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": listener}]}

    return {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                # The per-endpoint series, with `instance` = the endpoint as docs/prober.md suggests for
                # dashboards keyed on it (the listener's own health series keep the listener's address).
                {"job_name": "upwatch", "static_configs": [{"targets": [listener]}],
                 "metric_relabel_configs": [{"source_labels": ["endpoint"], "regex": "(.+)",
                                             "target_label": "instance"}]},
                blackbox("blackbox_http", "http_2xx", [f"{base}/ok", f"{base}/status/500"]),
                blackbox("blackbox_tcp", "tcp_connect", [f"127.0.0.1:{port}"])]}


@contextlib.asynccontextmanager
async def prometheus(tmp_path: Path, config: dict[str, Any]) -> AsyncIterator[str]:
    """Prometheus on 127.0.0.1 with its data under tmp_path; stopped with SIGTERM (killed if it hangs)."""
    assert PROMETHEUS is not None
    path = tmp_path / "prometheus.yml"
    path.write_text(json.dumps(config))  # JSON is YAML
    port = targets.closed_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        PROMETHEUS, f"--config.file={path}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn", stdout=log, stderr=log)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()
        log.close()


async def api(client: aiohttp.ClientSession, url: str, **params: str) -> Any:
    """The `data` of a Prometheus HTTP API answer; None while Prometheus is not answering yet."""
    try:
        async with client.get(url, params=params) as resp:
            if resp.status != 200:
                return None
            return (await resp.json())["data"]
    except aiohttp.ClientConnectionError:
        return None


@pytest.fixture
async def listener(pool: AsyncConnectionPool, database_url: str, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """The prober's listener with /probe open to 127.0.0.1, after two real checks; yields (host:port, target base)."""
    session = new_session()
    metrics = Metrics("lab")
    async with targets.serve(targets.app()) as base:
        for name, path in (("ok", "/ok"), ("err", "/status/500")):
            endpoint = Endpoint.model_validate({"name": name, "url": base + path, "timeout": "2s"})
            metrics.observe(endpoint, await probe.run_check(endpoint, session), lateness_s=0.01)
        port = targets.closed_port()
        path = tmp_path / "upwatch.yaml"
        path.write_text(f"push: {{listen: '127.0.0.1:{port}'}}\nprober: {{probe_allowed: [127.0.0.1]}}\n")
        runtime = Runtime(configuration.load(path), path, database_url, pool)
        writer = BatchWriter(pool, tmp_path / "spool")
        state = State(Scheduler(session, writer, location="lab", prober="p1"), writer, metrics)
        runner = await serve(build_app(runtime, state, extensions=[probe.setup]), "127.0.0.1", port)
        try:
            yield f"127.0.0.1:{port}", base
        finally:
            await runner.cleanup()
            await session.close()


async def test_prometheus_scrapes_metrics_and_probe(listener: tuple[str, str], tmp_path: Path) -> None:
    address, base = listener
    async with prometheus(tmp_path, prometheus_config(address, base)) as url, aiohttp.ClientSession() as client:
        deadline = time.monotonic() + WAIT_S
        active: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            found = await api(client, f"{url}/api/v1/targets", state="active")
            active = found["activeTargets"] if found else []
            if len(active) == 4 and all(t["health"] == "up" for t in active):
                break
            await asyncio.sleep(0.2)
        assert sorted((t["labels"]["job"], t["labels"]["instance"], t["health"], t["lastError"]) for t in active) == [
            ("blackbox_http", f"{base}/ok", "up", ""), ("blackbox_http", f"{base}/status/500", "up", ""),
            ("blackbox_tcp", base.removeprefix("http://"), "up", ""), ("upwatch", address, "up", "")]

        async def query(expr: str, *by: str) -> dict[str, float]:
            """Each series' value keyed by its `by` labels (instance and endpoint unless given)."""
            data = await api(client, f"{url}/api/v1/query", query=expr)
            keys = by or ("instance", "endpoint")
            return {" ".join(r["metric"].get(k, "") for k in keys): float(r["value"][1])
                    for r in (data or {}).get("result", [])}

        assert await query('probe_success{job="blackbox_http"}') == {f"{base}/ok ": 1.0, f"{base}/status/500 ": 0.0}
        assert await query('probe_http_status_code{job="blackbox_http"}') == {f"{base}/ok ": 200.0,
                                                                              f"{base}/status/500 ": 500.0}
        assert await query('probe_success{job="blackbox_tcp"}') == {f"{base.removeprefix('http://')} ": 1.0}
        assert await query('probe_success{job="upwatch"}') == {"ok ok": 1.0, "err err": 0.0}
        assert await query('upwatch_prober_checks_total{job="upwatch"}') == {f"{address} ": 2.0}
        assert await query('count by (phase) (probe_http_duration_seconds{job="blackbox_http"})', "phase") == {
            phase: 2.0 for phase in ("resolve", "connect", "tls", "processing", "transfer")}
        assert await query('probe_timeout_seconds{job="blackbox_tcp"}') == {f"{base.removeprefix('http://')} ": 0.5}
        # blackbox's families a dashboard keys on, from the http check's details, through a real Prometheus
        assert await query('probe_ip_protocol{job="blackbox_http"}') == {f"{base}/ok ": 4.0,
                                                                         f"{base}/status/500 ": 4.0}
        assert await query('probe_http_version{job="blackbox_http"}') == {f"{base}/ok ": 1.1,
                                                                          f"{base}/status/500 ": 1.1}
        assert await query('probe_http_redirects{job="upwatch"}') == {"ok ok": 0.0, "err err": 0.0}
