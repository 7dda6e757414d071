"""kind ssh against a real OpenSSH server started here on 127.0.0.1 (Debian's openssh-server; those
tests skip without it) and against TCP servers that are not SSH servers."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from prober import checks
from prober.checks.ssh import IDENTIFICATION
from tests.prober import targets
from upwatch import cli
from upwatch.config.endpoints import Endpoint

SSHD = Path("/usr/sbin/sshd")  # sshd re-executes itself and wants its absolute path


def endpoint(**fields: Any) -> Endpoint:
    return Endpoint.model_validate({"name": "t", "kind": "ssh", "host": "127.0.0.1", "timeout": "2s", **fields})


@pytest.fixture(scope="module")
def sshd() -> Iterator[int]:
    """OpenSSH's sshd on 127.0.0.1 with a throw-away host key and config; yields its port."""
    if not SSHD.exists() or shutil.which("ssh-keygen") is None:
        pytest.skip("needs Debian's openssh-server (apt-get install openssh-server)")
    if os.geteuid() != 0:
        pytest.skip("sshd needs root for its privilege separation")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation directory, as the service makes it
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "host_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        config = Path(tmp) / "sshd_config"
        config.write_text(f"ListenAddress 127.0.0.1\nHostKey {key}\nPidFile none\nUsePAM no\nStrictModes no\n")
        port = targets.closed_port()
        proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config), "-p", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_listening(port, proc)
            yield port
        finally:
            proc.terminate()
            proc.wait(10)
            assert proc.stderr is not None
            proc.stderr.close()


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(100):
        if proc.poll() is not None:
            assert proc.stderr is not None
            pytest.fail(f"sshd exited: {proc.stderr.read().decode()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail("sshd did not listen within 5s")


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def tcp_server(handler: Handler) -> AsyncIterator[int]:
    """A TCP server running `handler` per connection; on exit, waits for every handler to finish."""
    running: list[asyncio.Future[None]] = []

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done = asyncio.get_running_loop().create_future()
        running.append(done)
        try:
            await handler(reader, writer)
        finally:
            writer.close()
            done.set_result(None)

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
        await asyncio.wait_for(asyncio.gather(*running), 5)


def sends(data: bytes, received: asyncio.Future[bytes] | None = None) -> Handler:
    """A server that sends `data`, hands the first line it gets back to `received`, and hangs up."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()
        if received is not None:
            received.set_result(await reader.readline())
        writer.close()
        await writer.wait_closed()

    return handle


async def test_ssh_check_reads_openssh_identification(sshd: int) -> None:
    result = await checks.run(endpoint(port=sshd, assertions=["[BODY] == pat(SSH-2.0-OpenSSH_*)",
                                                              "[CONNECTED] == true"]), None)
    assert result.ok, result.error
    assert result.details is not None
    assert result.details["protocol_version"] == "2.0" and result.details["software"].startswith("OpenSSH_")
    assert result.connect_ms is not None and result.response_bytes is not None
    assert [a.ok for a in result.assertions] == [True, True]


def test_upwatch_probe_prints_the_server_software(sshd: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "upwatch.yaml"
    path.write_text(f"endpoints:\n  - name: bastion\n    kind: ssh\n    host: 127.0.0.1\n    port: {sshd}\n")
    assert cli.main(["--config", str(path), "probe", "bastion"]) == 0
    out = capsys.readouterr().out
    assert f"bastion  ssh 127.0.0.1:{sshd}\n  result      OK\n" in out
    assert "protocol version 2.0" in out and "software    OpenSSH_" in out


async def test_ssh_check_skips_lines_before_the_identification_and_sends_its_own() -> None:
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    async with tcp_server(sends(b"welcome\r\nno login here\r\nSSH-1.99-Fancy_1.0 build 7 beta\r\n", received)) as port:
        result = await checks.run(endpoint(port=port), None)
        assert await asyncio.wait_for(received, 5) == IDENTIFICATION
    assert result.ok, result.error
    assert result.details == {"protocol_version": "1.99", "software": "Fancy_1.0", "comments": "build 7 beta"}


@pytest.mark.parametrize(("sent", "kind", "message"), [
    (b"HTTP/1.1 400 Bad Request\r\n" * 60, "protocol",
     "no SSH identification in the first 50 lines (the last: 'HTTP/1.1 400 Bad Request')"),
    (b"x" * 300, "protocol", "a line longer than 255 bytes is not an SSH identification"),
    (b"SSH-2.0\r\n", "protocol", "'SSH-2.0' is not SSH-protoversion-softwareversion"),
    (b"", "closed", "closed the connection before its SSH identification"),
], ids=["garbage", "long-line", "no-software", "hangs-up"])
async def test_a_server_that_is_not_ssh_is_a_typed_failure(sent: bytes, kind: str, message: str) -> None:
    async with tcp_server(sends(sent)) as port:
        result = await checks.run(endpoint(port=port), None)
    assert not result.ok and result.error_kind == kind
    assert result.error is not None and result.error.endswith(message)


async def test_a_server_that_says_nothing_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the check hangs up
        writer.close()
        await writer.wait_closed()

    async with tcp_server(silent) as port:
        result = await checks.run(endpoint(port=port, timeout="300ms"), None)
    assert not result.ok and result.error_kind == "timeout"
    assert result.error == "timeout after 0.3s waiting for the SSH identification"


async def test_a_refused_connection_is_a_connect_error() -> None:
    port = targets.closed_port()
    result = await checks.run(endpoint(port=port), None)
    assert not result.ok and result.error_kind == "connect"
    assert result.error is not None and result.error.startswith(f"cannot connect to 127.0.0.1:{port}")


def test_the_port_defaults_to_22() -> None:
    assert endpoint().target == "127.0.0.1:22"


@pytest.mark.parametrize(("lines", "message"), [
    ("    host: ''\n", "upwatch.yaml:2: endpoints[0]: host is required for kind ssh"),
    ("    host: a\n    port: 0\n",
     "upwatch.yaml:5: endpoints[0].port: Input should be greater than or equal to 1 (got 0)"),
    ("    host: a\n    expect: x\n", "upwatch.yaml:5: endpoints[0].expect: expect is not an option of kind ssh"),
], ids=["no-host", "bad-port", "udp-key"])
def test_check_config_reports_ssh_errors_with_file_and_line(
        lines: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "upwatch.yaml"
    path.write_text("endpoints:\n  - name: s\n    kind: ssh\n" + lines)
    assert cli.main(["--config", str(path), "check-config"]) == 1
    assert capsys.readouterr().err.strip().replace(f"{tmp_path}/", "") == message
