"""TLS check: a handshake with host:port, directly or after STARTTLS (smtp, imap, pop3), timing TCP
connect and handshake; reports version, cipher, hostname verification and the whole presented chain
with its earliest expiry. Never raises for network or TLS errors."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import os
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from prober.checks import certs
from prober.checks.assertions import Observed, evaluate
from prober.checks.base import CheckOptions
from prober.checks.starttls import DIALOGUES, Refused
from upwatch.records import Measured, ProbeResult, Target

if TYPE_CHECKING:
    import aiohttp

# TLS 1.3 servers judge the client's certificate after the client has finished its handshake, so a
# refusal (alert "certificate required") arrives after it: wait this many handshake times (at least
# the floor) for the server's first bytes or its alert before calling the handshake good.
VERDICT_HANDSHAKES = 2.0
VERDICT_FLOOR_S = 0.05
CLOSE_WAIT_S = 0.5


class Options(CheckOptions):
    host: str = ""
    port: int | None = Field(default=None, ge=1, le=65535)
    starttls: Literal["smtp", "imap", "pop3"] | None = None
    server_name: str | None = None  # SNI and the name verified; the host by default
    verify_tls: bool = True
    ca_file: Path | None = None  # trusted in addition to the system's CAs
    client_cert: Path | None = None  # PEM; may hold the key too
    client_key: Path | None = None

    @classmethod
    def problem(cls, data: Mapping[str, Any]) -> str | None:
        if not data.get("host") or not data.get("port"):
            return "host and port are required for kind tls"
        if data.get("client_key") and not data.get("client_cert"):
            return "client_key needs client_cert"
        return None

    @field_validator("ca_file", "client_cert", "client_key")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {str(value)!r} does not exist")
        return value

    @model_validator(mode="after")
    def _loadable(self) -> Options:
        # Loaded into a context of its own (no system CAs: cheap), so a bad file is a config error, not a probe error.
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            if self.ca_file is not None:
                probe.load_verify_locations(cafile=str(self.ca_file))
        except (ssl.SSLError, OSError) as e:
            raise ValueError(f"ca_file {str(self.ca_file)!r}: no certificates could be read ({_reason(e)})") from None
        try:
            if self.client_cert is not None:
                probe.load_cert_chain(str(self.client_cert), str(self.client_key) if self.client_key else None)
        except (ssl.SSLError, OSError) as e:
            raise ValueError(f"client_cert {str(self.client_cert)!r}: cannot be loaded with "
                             f"{'client_key ' + repr(str(self.client_key)) if self.client_key else 'its own key'}"
                             f" ({_reason(e)})") from None
        return self

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def summary(self) -> str:
        return f"{self.target} starttls {self.starttls}" if self.starttls else self.target

    @property
    def connects_to(self) -> str:
        return self.host

    @property
    def revalidate(self) -> bool:
        return any(f is not None for f in (self.ca_file, self.client_cert, self.client_key))


@dataclass
class _Probe:
    """One run's marks, so any stage's failure reports what was measured before it."""

    started_at: dt.datetime
    start: float
    stage: str = "resolving"
    dns_ms: float | None = None
    connect_ms: float | None = None
    tls_ms: float | None = None
    end: float | None = None  # when the handshake finished: the wait for the server's verdict is not latency
    ip: str | None = None  # the address connected to (or tried), once the name resolved: probe_ip_* read it
    ssl_objects: list[ssl.SSLObject] = field(default_factory=list)

    def measured(self, chain: certs.Chain | None, **details: Any) -> Measured:
        out: Measured = {"dns_ms": self.dns_ms, "connect_ms": self.connect_ms, "tls_ms": self.tls_ms,
                         "latency_ms": _ms((self.end or time.perf_counter()) - self.start)}
        if chain is not None:
            out["cert_not_after"] = chain.earliest.not_after
            details.update(chain.details())
        if self.ip is not None:
            details["ip"] = self.ip
        if details:
            out["details"] = details
        return out

    def failed(self, kind: str, message: str) -> ProbeResult:
        chain = certs.read(self.ssl_objects[-1], verified=False) if self.ssl_objects else None
        return ProbeResult.failed(self.started_at, kind, message, **self.measured(chain))


# The SSL objects made during the current check: asyncio makes one in start_tls and keeps it to itself,
# yet a failed verification's chain (an expired certificate's expiry) is still worth reporting.
_OBJECTS: contextvars.ContextVar[list[ssl.SSLObject] | None] = contextvars.ContextVar("upwatch_tls_objects",
                                                                                      default=None)


class _RecordingContext(ssl.SSLContext):
    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        obj = super().wrap_bio(*args, **kwargs)
        found = _OBJECTS.get()
        if found is not None:
            found.append(obj)
        return obj


async def run(target: Target[Options], session: aiohttp.ClientSession | None = None) -> ProbeResult:
    """Probe one TLS endpoint (the shared HTTP session is not used)."""
    probe = _Probe(dt.datetime.now(dt.UTC), time.perf_counter())
    timeout_s = target.timeout.total_seconds()
    token = _OBJECTS.set(probe.ssl_objects)
    try:
        async with asyncio.timeout(timeout_s):
            return await _handshake(target, probe, time.monotonic() + timeout_s)
    except TimeoutError:
        return probe.failed("timeout", f"timeout after {timeout_s:g}s {probe.stage}")
    finally:
        _OBJECTS.reset(token)


async def _handshake(target: Target[Options], probe: _Probe, deadline: float) -> ProbeResult:
    opts = target.options
    host, port = opts.host, opts.port or 0
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        probe.dns_ms, probe.stage = _ms(time.perf_counter() - probe.start), "connecting"
        probe.ip = str(infos[0][4][0])
        marked = time.perf_counter()
        reader, writer = await asyncio.open_connection(*infos[0][4][:2])
    except socket.gaierror as e:
        return probe.failed("dns", f"cannot resolve {host}: {e.strerror}")
    except OSError as e:
        return probe.failed("connect", f"cannot connect to {host}:{port}: {e.strerror or e}")
    probe.connect_ms = _ms(time.perf_counter() - marked)
    try:
        return await _secure(target, probe, reader, writer, deadline)
    finally:
        writer.close()
        # A TLS transport closes asynchronously (close_notify): wait a little, so that it is closed
        # rather than left to the garbage collector; a peer that never answers is not waited for.
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), CLOSE_WAIT_S)


async def _secure(target: Target[Options], probe: _Probe, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter, deadline: float) -> ProbeResult:
    opts = target.options
    try:
        context = _context(opts)
    except (ssl.SSLError, OSError) as e:  # a file changed since the config was loaded
        return probe.failed("tls", f"cannot load the TLS files: {_reason(e)}")
    try:
        if opts.starttls is not None:
            probe.stage = f"in the {opts.starttls} STARTTLS dialogue"
            await DIALOGUES[opts.starttls](reader, writer)
        probe.stage = "in the TLS handshake"
        marked = time.perf_counter()
        await writer.start_tls(context, server_hostname=opts.server_name or opts.host)
        probe.end = time.perf_counter()
        handshake_s = probe.end - marked
        probe.tls_ms = _ms(handshake_s)
        ssl_object: ssl.SSLObject = writer.get_extra_info("ssl_object")
        if ssl_object.version() == "TLSv1.3":
            probe.stage = "waiting for the server's verdict on the handshake"
            if not await _verdict(reader, max(VERDICT_FLOOR_S, VERDICT_HANDSHAKES * handshake_s), deadline):
                return probe.failed("closed", "server closed the connection right after the TLS handshake "
                                              "(as a TLS 1.3 server does that refuses the client certificate)")
    except Refused as e:
        return probe.failed("protocol", str(e))
    except ssl.SSLCertVerificationError as e:
        return probe.failed("tls", f"certificate rejected: {e.verify_message or _reason(e)}")
    except ssl.SSLError as e:
        return probe.failed("tls", f"TLS handshake failed: {_reason(e)}")
    except (ConnectionError, asyncio.IncompleteReadError) as e:
        return probe.failed("closed", f"server closed the connection {probe.stage}: {_reason(e)}")
    except OSError as e:
        return probe.failed("tls", f"cannot set up TLS: {_reason(e)}")
    return _done(target, probe, ssl_object, writer)


async def _verdict(reader: asyncio.StreamReader, wait_s: float, deadline: float) -> bool:
    """Whether the server kept the connection for wait_s or sent data in it; raises its alert if one came.
    Ends a little before the check's deadline, so that waiting never turns a good handshake into a timeout."""
    wait_s = max(0.0, min(wait_s, deadline - time.monotonic() - 0.02))
    try:
        return await asyncio.wait_for(reader.read(1), timeout=wait_s) != b""
    except TimeoutError:
        return True


def _done(target: Target[Options], probe: _Probe, ssl_object: ssl.SSLObject,
          writer: asyncio.StreamWriter) -> ProbeResult:
    opts = target.options
    chain = certs.read(ssl_object, verified=opts.verify_tls)
    cipher = ssl_object.cipher()
    measured = probe.measured(chain, tls_version=certs.tls_version(ssl_object) or "",
                              cipher=cipher[0] if cipher else "", hostname_verified=opts.verify_tls,
                              server_name=opts.server_name or opts.host)
    peer = writer.get_extra_info("peername")
    observed = Observed(now=probe.started_at, latency_ms=measured["latency_ms"], connected=True,
                        cert_not_after=measured.get("cert_not_after"), ip=str(peer[0]) if peer else None)
    return ProbeResult.done(probe.started_at, evaluate(target.assertions, observed), **measured)


# Contexts by what they load (files by path, size and mtime, so a renewed certificate is picked up):
# loading the system CAs costs milliseconds and memory, once per distinct setting rather than per endpoint.
_CONTEXTS: dict[tuple[object, ...], ssl.SSLContext] = {}


def _context(opts: Options) -> ssl.SSLContext:
    key = (opts.verify_tls, *(_stamp(p) for p in (opts.ca_file, opts.client_cert, opts.client_key)))
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        ctx = _RecordingContext(ssl.PROTOCOL_TLS_CLIENT)
        if opts.verify_tls:
            ctx.load_default_certs()
            if opts.ca_file is not None:
                ctx.load_verify_locations(cafile=str(opts.ca_file))
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if opts.client_cert is not None:
            ctx.load_cert_chain(str(opts.client_cert), str(opts.client_key) if opts.client_key else None)
        if len(_CONTEXTS) >= 256:  # settings replaced by reloads or renewed files: start over rather than grow
            _CONTEXTS.clear()
        _CONTEXTS[key] = ctx
    return ctx


def _stamp(path: Path | None) -> tuple[str, int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return (str(path), -1, -1)  # loading it then fails with the reason
    return (str(path), st.st_size, st.st_mtime_ns)


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError) and error.reason:
        return error.reason.replace("_", " ").lower() if error.reason.isupper() else error.reason
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
