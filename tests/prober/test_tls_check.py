"""The tls check against real TLS servers on 127.0.0.1: direct, after SMTP/IMAP/POP3 STARTTLS, with a
root -> intermediate -> leaf chain, bad certificates, a server that requires a client certificate."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import socketserver
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session
from psycopg_pool import AsyncConnectionPool

from prober import checks
from prober.checks import certs as certs_module
from tests.prober import certs, targets
from tests.prober.exposition_check import PROMTOOL, families, promtool_check, samples, value
from tests.prober.test_probe_endpoint import listener
from upwatch import cli, config
from upwatch.config.endpoints import Endpoint

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> certs.Chain:
    return certs.make_chain(tmp_path_factory.mktemp("chain"))


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> certs.Certs:
    return certs.make(tmp_path_factory.mktemp("bad"))


def not_after(pem: Path) -> dt.datetime:
    """A certificate's notAfter as openssl reads it (not as the code under test does)."""
    out = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", str(pem)], check=True,
                         capture_output=True, text=True, timeout=30).stdout
    return dt.datetime.strptime(out.strip().removeprefix("notAfter="), "%b %d %H:%M:%S %Y GMT").replace(tzinfo=dt.UTC)


def server_context(pair: tuple[Path, Path], client_ca: Path | None = None) -> ssl.SSLContext:
    ctx = targets.server_context(str(pair[0]), str(pair[1]))
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(client_ca))
    return ctx


async def drain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read until the client goes (or the handshake fails), then close."""
    try:
        await reader.read()
    except (ssl.SSLError, ConnectionError):
        pass
    finally:
        writer.close()


@asynccontextmanager
async def server(handler: Handler, ctx: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """An asyncio server on 127.0.0.1 (TLS from the first byte when ctx is given); yields its port."""
    tasks: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        finally:
            writer.close()  # also when cancelled below, so no transport outlives the test's loop
            tasks.discard(task)

    srv = await asyncio.start_server(tracked, "127.0.0.1", 0, ssl=ctx)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await srv.wait_closed()


def endpoint(port: int, **fields: Any) -> Endpoint:
    return Endpoint.model_validate({"name": "t", "kind": "tls", "timeout": "2s", "host": "127.0.0.1",
                                    "port": port, **fields})


# ---- direct TLS ----

async def test_the_earliest_expiry_of_the_whole_chain_is_the_intermediates(chain: certs.Chain) -> None:
    async with server(drain, server_context(chain.leaf)) as port:
        result = await checks.run(endpoint(port, ca_file=str(chain.root), assertions=[
            "[CERTIFICATE_EXPIRATION] > 48h", "[CONNECTED] == true", "[IP] == 127.0.0.1"]), None)
    assert result.ok, result.error
    intermediate, leaf = not_after(chain.intermediate), not_after(chain.leaf[0])
    assert intermediate < leaf  # the certificates are made so: the leaf alone would tell the later date
    assert result.cert_not_after == intermediate
    assert [a.ok for a in result.assertions] == [True, True, True]
    details = dict(result.details or {})
    assert details["chain"] == [f"localhost, not after {leaf.isoformat()}",
                                f"upwatch test intermediate, not after {intermediate.isoformat()}"]
    assert details["chain_length"] == 2
    assert details["earliest_expiry_subject"] == "CN=upwatch test intermediate"
    assert details["hostname_verified"] is True and details["server_name"] == "127.0.0.1"
    assert details["tls_version"] == "TLS 1.3" and details["cipher"].startswith("TLS_")
    assert details["leaf_subject"] == "CN=localhost" and details["leaf_issuer"] == "CN=upwatch test intermediate"
    assert details["leaf_dns_names"] == ["localhost"]
    # the verified chain runs up to the root (365 days), so it too ends with the intermediate
    assert details["verified_chain_not_after"] == intermediate.isoformat()
    assert result.connect_ms is not None and result.tls_ms is not None and result.dns_ms is not None
    assert result.latency_ms is not None and result.latency_ms >= result.tls_ms


async def test_a_certificate_expiry_assertion_fails_on_the_intermediate(chain: certs.Chain) -> None:
    async with server(drain, server_context(chain.leaf)) as port:
        result = await checks.run(endpoint(port, ca_file=str(chain.root),
                                           assertions=["[CERTIFICATE_EXPIRATION] > 30d"]), None)
    assert not result.ok and result.error_kind == "assertion"
    assert result.error is not None and result.error.startswith("[CERTIFICATE_EXPIRATION] > 30d: ")


async def test_a_self_signed_certificate_is_rejected_when_verifying(bad: certs.Certs) -> None:
    async with server(drain, server_context(bad.self_signed)) as port:
        result = await checks.run(endpoint(port), None)
    assert not result.ok and result.error_kind == "tls"
    assert result.error == "certificate rejected: self-signed certificate"
    assert result.cert_not_after == not_after(bad.self_signed[0])  # what was presented is still reported
    assert (result.details or {})["chain_length"] == 1


async def test_a_self_signed_certificate_is_recorded_without_verifying(bad: certs.Certs) -> None:
    async with server(drain, server_context(bad.self_signed)) as port:
        result = await checks.run(endpoint(port, verify_tls=False), None)
    assert result.ok, result.error
    assert result.cert_not_after == not_after(bad.self_signed[0])
    details = dict(result.details or {})
    assert details["hostname_verified"] is False and "verified_chain_not_after" not in details
    assert details["earliest_expiry_subject"] == "CN=localhost"


@pytest.mark.parametrize(("name", "fields", "message"), [
    ("expired", {}, "certificate rejected: certificate has expired"),
    ("wrong_host", {}, "certificate rejected: IP address mismatch, certificate is not valid for '127.0.0.1'."),
    ("good", {"server_name": "other.test"},
     "certificate rejected: Hostname mismatch, certificate is not valid for 'other.test'."),
], ids=["expired", "ip-mismatch", "hostname-mismatch"])
async def test_certificates_that_do_not_verify_are_tls_errors(bad: certs.Certs, name: str, fields: dict[str, Any],
                                                              message: str) -> None:
    async with server(drain, server_context(getattr(bad, name))) as port:
        result = await checks.run(endpoint(port, ca_file=str(bad.ca), **fields), None)
    assert not result.ok and result.error_kind == "tls"
    assert result.error == message
    assert result.cert_not_after == not_after(getattr(bad, name)[0])


async def test_a_server_that_requires_a_client_certificate_accepts_ours(chain: certs.Chain) -> None:
    async with server(drain, server_context(chain.leaf, client_ca=chain.root)) as port:
        result = await checks.run(endpoint(port, ca_file=str(chain.root), client_cert=str(chain.client[0]),
                                           client_key=str(chain.client[1])), None)
    assert result.ok, result.error


def test_a_server_that_requires_a_client_certificate_refuses_us_without_one(chain: certs.Chain) -> None:
    # TLS 1.3: the server judges the client after the client's handshake is done; OpenSSL sends its alert
    with threaded(server_context(chain.leaf, client_ca=chain.root)) as port:
        result = asyncio.run(checks.run(endpoint(port, ca_file=str(chain.root)), None))
    assert not result.ok and result.error_kind == "tls"
    assert result.error == "TLS handshake failed: tlsv13 alert certificate required"
    assert result.cert_not_after == not_after(chain.intermediate)


def test_a_renewed_client_certificate_is_used_at_the_next_check(chain: certs.Chain, bad: certs.Certs,
                                                                  tmp_path: Path) -> None:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    shutil.copy(chain.client[0], cert)
    shutil.copy(chain.client[1], key)
    with threaded(server_context(chain.leaf, client_ca=chain.root)) as port:
        ep = endpoint(port, ca_file=str(chain.root), client_cert=str(cert), client_key=str(key))  # validated once
        first = asyncio.run(checks.run(ep, None))
        shutil.copy(bad.good[0], cert)  # a certificate of another CA, which this server does not trust
        shutil.copy(bad.good[1], key)
        later = os.stat(cert).st_mtime_ns + 10**9
        os.utime(cert, ns=(later, later))  # renewed within the file system's mtime resolution or not
        second = asyncio.run(checks.run(ep, None))
    assert first.ok, first.error
    assert not second.ok and second.error_kind == "tls"
    assert second.error == "TLS handshake failed: tlsv1 alert unknown ca"  # OpenSSL names it so for 1.3 too


async def test_a_server_that_drops_us_right_after_the_handshake_is_closed(chain: certs.Chain) -> None:
    # asyncio's TLS server closes without sending its alert when it refuses a client
    async with server(drain, server_context(chain.leaf, client_ca=chain.root)) as port:
        result = await checks.run(endpoint(port, ca_file=str(chain.root)), None)
    assert not result.ok and result.error_kind == "closed"
    assert result.error is not None and result.error.startswith(
        "server closed the connection right after the TLS handshake")
    assert result.tls_ms is not None and result.cert_not_after == not_after(chain.intermediate)


async def test_a_refused_connection_is_a_connect_error() -> None:
    port = targets.closed_port()
    result = await checks.run(endpoint(port), None)
    assert not result.ok and result.error_kind == "connect"
    assert result.error is not None and result.error.startswith(f"cannot connect to 127.0.0.1:{port}")


async def test_a_server_that_never_answers_the_handshake_times_out_in_it() -> None:
    async with server(drain) as port:  # plain TCP: reads the ClientHello and says nothing
        result = await checks.run(endpoint(port, timeout="0.3s"), None)
    assert not result.ok and result.error_kind == "timeout"
    assert result.error == "timeout after 0.3s in the TLS handshake"
    assert result.connect_ms is not None and result.tls_ms is None


# ---- STARTTLS ----

async def test_a_server_that_never_greets_times_out_in_the_starttls_dialogue() -> None:
    async with server(drain) as port:
        result = await checks.run(endpoint(port, starttls="smtp", timeout="0.3s"), None)
    assert not result.ok and result.error_kind == "timeout"
    assert result.error == "timeout after 0.3s in the smtp STARTTLS dialogue"


class Inbox:
    """An aiosmtpd handler that accepts everything (no mail is sent by the check)."""

    async def handle_DATA(self, server: object, session: Session, envelope: Envelope) -> str:
        return "250 OK"


@pytest.fixture
def smtp_port(chain: certs.Chain) -> Iterator[int]:
    port = targets.closed_port()
    controller = Controller(Inbox(), hostname="127.0.0.1", port=port, tls_context=server_context(chain.leaf))
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


async def test_smtp_starttls_then_the_handshake(chain: certs.Chain, smtp_port: int) -> None:
    result = await checks.run(endpoint(smtp_port, starttls="smtp", ca_file=str(chain.root)), None)
    assert result.ok, result.error
    assert result.cert_not_after == not_after(chain.intermediate)
    assert (result.details or {})["hostname_verified"] is True


async def test_an_smtp_server_without_starttls_is_a_protocol_error() -> None:
    port = targets.closed_port()
    controller = Controller(Inbox(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        result = await checks.run(endpoint(port, starttls="smtp"), None)
    finally:
        controller.stop()
    assert not result.ok and result.error_kind == "protocol"
    assert result.error == "the SMTP server does not offer STARTTLS"


def line_server(ctx: ssl.SSLContext, greeting: bytes, replies: dict[bytes, bytes], ok: bytes) -> Handler:
    """A minimal IMAP/POP3 server: greets, answers commands from `replies`, and after replying
    `ok` to one of them upgrades the connection to TLS."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        while line := await reader.readline():
            reply = replies.get(line.strip(), b"BAD\r\n")
            writer.write(reply)
            await writer.drain()
            if reply.startswith(ok):
                try:
                    await writer.start_tls(ctx)
                except (ssl.SSLError, ConnectionError):
                    break
                await drain(reader, writer)
                return
        writer.close()

    return handle


IMAP = (b"* OK IMAP4rev1 ready\r\n", {b"a001 STARTTLS": b"a001 OK Begin TLS negotiation now\r\n"}, b"a001 OK")
POP3 = (b"+OK POP3 ready\r\n", {b"STLS": b"+OK Begin TLS negotiation\r\n"}, b"+OK")


@pytest.mark.parametrize(("protocol", "dialogue"), [("imap", IMAP), ("pop3", POP3)], ids=["imap", "pop3"])
async def test_imap_and_pop3_starttls(chain: certs.Chain, protocol: str, dialogue: tuple[Any, ...]) -> None:
    async with server(line_server(server_context(chain.leaf), *dialogue)) as port:
        result = await checks.run(endpoint(port, starttls=protocol, ca_file=str(chain.root)), None)
    assert result.ok, result.error
    assert result.cert_not_after == not_after(chain.intermediate)


@pytest.mark.parametrize(("protocol", "dialogue", "message"), [
    ("imap", (IMAP[0], {b"a001 STARTTLS": b"a001 NO not now\r\n"}, b"a001 OK"), "STARTTLS answered 'a001 NO not now'"),
    ("pop3", (POP3[0], {b"STLS": b"-ERR not now\r\n"}, b"+OK"), "STLS answered '-ERR not now'"),
    ("pop3", (b"* OK IMAP4rev1 ready\r\n", {}, b"+OK"), "POP3 greeting '* OK IMAP4rev1 ready'"),
], ids=["imap-no", "pop3-err", "pop3-to-an-imap-server"])
async def test_a_refused_starttls_is_a_protocol_error(chain: certs.Chain, protocol: str,
                                                      dialogue: tuple[Any, ...], message: str) -> None:
    async with server(line_server(server_context(chain.leaf), *dialogue)) as port:
        result = await checks.run(endpoint(port, starttls=protocol), None)
    assert not result.ok and result.error_kind == "protocol"
    assert result.error == message
    assert result.tls_ms is None and result.connect_ms is not None


# ---- upwatch probe and check-config ----

class _TLSHandler(socketserver.BaseRequestHandler):
    context: ssl.SSLContext

    def handle(self) -> None:
        try:
            with self.context.wrap_socket(self.request, server_side=True) as conn:
                conn.settimeout(2)
                conn.recv(1)
        except (OSError, ssl.SSLError):
            pass


@contextmanager
def threaded(ctx: ssl.SSLContext) -> Iterator[int]:
    """A TLS server in a thread, on the ssl module's blocking sockets (OpenSSL's own alerts); yields its port."""
    handler = type("Handler", (_TLSHandler,), {"context": ctx})
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler) as srv:
        srv.daemon_threads = True
        thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield srv.server_address[1]
        finally:
            srv.shutdown()
            thread.join(5)


@pytest.fixture
def threaded_tls(chain: certs.Chain) -> Iterator[int]:
    """`upwatch probe` runs its own event loop: the server runs in a thread."""
    with threaded(server_context(chain.leaf)) as port:
        yield port


def config_yaml(port: int, extra: str = "") -> str:
    return (f"endpoints:\n  - name: mail\n    kind: tls\n    host: 127.0.0.1\n    port: {port}\n"
            f"    timeout: 2s\n{extra}")


def test_upwatch_probe_prints_the_chain(chain: certs.Chain, threaded_tls: int, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the working tree
    path = tmp_path / "upwatch.yaml"
    path.write_text(config_yaml(threaded_tls, f"    ca_file: {chain.root}\n    assertions:\n"
                                              "      - '[CERTIFICATE_EXPIRATION] > 48h'\n"))
    assert cli.main(["--config", str(path), "probe", "mail"]) == 0
    out = capsys.readouterr().out
    expiry = not_after(chain.intermediate)
    assert f"mail  tls 127.0.0.1:{threaded_tls}\n  result      OK\n" in out
    assert f"  certificate expires {expiry:%Y-%m-%d %H:%M} UTC" in out
    assert "  tls version TLS 1.3\n" in out
    assert "  hostname verified True\n" in out
    assert f"upwatch test intermediate, not after {expiry.isoformat()}" in out
    assert "  pass        [CERTIFICATE_EXPIRATION] > 48h" in out
    assert "  phases      dns " in out and " | tls " in out


def test_upwatch_probe_reports_a_rejected_certificate(threaded_tls: int, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "upwatch.yaml"
    path.write_text(config_yaml(threaded_tls))  # the system CAs do not know the test root
    assert cli.main(["--config", str(path), "probe", "mail"]) == 1
    assert "result      FAIL  tls: certificate rejected: unable to get local issuer certificate" \
        in capsys.readouterr().out


def test_check_config_reports_tls_option_errors_with_file_and_line(chain: certs.Chain, tmp_path: Path) -> None:
    missing = tmp_path / "missing.key"
    text = (config_yaml(465, f"    client_cert: {chain.client[0]}\n    client_key: {missing}\n")
            + "  - name: other\n    kind: tls\n    host: 127.0.0.1\n    port: 993\n    starttls: ftp\n"
            + f"  - name: mismatched\n    kind: tls\n    host: 127.0.0.1\n    port: 993\n"
              f"    client_cert: {chain.client[0]}\n    client_key: {chain.leaf[1]}\n"
            + "  - name: half\n    kind: tls\n    host: 127.0.0.1\n")
    with pytest.raises(config.ConfigError) as caught:
        config.parse(text, "upwatch.yaml", {})
    assert str(caught.value).splitlines() == [
        "upwatch.yaml:8: endpoints[0].client_key: file *** does not exist",  # a key's value is never quoted
        "upwatch.yaml:13: endpoints[1].starttls: Input should be 'smtp', 'imap' or 'pop3' (got 'ftp')",
        f"upwatch.yaml:14: endpoints[2]: client_cert '{chain.client[0]}': cannot be loaded with client_key "
        f"'{chain.leaf[1]}' (key values mismatch)",
        "upwatch.yaml:20: endpoints[3]: host and port are required for kind tls",
    ]


def test_check_config_accepts_a_client_certificate(chain: certs.Chain) -> None:
    text = config_yaml(465, f"    client_cert: {chain.client[0]}\n    client_key: {chain.client[1]}\n"
                            "    starttls: smtp\n    server_name: mail.example.test\n")
    (mail,) = config.parse(text, "upwatch.yaml", {}).endpoints
    assert mail.target == "127.0.0.1:465" and mail.options.summary == "127.0.0.1:465 starttls smtp"
    assert mail.options.revalidate



# ---- /probe: blackbox_exporter's TLS families ----

async def test_probe_endpoint_answers_blackbox_tls_families(chain: certs.Chain, pool: AsyncConnectionPool,
                                                            database_url: str, tmp_path: Path) -> None:
    modules = (f"  probe_allowed: [127.0.0.1]\n  modules:\n    tls_connect: {{kind: tls, ca_file: '{chain.root}'}}\n"
               "    tls_insecure: {kind: tls, verify_tls: false}\n")
    async with server(drain, server_context(chain.leaf)) as port, \
            listener(pool, database_url, tmp_path, modules) as get:
        status, text, _ = await get({"target": f"127.0.0.1:{port}", "module": "tls_connect"})
        _, insecure, _ = await get({"target": f"127.0.0.1:{port}", "module": "tls_insecure"})
        _, refused, _ = await get({"target": f"127.0.0.1:{targets.closed_port()}", "module": "tls_connect"})
        bad_target, message, _ = await get({"target": "127.0.0.1", "module": "tls_connect"})
    assert status == 200 and value(text, "probe_success") == 1
    intermediate = not_after(chain.intermediate)
    assert value(text, "probe_ssl_earliest_cert_expiry") == intermediate.timestamp()
    assert value(text, "probe_ssl_last_chain_expiry_timestamp_seconds") == intermediate.timestamp()
    assert value(text, "probe_tls_version_info", version="TLS 1.3") == 1
    (info,) = samples(text, "probe_ssl_last_chain_info")
    assert info.labels == {"fingerprint_sha256": fingerprint(chain.leaf[0]),
                           "issuer": "CN=upwatch test intermediate", "subject": "CN=localhost",
                           "subjectalternative": "localhost", "serialnumber": serial(chain.leaf[0])}
    assert all(f.type == "gauge" and f.documentation for f in families(text).values())
    # not verified: no verified chain, so no last-chain expiry (as blackbox_exporter with insecure_skip_verify)
    assert value(insecure, "probe_ssl_earliest_cert_expiry") == intermediate.timestamp()
    assert list(samples(insecure, "probe_ssl_last_chain_expiry_timestamp_seconds")) == []
    assert value(refused, "probe_success") == 0 and list(samples(refused, "probe_tls_version_info")) == []
    assert bad_target == 400 and "must be host:port for a tls module" in message
    if PROMTOOL is not None:
        checked = promtool_check(text)
        assert checked.returncode == 0, (checked.stdout, checked.stderr)


def openssl_x509(pem: Path, *options: str) -> str:
    """`openssl x509 -noout <options>` of the first certificate in pem: the value after '='."""
    out = subprocess.run(["openssl", "x509", "-noout", *options, "-in", str(pem)], check=True,
                         capture_output=True, text=True, timeout=30).stdout
    return out.strip().split("=", 1)[1]


def serial(pem: Path) -> str:
    return openssl_x509(pem, "-serial").lower()


def fingerprint(pem: Path) -> str:
    return openssl_x509(pem, "-fingerprint", "-sha256").replace(":", "").lower()


def test_names_are_written_as_go_and_blackbox_exporter_write_them() -> None:
    info = {"subject": ((("countryName", "DE"),), (("organizationName", "Example, Inc."),),
                        (("commonName", "api.example.test"),)),
            "issuer": ((("organizationName", "Test CA"),), (("commonName", "Test CA R1"),)),
            "notAfter": "Jan  5 12:00:00 2027 GMT", "serialNumber": "0A1B",
            "subjectAltName": (("DNS", "api.example.test"), ("IP Address", "10.0.0.1"), ("DNS", "www.example.test"))}
    found = certs_module.cert(info, b"der")
    assert found.subject == "CN=api.example.test,O=Example\\, Inc.,C=DE"  # most specific first, commas escaped
    assert found.issuer == "CN=Test CA R1,O=Test CA" and found.common_name == "api.example.test"
    assert found.serial == "0a1b" and found.dns_names == ("api.example.test", "www.example.test")
    assert found.not_after == dt.datetime(2027, 1, 5, 12, tzinfo=dt.UTC)
