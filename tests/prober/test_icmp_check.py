"""kind icmp: pings of 127.0.0.1 and ::1 through real sockets. The socket kinds and the failures
(no permission, no reply) run `upwatch probe` in a network namespace of its own (unshare -n), where
ping_group_range, icmp_echo_ignore_all and the capabilities can be set without touching the host's."""

from __future__ import annotations

import functools
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from prober import checks
from upwatch import cli
from upwatch.config.endpoints import Endpoint

REPO = Path(__file__).parents[2]
YAML = """endpoints:
  - name: lo
    kind: icmp
    host: {host}
    count: 2
    packet_interval: 50ms
    timeout: {timeout}
"""


def endpoint(**fields: Any) -> Endpoint:
    return Endpoint.model_validate({"name": "t", "kind": "icmp", "timeout": "2s", **fields})


@functools.cache
def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@functools.cache
def netns_reason() -> str | None:
    """Why a test cannot make its own network namespace here, or None when it can."""
    if sys.platform != "linux" or not (shutil.which("unshare") and shutil.which("ip") and shutil.which("setpriv")):
        return "needs Linux with unshare, ip and setpriv (util-linux, iproute2)"
    done = subprocess.run(["unshare", "--net", "ip", "link", "set", "lo", "up"], capture_output=True, check=False)
    return None if done.returncode == 0 else f"cannot create a network namespace: {done.stderr.decode().strip()}"


def probe_in_netns(config: Path, *, sysctls: dict[str, str], raw: bool) -> subprocess.CompletedProcess[str]:
    """`upwatch probe lo` in a fresh network namespace with `sysctls` set there, without CAP_NET_RAW unless `raw`."""
    return in_netns(["-m", "upwatch.cli", "--config", str(config), "probe", "lo"], sysctls=sysctls, raw=raw)


def in_netns(python_args: list[str], *, sysctls: dict[str, str], raw: bool) -> subprocess.CompletedProcess[str]:
    """Python with `python_args` in a fresh network namespace (lo up, `sysctls` set there), without
    CAP_NET_RAW unless `raw`."""
    reason = netns_reason()
    if reason is not None:
        pytest.skip(reason)
    steps = ["ip link set lo up", *(f"sysctl -qw {k}={shlex.quote(v)}" for k, v in sysctls.items())]
    drop = [] if raw else ["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw"]
    command = [*drop, sys.executable, *python_args]
    script = " && ".join([*steps, "exec " + shlex.join(command)])
    return subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True, text=True, cwd=REPO,
                          timeout=30, check=False)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "upwatch.yaml"
    path.write_text(YAML.format(host="127.0.0.1", timeout="2s"))
    return path


async def test_icmp_check_pings_the_ipv4_loopback() -> None:
    result = await checks.run(endpoint(host="127.0.0.1", count=3, packet_interval="20ms", packet_size=100,
                                       assertions=["[CONNECTED] == true", "[IP] == 127.0.0.1",
                                                   "[RESPONSE_TIME] < 1000"]), None)
    assert result.ok, result.error
    assert result.details is not None
    details = dict(result.details)
    assert {k: details[k] for k in ("ip", "packets_sent", "packets_received", "loss_percent")} == {
        "ip": "127.0.0.1", "packets_sent": 3, "packets_received": 3, "loss_percent": 0.0}
    assert 0 < details["rtt_min_ms"] <= details["rtt_avg_ms"] <= details["rtt_max_ms"]
    assert result.latency_ms == details["rtt_avg_ms"] and result.dns_ms is None  # an address: nothing resolved
    assert details["socket"] in ("datagram", "raw") and [a.ok for a in result.assertions] == [True, True, True]


async def test_icmp_check_pings_the_ipv6_loopback() -> None:
    if not has_ipv6_loopback():
        pytest.skip("no ::1 on this machine")
    result = await checks.run(endpoint(host="::1"), None)
    assert result.ok, result.error
    assert result.details is not None and result.details["ip"] == "::1" and result.details["packets_received"] == 1


async def test_icmp_check_resolves_a_name_first() -> None:
    result = await checks.run(endpoint(host="localhost"), None)
    assert result.ok, result.error
    assert result.dns_ms is not None and result.details is not None
    assert result.details["ip"] in ("127.0.0.1", "::1")


async def test_icmp_check_reports_a_name_that_does_not_resolve() -> None:
    result = await checks.run(endpoint(host="nothing-here.invalid"), None)
    assert not result.ok and result.error_kind == "dns"
    assert result.error is not None and result.error.startswith("cannot resolve nothing-here.invalid:")


async def test_icmp_check_fails_an_assertion_on_the_round_trip() -> None:
    result = await checks.run(endpoint(host="127.0.0.1", assertions=["[RESPONSE_TIME] < 0"]), None)
    assert not result.ok and result.error_kind == "assertion"
    assert result.details is not None and result.details["packets_received"] == 1  # measured all the same


def test_upwatch_probe_pings_and_prints_the_details(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--config", str(config), "probe", "lo"]) == 0
    out = capsys.readouterr().out
    assert "lo  icmp 127.0.0.1" in out and "result      OK" in out
    assert "packets sent 2" in out and "packets received 2" in out and "loss percent 0.0" in out
    assert "rtt avg ms" in out


def test_without_cap_net_raw_and_outside_ping_group_range_the_error_says_what_to_change(config: Path) -> None:
    done = probe_in_netns(config, sysctls={"net.ipv4.ping_group_range": "1 0"}, raw=False)
    assert done.returncode == 1, done.stderr
    assert ("result      FAIL  permission: cannot open an ICMP socket: the prober's group (gid 0) is outside "
            "net.ipv4.ping_group_range (1 0) and it lacks CAP_NET_RAW for a raw socket; allow unprivileged ping with "
            'sysctl -w net.ipv4.ping_group_range="0 2147483647", or run the prober as root or with CAP_NET_RAW'
            ) in done.stdout


def test_inside_ping_group_range_an_unprivileged_datagram_socket_is_used(config: Path) -> None:
    done = probe_in_netns(config, sysctls={"net.ipv4.ping_group_range": "0 2147483647"}, raw=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "result      OK" in done.stdout and "socket      datagram" in done.stdout
    assert "packets received 2" in done.stdout


def test_with_cap_net_raw_a_raw_socket_is_used(config: Path) -> None:
    done = probe_in_netns(config, sysctls={"net.ipv4.ping_group_range": "1 0"}, raw=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "result      OK" in done.stdout and "socket      raw" in done.stdout


def test_a_host_that_does_not_answer_times_out_within_the_timeout(tmp_path: Path) -> None:
    config = tmp_path / "upwatch.yaml"
    config.write_text(YAML.format(host="127.0.0.1", timeout="600ms"))
    done = probe_in_netns(config, sysctls={"net.ipv4.icmp_echo_ignore_all": "1"}, raw=True)
    assert done.returncode == 1, done.stderr
    assert "result      FAIL  timeout: no reply from 127.0.0.1 within 0.6s (2 of 2 packets sent)" in done.stdout
    assert "packets received 0" in done.stdout and "loss percent 100.0" in done.stdout
    assert "rtt avg ms" not in done.stdout  # no round trip, no made-up time


CONCURRENT = """
import asyncio
from prober import checks
from upwatch.config.endpoints import Endpoint

async def main():
    hosts = ["127.0.0.1", "::1"] if {ipv6} else ["127.0.0.1"]
    endpoints = [Endpoint.model_validate({{"name": f"e{{i}}", "kind": "icmp", "host": hosts[i % len(hosts)],
                                          "count": 2, "packet_interval": "50ms", "timeout": "8s"}})
                 for i in range(200)]
    results = await asyncio.gather(*(checks.run(e, None) for e in endpoints))
    print(sorted({{r.details["socket"] for r in results}}), sum(r.details["packets_received"] for r in results))

asyncio.run(main())
"""


def test_concurrent_pings_on_raw_sockets_lose_no_replies() -> None:
    # A raw socket gets every ICMP message the host receives: with one per ping, 200 at once
    # overflowed each other's buffers and reported loss that was not there.
    done = in_netns(["-c", CONCURRENT.format(ipv6=has_ipv6_loopback())],
                    sysctls={"net.ipv4.ping_group_range": "1 0"}, raw=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['raw']", "400"]


@pytest.mark.parametrize(("lines", "message"), [
    ("    count: 5\n    timeout: 3s\n",
     "upwatch.yaml:6: endpoints[0].timeout: 5 packets 1s apart take 4s to send, which does not fit in timeout 3s: "
     "lower count or packet_interval, or raise timeout"),
    ("    packet_size: 70000\n", "upwatch.yaml:5: endpoints[0].packet_size: Input should be less than or equal to "
     "65507 (got 70000)"),
    ("    count: 0\n", "upwatch.yaml:5: endpoints[0].count: Input should be greater than or equal to 1 (got 0)"),
    ("    port: 7\n", "upwatch.yaml:5: endpoints[0].port: port is not an option of kind icmp"),
], ids=["count-does-not-fit-timeout", "packet-too-large", "no-packets", "tcp-key"])
def test_check_config_reports_icmp_errors_with_file_and_line(
        lines: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "upwatch.yaml"
    path.write_text("endpoints:\n  - name: lo\n    kind: icmp\n    host: 127.0.0.1\n" + lines)
    assert cli.main(["--config", str(path), "check-config"]) == 1
    assert capsys.readouterr().err.strip().replace(f"{tmp_path}/", "") == message


def test_a_missing_host_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="host is required for kind icmp"):
        endpoint()
