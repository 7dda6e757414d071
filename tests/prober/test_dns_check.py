"""The dns check against a real DNS server on 127.0.0.1 (tests/prober/dnsserver.py): record types,
rcodes, timeouts, TCP and its fallback, DoT and DoH, [DNS_RCODE], `upwatch probe` and check-config."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.rcode
import pytest

from prober import checks
from tests.prober import certs, dnsserver, targets
from upwatch import cli, config
from upwatch.config.endpoints import Endpoint

ZONE: dnsserver.Zone = {
    ("www.test.", "A"): ["192.0.2.2", "192.0.2.1"],
    ("www.test.", "AAAA"): ["2001:db8::1"],
    ("alias.test.", "CNAME"): ["www.test."],
    ("test.", "MX"): ["20 mx2.test.", "10 mx1.test."],
    ("test.", "NS"): ["ns.test."],
    ("test.", "TXT"): ['"v=spf1 " "-all"'],
    ("test.", "SOA"): [dnsserver.SOA],
    ("_sip._tcp.test.", "SRV"): ["10 60 5060 sip.test."],
    ("test.", "CAA"): ['0 issue "letsencrypt.org"'],
    ("7.2.0.192.in-addr.arpa.", "PTR"): ["www.test."],
    ("big.test.", "TXT"): [f'"{"x" * 200}{i}"' for i in range(4)],  # over 512 bytes: truncated over UDP
}
RCODES = {"broken.test.": dns.rcode.SERVFAIL, "closed.test.": dns.rcode.REFUSED}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> certs.Certs:
    return certs.make(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def server(tls: certs.Certs) -> Iterator[dnsserver.DnsServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls.good)
    with dnsserver.serve(dnsserver.DnsServer(ZONE, RCODES, silent={"slow.test."}), context) as running:
        yield running


def endpoint(server: dnsserver.DnsServer, **fields: Any) -> Endpoint:
    # 5 s: an answer from the local server is never that late, even on a loaded machine.
    return Endpoint.model_validate({"name": "t", "kind": "dns", "timeout": "5s",
                                    "nameserver": f"127.0.0.1:{server.port}", **fields})


@pytest.mark.parametrize(("host", "record_type", "answers"), [
    ("www.test", "A", ["192.0.2.1", "192.0.2.2"]),
    ("www.test", "AAAA", ["2001:db8::1"]),
    ("alias.test", "CNAME", ["www.test."]),
    ("test", "MX", ["10 mx1.test.", "20 mx2.test."]),
    ("test", "NS", ["ns.test."]),
    ("test", "TXT", ["v=spf1 -all"]),  # the strings of a record joined, unquoted
    ("test", "SOA", [dnsserver.SOA]),
    ("_sip._tcp.test", "SRV", ["10 60 5060 sip.test."]),
    ("test", "CAA", ['0 issue "letsencrypt.org"']),
    ("192.0.2.7", "PTR", ["www.test."]),  # an address is reversed into in-addr.arpa
], ids=lambda v: v if isinstance(v, str) else None)
async def test_each_record_type_stores_sorted_answers_and_asserts_them_as_the_body(
        server: dnsserver.DnsServer, host: str, record_type: str, answers: list[str]) -> None:
    body = "\n".join(answers)
    result = await checks.run(endpoint(server, host=host, record_type=record_type.lower(),
                                       assertions=["[DNS_RCODE] == NOERROR", f"[BODY] == {body}"]), None)
    assert result.ok, result.error
    assert result.details is not None and result.details["answers"] == answers
    assert result.details["rcode"] == "NOERROR" and result.details["answer_count"] == len(answers)
    assert result.details["nameserver"] == f"127.0.0.1:{server.port}" and result.details["transport"] == "udp"
    assert result.latency_ms is not None and result.dns_ms == result.latency_ms
    assert [a.ok for a in result.assertions] == [True, True]


@pytest.mark.parametrize(("host", "rcode"), [("nothing.test", "NXDOMAIN"), ("broken.test", "SERVFAIL"),
                                             ("closed.test", "REFUSED")])
async def test_an_rcode_other_than_noerror_fails_with_the_rcode_and_keeps_the_details(
        server: dnsserver.DnsServer, host: str, rcode: str) -> None:
    result = await checks.run(endpoint(server, host=host, assertions=["[DNS_RCODE] == NOERROR"]), None)
    assert not result.ok and result.error_kind == "dns"
    assert result.error == f"{rcode} for {host}. A from 127.0.0.1:{server.port}"
    assert result.details is not None and result.details["rcode"] == rcode and result.details["answers"] == []
    assert result.details["authority_count"] == (1 if rcode == "NXDOMAIN" else 0)  # the zone's SOA
    (held,) = result.assertions
    assert not held.ok and held.actual == rcode and held.reason == f"expected == NOERROR, got {rcode}"


async def test_expected_rcode_any_leaves_the_verdict_to_dns_rcode_conditions(server: dnsserver.DnsServer) -> None:
    gone = await checks.run(endpoint(server, host="nothing.test", expected_rcode="any",
                                     assertions=["[DNS_RCODE] == NXDOMAIN"]), None)
    listed = await checks.run(endpoint(server, host="nothing.test", expected_rcode=["NXDOMAIN", "SERVFAIL"]), None)
    wrong = await checks.run(endpoint(server, host="www.test", expected_rcode="any",
                                      assertions=["[DNS_RCODE] == any(NXDOMAIN, SERVFAIL)"]), None)
    assert gone.ok and listed.ok, (gone.error, listed.error)
    assert not wrong.ok and wrong.error_kind == "assertion"
    assert wrong.error == "[DNS_RCODE] == any(NXDOMAIN, SERVFAIL): expected == any(NXDOMAIN, SERVFAIL), got NOERROR"


async def test_an_empty_answer_fails_unless_answers_are_not_required(server: dnsserver.DnsServer) -> None:
    empty = await checks.run(endpoint(server, host="alias.test", record_type="MX"), None)
    allowed = await checks.run(endpoint(server, host="alias.test", record_type="MX", require_answer=False,
                                        assertions=["len([BODY]) == 0"]), None)
    assert not empty.ok and empty.error_kind == "dns"
    assert empty.error == f"no MX record for alias.test. from 127.0.0.1:{server.port} (NOERROR, empty answer)"
    assert allowed.ok, allowed.error
    assert allowed.details is not None and allowed.details["answers"] == [] and allowed.details["authority_count"] == 1


async def test_a_server_that_does_not_answer_is_a_timeout(server: dnsserver.DnsServer) -> None:
    for transport in ("udp", "tcp"):
        result = await checks.run(endpoint(server, host="slow.test", transport=transport, timeout="1s"), None)
        assert not result.ok and result.error_kind == "timeout", transport
        assert result.error == f"timeout after 1s asking 127.0.0.1:{server.port} for slow.test."
    assert server.seen == [("udp", "slow.test."), ("tcp", "slow.test.")]


async def test_tcp_transport_and_the_udp_fallback_to_tcp_for_a_truncated_answer(server: dnsserver.DnsServer) -> None:
    over_tcp = await checks.run(endpoint(server, host="www.test", transport="tcp"), None)
    big = await checks.run(endpoint(server, host="big.test", record_type="TXT"), None)
    assert over_tcp.ok and big.ok, (over_tcp.error, big.error)
    assert over_tcp.details is not None and over_tcp.details["transport"] == "tcp"
    assert big.details is not None and big.details["transport"] == "tcp" and len(big.details["answers"]) == 4
    assert server.seen == [("tcp", "www.test."), ("udp", "big.test."), ("tcp", "big.test.")]


async def test_a_closed_port_is_a_connect_error() -> None:
    port = targets.closed_port()
    result = await checks.run(Endpoint.model_validate({"name": "t", "kind": "dns", "timeout": "1s", "host": "x.test",
                                                       "transport": "tcp", "nameserver": f"127.0.0.1:{port}"}), None)
    assert not result.ok and result.error_kind == "connect"
    assert result.error is not None and result.error.startswith(f"cannot reach nameserver 127.0.0.1:{port}: ")


async def test_dns_over_tls_verifies_the_server_certificate(server: dnsserver.DnsServer, tls: certs.Certs) -> None:
    ns = f"127.0.0.1:{server.tls_port}"
    good = await checks.run(endpoint(server, host="www.test", transport="tls", nameserver=ns, ca_file=str(tls.ca)),
                            None)
    untrusted = await checks.run(endpoint(server, host="www.test", transport="tls", nameserver=ns), None)
    unverified = await checks.run(endpoint(server, host="www.test", transport="tls", nameserver=ns,
                                           verify_tls=False), None)
    assert good.ok and unverified.ok, (good.error, unverified.error)
    assert good.details is not None and good.details["transport"] == "tls" and good.details["nameserver"] == ns
    assert not untrusted.ok and untrusted.error_kind == "tls"
    assert untrusted.error is not None
    assert untrusted.error.startswith(f"TLS with {ns} failed: CERTIFICATE_VERIFY_FAILED")
    assert [t for t, _ in server.seen] == ["tls", "tls"]


async def test_dns_over_https_posts_the_query(server: dnsserver.DnsServer, tls: certs.Certs) -> None:
    url = f"https://127.0.0.1:{server.doh_port}/dns-query"
    result = await checks.run(endpoint(server, host="test", record_type="MX", transport="https", nameserver=url,
                                       ca_file=str(tls.ca)), None)
    by_address = await checks.run(endpoint(server, host="nothing.test", transport="https", ca_file=str(tls.ca),
                                           nameserver=f"127.0.0.1:{server.doh_port}", expected_rcode="NXDOMAIN"),
                                  None)
    not_dns = await checks.run(endpoint(server, host="test", transport="https", ca_file=str(tls.ca),
                                        nameserver=f"https://127.0.0.1:{server.doh_port}/elsewhere"), None)
    assert result.ok and by_address.ok, (result.error, by_address.error)
    assert result.details is not None and result.details["answers"] == ["10 mx1.test.", "20 mx2.test."]
    assert result.details["nameserver"] == url and result.details["transport"] == "https"
    assert not not_dns.ok and not_dns.error_kind == "dns"
    assert not_dns.error == (f"https://127.0.0.1:{server.doh_port}/elsewhere: "
                             "DoH server answered HTTP 404 text/plain")
    untrusted = await checks.run(endpoint(server, host="test", transport="https", nameserver=url), None)
    assert not untrusted.ok and untrusted.error_kind == "tls"
    assert untrusted.error is not None and untrusted.error.startswith(f"TLS with {url} failed: ")
    assert "certificate verify failed" in untrusted.error
    assert [t for t, _ in server.seen] == ["https", "https"]


async def test_the_system_resolver_answers_localhost_from_etc_hosts() -> None:
    result = await checks.run(Endpoint.model_validate({"name": "t", "kind": "dns", "host": "localhost",
                                                       "assertions": ["[BODY] == 127.0.0.1"]}), None)
    assert result.ok, result.error
    assert result.details is not None and result.details["answers"] == ["127.0.0.1"]
    assert result.details["nameserver"] == "/etc/hosts" and result.details["rcode"] == "NOERROR"


def test_upwatch_probe_prints_the_rcode_and_answers(server: dnsserver.DnsServer, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the working tree
    path = tmp_path / "upwatch.yaml"
    path.write_text(f"endpoints:\n  - name: mail\n    kind: dns\n    host: test\n    record_type: MX\n"
                    f"    nameserver: 127.0.0.1:{server.port}\n    assertions: ['[DNS_RCODE] == NOERROR']\n"
                    f"  - name: gone\n    kind: dns\n    host: nothing.test\n"
                    f"    nameserver: 127.0.0.1:{server.port}\n")
    assert cli.main(["--config", str(path), "probe", "mail"]) == 0
    out = capsys.readouterr().out
    assert f"mail  dns test MX @127.0.0.1:{server.port}" in out and "result      OK" in out
    assert "  rcode       NOERROR\n" in out and "  answers     10 mx1.test., 20 mx2.test.\n" in out
    assert "  answer count 2\n" in out and "pass        [DNS_RCODE] == NOERROR" in out
    assert cli.main(["--config", str(path), "probe", "gone"]) == 1
    out = capsys.readouterr().out
    assert f"result      FAIL  dns: NXDOMAIN for nothing.test. A from 127.0.0.1:{server.port}" in out
    assert "  rcode       NXDOMAIN\n" in out and "  answers     (none)\n" in out


def test_check_config_names_file_and_line_of_bad_dns_keys() -> None:
    text = ("endpoints:\n"
            "  - name: a\n    kind: dns\n    host: example.com\n    record_type: MXX\n"
            "  - name: b\n    kind: dns\n    host: example.com\n    nameserver: '1.1.1.1:99999'\n"
            "  - name: c\n    kind: dns\n    host: example.com\n    transport: tls\n"
            "  - name: d\n    kind: dns\n    host: example.com\n    nameserver: https://dns.test/q\n"
            "  - name: e\n    kind: dns\n    host: example.com\n    expected_rcode: [NOERROR, NXDOMIAN]\n"
            "  - name: f\n    kind: dns\n    host: exa mple.com\n    transport: quic\n"
            "  - name: g\n    kind: dns\n    host: example.com\n    assertions: ['[DNS_RCODE] == nxdomain']\n")
    with pytest.raises(config.ConfigError) as caught:
        config.parse(text, "upwatch.yaml", {})
    assert str(caught.value).splitlines() == [
        "upwatch.yaml:5: endpoints[0].record_type: 'MXX' is not supported "
        "(use one of A, AAAA, CNAME, MX, NS, TXT, SOA, SRV, CAA, PTR)",
        "upwatch.yaml:9: endpoints[1].nameserver: port 99999 is out of range 1-65535",
        "upwatch.yaml:10: endpoints[2]: transport tls needs a nameserver (the system resolver speaks plain DNS)",
        "upwatch.yaml:17: endpoints[3].nameserver: 'https://dns.test/q' is a DoH URL: set transport: https",
        "upwatch.yaml:21: endpoints[4].expected_rcode: 'NXDOMIAN' is not an rcode (use 'any' or some of NOERROR, "
        "FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, YXDOMAIN, YXRRSET, NXRRSET, NOTAUTH, NOTZONE, BADVERS)",
        "upwatch.yaml:24: endpoints[5].host: 'exa mple.com' is not a DNS name "
        "(labels of letters, digits, '-' or '_', up to 63 each)",
        "upwatch.yaml:25: endpoints[5].transport: Input should be 'udp', 'tcp', 'tls' or 'https' (got 'quic')",
        "upwatch.yaml:29: endpoints[6].assertions[0]: condition '[DNS_RCODE] == nxdomain': 'nxdomain' is not an "
        "rcode name (use one of NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, YXDOMAIN, YXRRSET, NXRRSET, "
        "NOTAUTH, NOTZONE, BADVERS)",
    ]
