"""probe_ip_protocol and probe_ip_addr_hash of the tls and dns kinds, as blackbox_exporter's tcp (with TLS)
and dns probers report them: the address connected to (tls) or the nameserver's (dns), also when the
probe then failed, and 0 / 0 when no address was known."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.prober import certs, dnsserver, targets
from tests.prober.exposition_check import value
from tests.prober.test_metrics_blackbox import fnv1a_32, probe

LOOPBACK_HASH = fnv1a_32(bytes([127, 0, 0, 1]))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> certs.Certs:
    return certs.make(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def nameserver() -> Iterator[dnsserver.DnsServer]:
    zone: dnsserver.Zone = {("www.test.", "A"): ["192.0.2.1"], ("test.", "SOA"): [dnsserver.SOA]}
    with dnsserver.serve(dnsserver.DnsServer(zone)) as running:
        yield running


async def test_tls_kind_reports_the_address_it_connected_to(tls: certs.Certs) -> None:
    async with targets.serve(targets.app(), targets.server_context(*map(str, tls.good))) as base:
        port = int(base.rsplit(":", 1)[1])
        result, text = await probe({"kind": "tls", "host": "127.0.0.1", "port": port, "ca_file": str(tls.ca)})
    assert result.ok, result.error
    assert (result.details or {})["ip"] == "127.0.0.1"
    assert value(text, "probe_ip_protocol") == 4
    assert value(text, "probe_ip_addr_hash") == LOOPBACK_HASH


async def test_tls_kind_reports_the_address_it_tried_when_the_connection_fails() -> None:
    result, text = await probe({"kind": "tls", "host": "127.0.0.1", "port": targets.closed_port()})
    assert not result.ok and result.error_kind == "connect"
    assert value(text, "probe_ip_protocol") == 4
    assert value(text, "probe_ip_addr_hash") == LOOPBACK_HASH


async def test_tls_kind_to_a_name_that_does_not_resolve_has_no_address() -> None:
    result, text = await probe({"kind": "tls", "host": "nothing-here.invalid", "port": 443})
    assert not result.ok and result.error_kind == "dns"
    assert value(text, "probe_ip_protocol") == 0 and value(text, "probe_ip_addr_hash") == 0


async def test_dns_kind_reports_the_nameserver_s_address(nameserver: dnsserver.DnsServer) -> None:
    result, text = await probe({"kind": "dns", "host": "www.test", "record_type": "A",
                                "nameserver": f"127.0.0.1:{nameserver.port}"})
    assert result.ok, result.error
    assert (result.details or {})["ip"] == "127.0.0.1"
    assert value(text, "probe_ip_protocol") == 4
    assert value(text, "probe_ip_addr_hash") == LOOPBACK_HASH
    assert value(text, "probe_dns_query_succeeded") == 1


async def test_dns_kind_keeps_the_nameserver_s_address_when_the_query_fails() -> None:
    # Nothing listens on the port: over TCP the connection is refused, so the query fails at once.
    result, text = await probe({"kind": "dns", "host": "www.test", "record_type": "A", "transport": "tcp",
                                "nameserver": f"127.0.0.1:{targets.closed_port()}"})
    assert not result.ok and result.error_kind == "connect"
    assert value(text, "probe_ip_protocol") == 4
    assert value(text, "probe_ip_addr_hash") == LOOPBACK_HASH


async def test_dns_kind_whose_nameserver_name_does_not_resolve_has_no_address() -> None:
    result, text = await probe({"kind": "dns", "host": "www.test", "record_type": "A", "transport": "tls",
                                "nameserver": "nothing-here.invalid"})
    assert not result.ok and result.error_kind == "dns"
    assert value(text, "probe_ip_protocol") == 0 and value(text, "probe_ip_addr_hash") == 0

