from typing import Any

from prober import checks
from tests.prober import dnsserver, targets
from upwatch.config.endpoints import Endpoint
from upwatch.records import AssertionResult


def endpoint(**fields: Any) -> Endpoint:
    return Endpoint.model_validate({"name": "t", "timeout": "2s", **fields})


async def test_tcp_check_times_resolve_and_connect() -> None:
    async with targets.serve(targets.app()) as url:
        port = int(url.rsplit(":", 1)[1])
        result = await checks.run(endpoint(kind="tcp", host="localhost", port=port,
                                assertions=["[CONNECTED] == true", "[RESPONSE_TIME] < 1000"]), None)
    assert result.ok, result.error
    assert result.dns_ms is not None and result.connect_ms is not None and result.latency_ms is not None
    assert [a.ok for a in result.assertions] == [True, True]


async def test_tcp_check_reports_refused_connection() -> None:
    port = targets.closed_port()
    result = await checks.run(endpoint(kind="tcp", host="127.0.0.1", port=port), None)
    assert not result.ok and result.error_kind == "connect"
    assert result.error is not None and result.error.startswith(f"cannot connect to 127.0.0.1:{port}")


async def test_dns_check_resolves_and_asserts_addresses() -> None:
    result = await checks.run(endpoint(kind="dns", host="localhost", assertions=[{"body_contains": "127.0.0.1"}]),
                              None)
    assert result.ok, result.error
    assert result.assertions == (AssertionResult("body contains '127.0.0.1'", ok=True, actual="127.0.0.1"),)


async def test_dns_check_reports_a_name_that_does_not_exist() -> None:
    with dnsserver.serve(dnsserver.DnsServer({})) as server:  # a local nameserver: tests ask nobody else
        result = await checks.run(endpoint(kind="dns", host="nothing-here.invalid",
                                           nameserver=f"127.0.0.1:{server.port}"), None)
    assert not result.ok and result.error_kind == "dns"
    assert result.error == f"NXDOMAIN for nothing-here.invalid. A from 127.0.0.1:{server.port}"
