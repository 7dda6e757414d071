"""blackbox_exporter's http, ip, TLS and icmp families from real checks of real local servers (HTTP and
HTTPS on 127.0.0.1, a redirect chain, HTTP/1.0 and 1.1, compressed and chunked bodies, a chain whose
intermediate expires before its leaf), rendered as /metrics and /probe render them, and over /probe."""

from __future__ import annotations

import asyncio
import calendar
import datetime as dt
import gzip
import ipaddress
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from prober import checks
from prober.checks.http import new_session
from prober.exposition import Exposition, add_probe
from tests.prober import certs, targets
from tests.prober.exposition_check import promtool_check, samples, value
from tests.prober.test_probe_endpoint import listener
from upwatch.config.endpoints import Endpoint
from upwatch.records import ProbeResult

MODIFIED = dt.datetime(2015, 10, 21, 7, 28, tzinfo=dt.UTC)
CHUNKS = (b"a" * 1000, b"b" * 500)


def fnv1a_32(data: bytes) -> int:
    """FNV-1a, 32 bit, from its published parameters (Go's hash/fnv New32a)."""
    digest = 2166136261
    for byte in data:
        digest = (digest ^ byte) * 16777619 % 2**32
    return digest


def openssl(pem: Path, *args: str) -> str:
    out = subprocess.run(["openssl", "x509", "-noout", *args, "-in", str(pem)], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    return out.strip().split("=", 1)[1]


def not_after(pem: Path) -> dt.datetime:
    return dt.datetime.strptime(openssl(pem, "-enddate"), "%b %d %H:%M:%S %Y %Z").replace(tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> certs.Chain:
    return certs.make_chain(tmp_path_factory.mktemp("chain"))


async def hops(request: web.Request) -> web.Response:
    left = int(request.match_info["n"])
    raise web.HTTPFound(f"/hops/{left - 1}" if left > 1 else "/ok")


async def modified(request: web.Request) -> web.Response:
    return web.Response(text="old", headers={"Last-Modified": MODIFIED.strftime("%a, %d %b %Y %H:%M:%S GMT")})


async def chunked(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for chunk in CHUNKS:
        await resp.write(chunk)
    return resp


def app() -> web.Application:
    application = targets.app()
    application.router.add_routes([web.get("/hops/{n}", hops), web.get("/modified", modified),
                                   web.get("/chunked", chunked)])
    return application


@pytest.fixture
async def base() -> AsyncIterator[str]:
    async with targets.serve(app()) as url:
        yield url


@pytest.fixture
async def http10() -> AsyncIterator[str]:
    """A server that answers every request in HTTP/1.0 and closes the connection."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


def serving_chain(chain: certs.Chain, tls12_cipher: str | None = None) -> ssl.SSLContext:
    context = targets.server_context(str(chain.leaf[0]), str(chain.leaf[1]))
    if tls12_cipher is not None:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(tls12_cipher)
    return context


async def probe(fields: dict[str, Any]) -> tuple[ProbeResult, str]:
    """One check through the registry on a fresh session, and its families as /probe renders them."""
    endpoint = Endpoint.model_validate({"name": "probe", "timeout": "3s", **fields})
    session = new_session()
    try:
        result = await checks.run(endpoint, session)
    finally:
        await session.close()
    out = Exposition()
    add_probe(out, endpoint.kind, result, timeout_s=3.0, assertions=endpoint.assertions)
    return result, out.render()


async def test_http_check_reports_the_earliest_expiry_of_the_presented_chain(chain: certs.Chain) -> None:
    async with targets.serve(targets.app(), serving_chain(chain)) as secure:
        result, text = await probe({"url": f"{secure}/ok", "ca_file": str(chain.root)})
    intermediate, leaf = not_after(chain.intermediate), not_after(chain.leaf[0])
    assert result.ok and intermediate < leaf
    assert result.cert_not_after == intermediate
    details = result.details or {}
    assert details["chain_length"] == 2
    assert details["earliest_expiry_subject"] == "CN=upwatch test intermediate"
    assert (details["leaf_subject"], details["leaf_issuer"]) == ("CN=localhost", "CN=upwatch test intermediate")
    assert details["verified_chain_not_after"] == intermediate.isoformat()  # the root outlives both
    assert value(text, "probe_ssl_earliest_cert_expiry") == int(intermediate.timestamp())
    assert value(text, "probe_ssl_last_chain_expiry_timestamp_seconds") == int(intermediate.timestamp())


async def test_https_probe_has_blackbox_tls_families(chain: certs.Chain) -> None:
    async with targets.serve(targets.app(), serving_chain(chain)) as secure:
        _, text = await probe({"url": f"{secure}/ok", "ca_file": str(chain.root)})
    leaf = chain.leaf[0]
    [info] = samples(text, "probe_ssl_last_chain_info")
    assert info.value == 1 and info.labels == {
        "fingerprint_sha256": openssl(leaf, "-fingerprint", "-sha256").replace(":", "").lower(),
        "subject": "CN=localhost", "issuer": "CN=upwatch test intermediate",
        "subjectalternative": "localhost",  # DNS names only, as blackbox's getDNSNames
        "serialnumber": openssl(leaf, "-serial").lower()}
    assert value(text, "probe_tls_version_info", version="TLS 1.3") == 1
    [cipher] = samples(text, "probe_tls_cipher_info")
    assert cipher.labels["cipher"] in ("TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256",
                                       "TLS_CHACHA20_POLY1305_SHA256")
    assert value(text, "probe_http_ssl") == 1
    checked = promtool_check(text)
    assert checked.returncode == 0, (checked.stdout, checked.stderr)


async def test_tls_1_2_cipher_has_go_s_name(chain: certs.Chain) -> None:
    async with targets.serve(targets.app(), serving_chain(chain, "ECDHE-ECDSA-AES128-GCM-SHA256")) as secure:
        result, text = await probe({"url": f"{secure}/ok", "ca_file": str(chain.root)})
    assert (result.details or {})["cipher"] == "ECDHE-ECDSA-AES128-GCM-SHA256"  # stored as OpenSSL names it
    assert value(text, "probe_tls_version_info", version="TLS 1.2") == 1
    assert value(text, "probe_tls_cipher_info", cipher="TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256") == 1


@pytest.mark.parametrize(("path", "redirects"), [("/ok", 0), ("/redirect", 1), ("/hops/3", 3)],
                         ids=["none", "one", "a-chain-of-three"])
async def test_redirects_followed_are_counted(base: str, path: str, redirects: int) -> None:
    result, text = await probe({"url": base + path})
    assert result.ok and result.final_url == f"{base}/ok"
    assert value(text, "probe_http_redirects") == redirects
    assert (result.details or {})["redirects"] == redirects


async def test_http_version_of_the_response(base: str, http10: str) -> None:
    result, text = await probe({"url": f"{base}/ok"})
    assert value(text, "probe_http_version") == 1.1 and (result.details or {})["http_version"] == "1.1"
    result, text = await probe({"url": f"{http10}/"})
    assert result.ok and value(text, "probe_http_version") == 1.0 and (result.details or {})["http_version"] == "1.0"


async def test_content_length_is_what_the_server_sent_and_the_body_length_what_was_read(base: str) -> None:
    _, text = await probe({"url": f"{base}/zipped", "max_body_bytes": 4 * 1024 * 1024})
    assert value(text, "probe_http_content_length") == len(gzip.compress(bytes(2 * 1024 * 1024)))
    assert value(text, "probe_http_uncompressed_body_length") == 2 * 1024 * 1024
    result, text = await probe({"url": f"{base}/chunked"})
    assert "content_length" not in (result.details or {})
    assert value(text, "probe_http_content_length") == -1  # Go's ContentLength when none was sent
    assert value(text, "probe_http_uncompressed_body_length") == sum(map(len, CHUNKS))


async def test_last_modified_header_is_a_timestamp(base: str) -> None:
    _, text = await probe({"url": f"{base}/modified"})
    assert value(text, "probe_http_last_modified_timestamp_seconds") == calendar.timegm(MODIFIED.timetuple())
    _, text = await probe({"url": f"{base}/ok"})
    assert list(samples(text, "probe_http_last_modified_timestamp_seconds")) == []  # blackbox: only when sent


async def test_a_regex_failure_sets_probe_failed_due_to_regex(base: str) -> None:
    _, text = await probe({"url": f"{base}/ok", "assertions": [{"body_matches": "DOWN"}]})
    assert value(text, "probe_success") == 0 and value(text, "probe_failed_due_to_regex") == 1
    _, text = await probe({"url": f"{base}/ok", "assertions": [{"body_matches": "UP"}]})
    assert value(text, "probe_success") == 1 and value(text, "probe_failed_due_to_regex") == 0


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_ip_protocol_and_address_hash_of_http_and_tcp(base: str) -> None:
    assert fnv1a_32(b"a") == 0xE40C292C  # the reference implementation against FNV's published test vector
    port = int(base.rsplit(":", 1)[1])
    closed = targets.closed_port()  # refused: the family and address tried, as blackbox_exporter reports them
    for fields in ({"url": f"{base}/ok"}, {"kind": "tcp", "host": "127.0.0.1", "port": port},
                   {"kind": "tcp", "host": "127.0.0.1", "port": closed}, {"url": f"http://127.0.0.1:{closed}/"}):
        result, text = await probe(fields)
        assert (result.details or {})["ip"] == "127.0.0.1"
        assert value(text, "probe_ip_protocol") == 4
        assert value(text, "probe_ip_addr_hash") == fnv1a_32(bytes([127, 0, 0, 1]))
        assert value(text, "probe_dns_lookup_time_seconds") >= 0
    if not ipv6_loopback():
        pytest.skip("no ::1 on this machine")
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as server:
        _, text = await probe({"kind": "tcp", "host": "::1", "port": server.getsockname()[1]})
    assert value(text, "probe_ip_protocol") == 6
    assert value(text, "probe_ip_addr_hash") == fnv1a_32(ipaddress.IPv6Address("::1").packed)


async def test_a_name_that_does_not_resolve_has_no_address() -> None:
    _, text = await probe({"kind": "tcp", "host": "nothing-here.invalid", "port": 80})
    assert value(text, "probe_ip_protocol") == 0 and value(text, "probe_ip_addr_hash") == 0


def default_ipv4_ttl() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_default_ttl").read_text())


async def test_icmp_reply_hop_limit_is_the_reply_s_ttl() -> None:
    result, text = await probe({"kind": "icmp", "host": "127.0.0.1"})
    details = result.details or {}
    if details.get("socket") != "raw":  # only a raw IPv4 socket receives the IP header
        pytest.skip("pinged through a datagram socket: the kernel strips the IP header with the TTL")
    default_ttl = default_ipv4_ttl()
    assert details["reply_ttl"] == default_ttl  # the loopback reply leaves with the host's default TTL
    assert value(text, "probe_icmp_reply_hop_limit") == default_ttl
    assert value(text, "probe_ip_protocol") == 4


async def test_probe_endpoint_answers_the_https_families(pool: AsyncConnectionPool, database_url: str,
                                                         tmp_path: Path, chain: certs.Chain) -> None:
    modules = f"  probe_allowed: [127.0.0.1]\n  modules:\n    chain: {{kind: http, ca_file: '{chain.root}'}}\n"
    async with targets.serve(targets.app(), serving_chain(chain)) as secure, \
            listener(pool, database_url, tmp_path, modules) as get:
        status, text, _ = await get({"target": f"{secure}/ok", "module": "chain"})
    assert status == 200 and value(text, "probe_success") == 1
    assert value(text, "probe_ssl_earliest_cert_expiry") == int(not_after(chain.intermediate).timestamp())
    for family in ("probe_http_content_length", "probe_http_redirects", "probe_http_version", "probe_ip_protocol",
                   "probe_ip_addr_hash", "probe_ssl_last_chain_info", "probe_tls_version_info",
                   "probe_tls_cipher_info", "probe_failed_due_to_regex"):
        assert list(samples(text, family)), family
    checked = promtool_check(text)
    assert checked.returncode == 0, (checked.stdout, checked.stderr)
