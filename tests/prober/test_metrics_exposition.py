"""/metrics over real HTTP after real checks of local targets: HELP and TYPE for every family, the
blackbox_exporter names, types and labels, and a body `promtool check metrics` accepts."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from psycopg_pool import AsyncConnectionPool

from prober.app import State, build_app, serve
from prober.checks.http import new_session
from prober.metrics import Metrics
from prober.probe import run_check
from prober.scheduler import Scheduler
from prober.writer import BatchWriter
from tests.prober import certs, targets
from tests.prober.exposition_check import families, promtool_check, samples, value
from upwatch import config as configuration
from upwatch.config.endpoints import Endpoint
from upwatch.runtime import Runtime

HTTP_PHASES = {"resolve", "connect", "tls", "processing", "transfer"}
# blackbox_exporter's labels of these families, beyond the endpoint's own
INFO_LABELS = {"probe_http_duration_seconds": {"phase"}, "probe_tls_version_info": {"version"},
               "probe_tls_cipher_info": {"cipher"},
               "probe_ssl_last_chain_info": {"fingerprint_sha256", "subject", "issuer", "subjectalternative",
                                             "serialnumber"}}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> certs.Certs:
    return certs.make(tmp_path_factory.mktemp("certs"))


def not_after(pem: Path) -> int:
    out = subprocess.run(["openssl", "x509", "-enddate", "-noout", "-in", str(pem)], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    return int(dt.datetime.strptime(out.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")
               .replace(tzinfo=dt.UTC).timestamp())


@pytest.fixture
async def exposition(tls: certs.Certs, pool: AsyncConnectionPool, database_url: str,
                     tmp_path: Path) -> AsyncIterator[tuple[str, aiohttp.ClientResponse]]:
    """/metrics of a listener whose Metrics observed one real check of each kind (and some failures)."""
    server_tls = targets.server_context(str(tls.good[0]), str(tls.good[1]))
    session = new_session()
    metrics = Metrics("lab")
    async with targets.serve(targets.app()) as base, targets.serve(targets.app(), server_tls) as secure:
        port = int(base.rsplit(":", 1)[1])
        endpoints: list[dict[str, Any]] = [
            {"name": "ok", "url": f"{base}/redirect"},
            {"name": "err", "url": f"{base}/status/500"},
            {"name": "pattern", "url": f"{base}/ok", "assertions": [{"body_matches": "DOWN"}]},
            {"name": "json", "url": f"{base}/ok", "assertions": ["[BODY].status == DOWN"]},
            {"name": "secure", "url": f"{secure}/ok", "ca_file": str(tls.ca)},
            {"name": "port", "kind": "tcp", "host": "127.0.0.1", "port": port},
            {"name": "closed", "kind": "tcp", "host": "127.0.0.1", "port": targets.closed_port()},
            {"name": "name", "kind": "dns", "host": "localhost"},
            {"name": "unreachable", "kind": "dns", "host": "nothing-here.invalid", "transport": "tcp",
             "nameserver": f"127.0.0.1:{targets.closed_port()}"},  # no response: the query did not succeed
        ]
        for fields in endpoints:
            endpoint = Endpoint.model_validate({"timeout": "3s", **fields})
            metrics.observe(endpoint, await run_check(endpoint, session), lateness_s=0.01)
    listen = targets.closed_port()
    path = tmp_path / "upwatch.yaml"
    path.write_text(f"push: {{listen: '127.0.0.1:{listen}'}}\n")
    runtime = Runtime(configuration.load(path), path, database_url, pool)
    writer = BatchWriter(pool, tmp_path / "spool")
    scheduler = Scheduler(session, writer, location="lab", prober="p1")
    runner = await serve(build_app(runtime, State(scheduler, writer, metrics), extensions=[]), "127.0.0.1", listen)
    try:
        async with aiohttp.ClientSession() as client, client.get(f"http://127.0.0.1:{listen}/metrics") as resp:
            yield await resp.text(), resp
    finally:
        await runner.cleanup()
        await session.close()


async def test_metrics_answers_in_text_format_0_0_4(exposition: tuple[str, aiohttp.ClientResponse]) -> None:
    _, resp = exposition
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"


async def test_every_family_has_help_and_type(exposition: tuple[str, aiohttp.ClientResponse]) -> None:
    text, _ = exposition
    found = families(text)
    assert {name: f.type for name, f in found.items() if name.startswith("probe_")} == {
        "probe_success": "gauge", "probe_duration_seconds": "gauge", "probe_timeout_seconds": "gauge",
        "probe_dns_lookup_time_seconds": "gauge", "probe_http_status_code": "gauge",
        "probe_http_duration_seconds": "gauge", "probe_http_uncompressed_body_length": "gauge",
        "probe_http_ssl": "gauge", "probe_ssl_earliest_cert_expiry": "gauge", "probe_dns_query_succeeded": "gauge",
        "probe_failed_due_to_regex": "gauge", "probe_dns_answer_rrs": "gauge", "probe_dns_authority_rrs": "gauge",
        "probe_dns_additional_rrs": "gauge", "probe_http_content_length": "gauge", "probe_http_redirects": "gauge",
        "probe_http_version": "gauge", "probe_ip_protocol": "gauge", "probe_ip_addr_hash": "gauge",
        "probe_ssl_last_chain_expiry_timestamp_seconds": "gauge", "probe_ssl_last_chain_info": "gauge",
        "probe_tls_version_info": "gauge", "probe_tls_cipher_info": "gauge"}
    assert all(f.type != "unknown" and f.documentation for f in found.values()), \
        [n for n, f in found.items() if f.type == "unknown" or not f.documentation]
    assert found["upwatch_prober_checks"].type == "counter"
    assert found["upwatch_prober_start_lateness_seconds"].type == "histogram"
    for family in ("probe_success", "probe_http_duration_seconds"):  # HELP and TYPE once, before the samples
        assert text.count(f"# TYPE {family} ") == 1 and text.count(f"# HELP {family} ") == 1
        assert text.index(f"# TYPE {family} ") < text.index(f"{family}{{")


async def test_promtool_accepts_the_metrics(exposition: tuple[str, aiohttp.ClientResponse]) -> None:
    text, _ = exposition
    checked = promtool_check(text)
    assert checked.returncode == 0 and not checked.stdout.strip() and not checked.stderr.strip(), \
        (checked.stdout, checked.stderr)


async def test_labels_are_endpoint_kind_location(exposition: tuple[str, aiohttp.ClientResponse]) -> None:
    text, _ = exposition
    for family in families(text).values():
        if not family.name.startswith("probe_"):
            continue
        extra = INFO_LABELS.get(family.name, set())
        assert all(set(s.labels) == {"endpoint", "kind", "location"} | extra for s in family.samples), family


async def test_results_map_onto_blackbox_families(exposition: tuple[str, aiohttp.ClientResponse],
                                                  tls: certs.Certs) -> None:
    text, _ = exposition
    assert value(text, "probe_success", endpoint="ok", kind="http", location="lab") == 1
    assert value(text, "probe_success", endpoint="err") == 0
    assert value(text, "probe_http_status_code", endpoint="err") == 500
    assert value(text, "probe_http_status_code", endpoint="ok") == 200
    assert {s.labels["phase"] for s in samples(text, "probe_http_duration_seconds", endpoint="ok")} == HTTP_PHASES
    assert value(text, "probe_http_duration_seconds", endpoint="secure", phase="tls") > 0
    assert value(text, "probe_http_duration_seconds", endpoint="ok", phase="tls") == 0
    assert value(text, "probe_http_ssl", endpoint="secure") == 1
    assert value(text, "probe_http_ssl", endpoint="ok") == 0
    assert value(text, "probe_ssl_earliest_cert_expiry", endpoint="secure") == not_after(tls.good[0])
    assert list(samples(text, "probe_ssl_earliest_cert_expiry", endpoint="ok")) == []
    body = len(b'{"status": "UP", "items": [1, 2], "data": {"id": 7}}')
    assert value(text, "probe_http_uncompressed_body_length", endpoint="ok") == body
    assert value(text, "probe_timeout_seconds", endpoint="ok") == 3
    assert value(text, "probe_success", endpoint="port", kind="tcp") == 1
    assert value(text, "probe_success", endpoint="closed", kind="tcp") == 0
    assert value(text, "probe_dns_lookup_time_seconds", endpoint="port") >= 0
    assert value(text, "probe_dns_query_succeeded", endpoint="name", kind="dns") == 1
    assert value(text, "probe_dns_query_succeeded", endpoint="unreachable", kind="dns") == 0
    assert list(samples(text, "probe_http_status_code", endpoint="port")) == []  # http families: http only
    # blackbox's fail_if_body_(not_)matches_regexp are our body/header pattern assertions; a JSON value is not one
    assert value(text, "probe_success", endpoint="pattern") == 0
    assert value(text, "probe_failed_due_to_regex", endpoint="pattern") == 1
    assert value(text, "probe_success", endpoint="json") == 0
    assert value(text, "probe_failed_due_to_regex", endpoint="json") == 0
    assert value(text, "probe_failed_due_to_regex", endpoint="ok") == 0


def test_help_and_label_values_are_escaped() -> None:
    from prober.exposition import Exposition

    out = Exposition({"x": ("gauge", "a \\ back\nslash")})
    out.add("x", 1.5, [("l", 'q"uote\\\nend')])
    text = out.render()
    assert families(text)["x"].documentation == "a \\ back\nslash"
    assert value(text, "x", l='q"uote\\\nend') == 1.5
