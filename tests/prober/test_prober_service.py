import asyncio
import ctypes
import logging
import os
import signal
import struct
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from psycopg_pool import AsyncConnectionPool

from prober import service
from tests.prober import targets
from tests.prober.conftest import fetch
from upwatch import config as configuration
from upwatch.runtime import Runtime


def write_config(path: Path, base: str, port: int, names: list[str]) -> None:
    endpoints = "".join(f"  - name: {n}\n    url: {base}/{'status/500' if n == 'b' else 'ok'}\n    interval: 1s\n"
                        for n in names)
    path.write_text(f"endpoints:\n{endpoints}"
                    f"prober:\n  location: lab\n  instance: p1\n  data_dir: {path.parent / 'data'}\n"
                    f"  config_poll_interval: 100ms\n  flush_interval: 100ms\n"
                    f"push:\n  listen: 127.0.0.1:{port}\n")


# What the first waits of a test cover: the service's start (config validated again, endpoints synced,
# listener bound, gc.collect) and then a probe at the endpoint's phase, up to 1 s later. 5 s were
# used up to 3.3 s at load 9.5 on 2 cores; the waits for a reload used up to 0.9 s of theirs.
START_S = 20.0


async def wait_for(predicate: Callable[[], Any], timeout_s: float = 5.0) -> None:
    """Poll a plain or async predicate until it is true; bounded by timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_service_probes_serves_metrics_and_reloads(tmp_path: Path, database_url: str, pool: AsyncConnectionPool,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    port = targets.closed_port()
    async with targets.serve(targets.app()) as base, aiohttp.ClientSession() as client:
        path = tmp_path / "upwatch.yaml"
        write_config(path, base, port, ["a", "b"])
        runtime = Runtime(configuration.load(path), path, database_url, pool)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(runtime, stop))

        async def metrics() -> str:
            try:
                async with client.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    return await resp.text()
            except aiohttp.ClientConnectionError:
                return ""

        async def both_probed() -> bool:
            text = await metrics()
            return 'probe_success{endpoint="a"' in text and 'probe_success{endpoint="b"' in text

        await wait_for(both_probed, START_S)
        text = await metrics()
        assert 'probe_success{endpoint="a",kind="http",location="lab"} 1' in text
        assert 'probe_success{endpoint="b",kind="http",location="lab"} 0' in text
        assert 'probe_http_status_code{endpoint="b",kind="http",location="lab"} 500' in text
        assert 'probe_http_duration_seconds{endpoint="a",kind="http",location="lab",phase="processing"}' in text
        assert "upwatch_prober_start_lateness_seconds_count" in text
        async with client.get(f"http://127.0.0.1:{port}/healthz") as resp:
            assert resp.status == 200 and (await resp.json())["endpoints"] == 2

        write_config(path, base, port, ["a", "c"])  # c added, b removed
        await wait_for(lambda: "config reloaded added=1 changed=0 removed=1" in caplog.text)

        async def c_probed() -> bool:
            text = await metrics()
            return 'probe_success{endpoint="c"' in text and 'endpoint="b"' not in text

        await wait_for(c_probed)

        path.write_text("endpoints:\n  - name: a\n    interval: -1s\n")
        await wait_for(lambda: "config reload rejected" in caplog.text)
        assert "endpoints[0].interval" in caplog.text
        async with client.get(f"http://127.0.0.1:{port}/healthz") as resp:
            assert resp.status == 200 and (await resp.json())["endpoints"] == 2  # the old config keeps running

        write_config(path, base, port, ["a", "c"])
        await wait_for(lambda: caplog.text.count("config reloaded") == 2)
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_for(lambda: caplog.text.count("config reloaded") == 3)

        stop.set()
        await asyncio.wait_for(task, 5)
    rows = fetch(database_url, "SELECT e.name, count(*) FROM probe_results r JOIN endpoints e ON e.id = r.endpoint_id"
                               " GROUP BY e.name ORDER BY e.name")
    assert [r[0] for r in rows] == ["a", "b", "c"]
    assert fetch(database_url, "SELECT enabled FROM endpoints WHERE name = 'b'") == [(False,)]


async def test_listener_address_in_use_is_a_startup_error(tmp_path: Path, database_url: str,
                                                          pool: AsyncConnectionPool) -> None:
    async with targets.serve(targets.app()) as base:
        port = int(base.rsplit(":", 1)[1])
        path = tmp_path / "upwatch.yaml"
        write_config(path, base, port, ["a"])
        runtime = Runtime(configuration.load(path), path, database_url, pool)
        with pytest.raises(OSError):  # noqa: PT011 - the bind error's text differs by platform
            await service.run(runtime, asyncio.Event())
    assert not (tmp_path / "data" / "spool" / "spool.jsonl").exists() or \
        (tmp_path / "data" / "spool" / "spool.jsonl").stat().st_size == 0


async def test_push_endpoint_added_by_reload_accepts_check_ins(tmp_path: Path, database_url: str,
                                                                pool: AsyncConnectionPool,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    port = targets.closed_port()
    async with targets.serve(targets.app()) as base, aiohttp.ClientSession() as client:
        path = tmp_path / "upwatch.yaml"
        write_config(path, base, port, ["a"])
        runtime = Runtime(configuration.load(path), path, database_url, pool)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(runtime, stop))
        await wait_for(lambda: "prober started" in caplog.text, START_S)
        async with client.post(f"http://127.0.0.1:{port}/api/v1/checks/nightly") as resp:
            assert resp.status == 404  # not configured yet

        text = path.read_text().replace("prober:\n", "  - name: nightly\n    kind: push\n    period: 1h\nprober:\n")
        path.write_text(text)
        await wait_for(lambda: "config reloaded" in caplog.text)  # push endpoints are not scheduled: added=0
        async with client.post(f"http://127.0.0.1:{port}/api/v1/checks/nightly", json={"latency_ms": 12.5}) as resp:
            assert resp.status == 202, await resp.text()
        async with client.post(f"http://127.0.0.1:{port}/api/v1/checks/nightly/fail") as resp:
            assert resp.status == 202, await resp.text()

        path.write_text(text.replace("  - name: nightly\n    kind: push\n    period: 1h\n", ""))
        await wait_for(lambda: caplog.text.count("config reloaded") == 2)
        async with client.post(f"http://127.0.0.1:{port}/api/v1/checks/nightly") as resp:
            assert resp.status == 404  # removed again
        stop.set()
        await asyncio.wait_for(task, 5)
    rows = fetch(database_url, "SELECT r.ok, r.latency_ms, r.source FROM probe_results r"
                               " JOIN endpoints e ON e.id = r.endpoint_id WHERE e.name = 'nightly' ORDER BY r.time")
    assert rows == [(True, 12.5, "push"), (False, None, "push")]


async def test_reload_keeps_the_running_config_when_the_file_is_emptied_or_cut_short(
        tmp_path: Path, database_url: str, pool: AsyncConnectionPool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    port = targets.closed_port()
    async with targets.serve(targets.app()) as base, aiohttp.ClientSession() as client:
        path = tmp_path / "upwatch.yaml"
        write_config(path, base, port, ["a", "b"])
        full = path.read_text()
        settings = full[full.index("prober:"):]
        runtime = Runtime(configuration.load(path), path, database_url, pool)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(runtime, stop))
        await wait_for(lambda: "prober started" in caplog.text, START_S)

        async def running() -> int:
            async with client.get(f"http://127.0.0.1:{port}/healthz") as resp:
                return int((await resp.json())["endpoints"])

        bad = [("", "no endpoints key while 2 endpoints run"),  # emptied: an editor's write in progress
               ("# upwatch\n\n" + settings, "no endpoints key while 2 endpoints run"),  # endpoints lost
               (f"endpoints: [{{name: a, url: '{base}/ok'}}, {{name: b, url", "invalid YAML")]  # cut mid-list
        for rejected, (text, reason) in enumerate(bad, start=1):
            path.write_text(text)
            await wait_for(lambda n=rejected: caplog.text.count("config reload rejected") == n)
            assert caplog.text.count(reason) >= 1
            assert await running() == 2
        assert fetch(database_url, "SELECT name, enabled FROM endpoints ORDER BY name") == [("a", True), ("b", True)]

        path.write_text("endpoints: []\n" + settings)  # deliberate: stop probing everything
        await wait_for(lambda: "config reloaded added=0 changed=0 removed=2" in caplog.text)
        assert await running() == 0
        stop.set()
        await asyncio.wait_for(task, 5)
    assert fetch(database_url, "SELECT name, enabled FROM endpoints ORDER BY name") == [("a", False), ("b", False)]


def test_a_config_file_change_is_applied_once_it_reads_the_same_twice(tmp_path: Path) -> None:
    path = tmp_path / "upwatch.yaml"
    path.write_text("endpoints: []\n")
    watch = service.ConfigFile(path)
    assert not watch.settled_change()  # unchanged
    path.write_text("endpoints:\n  - name: a\n")  # a write seen half-way...
    assert not watch.settled_change()
    path.write_text("endpoints:\n  - name: a\n    url: http://a.test/\n")  # ...then finished
    assert not watch.settled_change()
    assert watch.settled_change()  # the same on two polls in a row: apply it
    watch.loaded = service.fingerprint(path)  # what reload() records
    assert not watch.settled_change()


class Opens:
    """Counts the opens of the files in a directory as Linux inotify reports them: the kernel's
    own record of who read a file, with nothing of ours patched."""

    IN_CLOSE_WRITE, IN_CLOSE_NOWRITE, IN_OPEN = 0x08, 0x10, 0x20

    def __init__(self, fd: int):
        self.fd = fd

    def since_last(self, name: str) -> int:
        """Opens of `name` since the previous call."""
        count = 0
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return count
            offset = 0
            while offset < len(data):  # struct inotify_event: wd, mask, cookie, len, name[len]
                _, mask, _, length = struct.unpack_from("iIII", data, offset)
                event_name = data[offset + 16:offset + 16 + length].rstrip(b"\0").decode()
                count += bool(mask & self.IN_OPEN) and event_name == name
                offset += 16 + length


@contextmanager
def opens_in(directory: Path) -> Iterator[Opens]:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    try:
        # Closes are watched too: inotify merges identical events in a row, so two opens with no
        # close between them would count as one.
        mask = Opens.IN_OPEN | Opens.IN_CLOSE_WRITE | Opens.IN_CLOSE_NOWRITE
        if libc.inotify_add_watch(fd, bytes(directory), mask) < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch")
        yield Opens(fd)
    finally:
        os.close(fd)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_a_config_file_is_read_again_only_when_its_stat_changes(tmp_path: Path) -> None:
    path = tmp_path / "upwatch.yaml"
    path.write_text("endpoints: []\n")
    minute_ago = time.time_ns() - 60 * 10**9
    os.utime(path, ns=(minute_ago, minute_ago))  # saved well before the prober looks
    with opens_in(tmp_path) as opens:
        watch = service.ConfigFile(path)
        assert opens.since_last(path.name) == 1
        for _ in range(5):
            assert not watch.settled_change()
        assert opens.since_last(path.name) == 0  # os.stat said nothing changed: not read

        # An identical copy saved by a rename: new inode and mtime, so it is read, and not reloaded.
        new = tmp_path / "upwatch.yaml.new"
        new.write_text("endpoints: []\n")
        os.replace(new, path)
        for _ in range(3):
            assert not watch.settled_change()
        assert opens.since_last(path.name) >= 1

        os.utime(path, ns=(minute_ago, minute_ago))  # a touch (to an old time): read once more
        assert not watch.settled_change()
        assert opens.since_last(path.name) == 1
        for _ in range(3):
            assert not watch.settled_change()
        assert opens.since_last(path.name) == 0


def test_a_same_size_rewrite_in_the_clock_tick_of_the_last_read_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "upwatch.yaml"
    path.write_text("endpoints: [a]\n")
    # An mtime not older than the prober's read, as a write in the same filesystem clock tick leaves
    # it (set ahead here, so that no scheduling delay of this test matters).
    tick = time.time_ns() + 30 * 10**9
    os.utime(path, ns=(tick, tick))
    watch = service.ConfigFile(path)
    before = path.stat()
    with path.open("r+") as f:
        f.write("endpoints: [b]\n")  # same size, same inode
    os.utime(path, ns=(tick, tick))
    after = path.stat()
    assert (after.st_size, after.st_ino, after.st_mtime_ns) == (before.st_size, before.st_ino, before.st_mtime_ns)
    assert not watch.settled_change()  # read again (the mtime is recent) and found changed...
    assert watch.settled_change()  # ...then the same on the next poll: apply it
