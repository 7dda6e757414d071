"""`prober.modules`, `prober.probe_allowed` and `prober.probe_callers` as the loader reads them: defaults,
overrides, and errors that name the file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from upwatch import config as configuration
from upwatch.config import ConfigError


def load(tmp_path: Path, prober_yaml: str) -> configuration.Config:
    path = tmp_path / "upwatch.yaml"
    path.write_text(f"prober:\n{prober_yaml}")
    return configuration.load(path)


def test_default_modules_are_blackbox_names_and_probe_is_closed(tmp_path: Path) -> None:
    p = load(tmp_path, "  location: lab\n").prober
    assert {name: m.kind for name, m in p.probe_modules().items()} == {
        "http_2xx": "http", "tcp_connect": "tcp", "icmp": "icmp", "dns": "dns"}
    assert p.probe_modules()["http_2xx"].settings == {"expected_status": "200-299"}
    assert p.probe_allowed == [] and p.probe_callers == ["127.0.0.0/8", "::1/128"]


def test_configured_modules_add_to_and_replace_the_defaults(tmp_path: Path) -> None:
    p = load(tmp_path, "  modules:\n    http_2xx: {kind: http}\n    post: {kind: http, method: post, json: {a: 1}}\n"
                       "    slow: {kind: tcp, timeout: 2s}\n").prober
    modules = p.probe_modules()
    assert modules["http_2xx"].settings == {} and modules["post"].settings == {"method": "post", "json": {"a": 1}}
    assert modules["slow"].explicit_timeout and not modules["post"].explicit_timeout
    assert set(modules) == {"http_2xx", "tcp_connect", "icmp", "dns", "post", "slow"}


@pytest.mark.parametrize(("prober_yaml", "message"), [
    ("  modules:\n    m:\n      kind: http\n      timout: 2s\n",
     "upwatch.yaml:5: prober.modules.m.timout: unknown key 'timout' (did you mean 'timeout'?)"),
    ("  modules:\n    m:\n      kind: http\n      url: http://a/\n",
     "upwatch.yaml:5: prober.modules.m.url: url comes from the /probe target, not the module"),
    ("  modules:\n    m:\n      kind: tcp\n      interval: 5s\n",
     "upwatch.yaml:5: prober.modules.m.interval: interval does not apply to /probe modules"),
    ("  modules:\n    m:\n      kind: http\n      expected_status: 2xx\n",
     "upwatch.yaml:5: prober.modules.m.expected_status: '2xx' is not a status code or range like 200-299"),
    ("  modules:\n    m:\n      kind: icmp\n      count: 0\n",
     "upwatch.yaml:5: prober.modules.m.count: Input should be greater than or equal to 1 (got 0)"),
    ("  modules:\n    m:\n      kind: grpc\n",
     "upwatch.yaml:4: prober.modules.m.kind: Input should be 'http', 'tcp', 'dns', 'icmp' or 'tls' (got 'grpc')"),
    ("  probe_allowed:\n    - 10.0.0.0/8\n    - not a host\n",
     "upwatch.yaml:4: prober.probe_allowed[1]: 'not a host' is not a network (10.0.0.0/8), an address, a host name,"
     " *.domain or *"),
    ("  probe_callers: [prometheus]\n",
     "upwatch.yaml:2: prober.probe_callers[0]: 'prometheus' is not a network or address (e.g. 10.0.0.0/8, ::1)"),
], ids=["unknown-key", "target-key", "schedule-key", "bad-value", "icmp-settings", "unknown-kind", "bad-allowed",
        "bad-caller"])
def test_module_and_access_errors_name_file_line_and_key(tmp_path: Path, prober_yaml: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, prober_yaml)
    assert str(raised.value).replace(str(tmp_path) + "/", "") == message
