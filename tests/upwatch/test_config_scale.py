"""Loading a large config: the work done grows in proportion to the file (issue #17: with a
`defaults:` block it grew with the square of the endpoint count, and 20,000 endpoints never loaded)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from upwatch import config

CONFIG_PACKAGE = str(Path(config.__file__).parent)


def many_endpoints(count: int) -> str:
    """A config shaped like examples/upwatch.yaml: defaults (with nested headers), then `count` endpoints."""
    lines = ["defaults:", "  interval: 15s", "  timeout: 5s", "  headers:", "    User-Agent: upwatch/1",
             "    Accept: application/json", "  tags: [fleet]", "endpoints:"]
    for i in range(count):
        lines += [f"  - name: ep{i}", f"    url: http://127.0.0.1:9/item/{i}"]
        if i % 3 == 0:
            lines += ["    headers:", f"      X-Tenant: t{i}"]
    return "\n".join(lines) + "\n"


def lines_run(text: str) -> int:
    """Python lines executed inside upwatch.config while parsing `text`: a count of operations
    that does not depend on how busy the machine is."""
    count = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def on_call(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename.startswith(CONFIG_PACKAGE) else None

    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        cfg = config.parse(text, "big.yaml", {})
    finally:
        sys.settrace(previous)
    assert len(cfg.endpoints) == text.count("  - name: ")
    return count


def test_config_load_work_grows_linearly_with_endpoints() -> None:
    small, large = lines_run(many_endpoints(100)), lines_run(many_endpoints(400))
    # 4x the endpoints: linear work is at most ~4x (fixed costs make it a little less); the
    # quadratic defaults pass did ~16x.
    assert large <= 4.4 * small, (small, large)


def test_inherited_values_keep_the_defaults_line_at_scale() -> None:
    text = many_endpoints(2000).replace("    Accept: application/json", "    Accept: [json]")
    text += "  - name: last\n    url: http://127.0.0.1:9/last\n    interval: 0s\n"
    with pytest.raises(config.ConfigError) as caught:
        config.parse(text, "big.yaml", {})
    assert str(caught.value).splitlines() == [
        "big.yaml:6: defaults.headers.Accept: Input should be a valid string",
        f"big.yaml:{text.count(chr(10))}: endpoints[2000].interval: '0s' must be at least 1s",
    ]


def test_a_reload_cache_validates_only_changed_endpoints_and_keeps_their_errors_exact() -> None:
    cache = config.EndpointCache()
    text = many_endpoints(200)
    first = config.parse(text, "big.yaml", {}, cache=cache)
    edited = text.replace("http://127.0.0.1:9/item/7\n", "http://127.0.0.1:9/item/7b\n")
    second = config.parse(edited, "big.yaml", {}, cache=cache)
    assert second.endpoints[7].target == "http://127.0.0.1:9/item/7b" and second.endpoints[7] is not first.endpoints[7]
    pairs = enumerate(zip(second.endpoints, first.endpoints, strict=True))
    assert all(new is old for i, (new, old) in pairs if i != 7)
    assert second == config.parse(edited, "big.yaml", {})  # the same result as a load without the cache

    broken = edited.replace("http://127.0.0.1:9/item/150\n", "127.0.0.1:9/item/150\n")
    with pytest.raises(config.ConfigError) as caught:
        config.parse(broken, "big.yaml", {}, cache=cache)
    line = broken.splitlines().index("    url: 127.0.0.1:9/item/150") + 1
    assert str(caught.value) == f"big.yaml:{line}: endpoints[150].url: '127.0.0.1:9/item/150' must be an absolute" \
                                " http:// or https:// URL"
    # a refused load leaves the cache as it was: defaults changed, every endpoint is validated again
    third = config.parse(edited.replace("timeout: 5s", "timeout: 6s"), "big.yaml", {}, cache=cache)
    assert all(e.timeout.total_seconds() == 6 for e in third.endpoints)


def test_a_cache_adopts_the_running_endpoints_only_when_the_file_matches_them() -> None:
    text = many_endpoints(20)
    running = config.parse(text, "big.yaml", {}).endpoints
    cache = config.EndpointCache()
    config.parse(text, "big.yaml", {}, cache=cache)
    assert cache.adopt(running)
    again = config.parse(text.replace("/item/3\n", "/item/3b\n"), "big.yaml", {}, cache=cache)
    assert [i for i, (a, b) in enumerate(zip(again.endpoints, running, strict=True)) if a is not b] == [3]
    assert not cache.adopt(running)  # the file no longer says what runs
