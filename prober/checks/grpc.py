"""gRPC check: the standard health-checking protocol (`grpc.health.v1.Health/Check`) over a fresh
HTTP/2 connection per probe, plaintext or TLS, with grpclib (asyncio-native, no threads).

Contract: `run` returns a ProbeResult and never raises for network, TLS or RPC errors.
grpclib is imported where a check runs, not when this module is: upwatch.config imports it for `Options`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import socket
import ssl
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from prober.checks.assertions import Observed, evaluate
from prober.checks.base import CaFile, CheckOptions
from prober.checks.timing import Timings, cert_not_after, ssl_context
from upwatch.records import Measured, ProbeResult, Target

if TYPE_CHECKING:
    import aiohttp
    from grpclib.client import Channel
    from grpclib.exceptions import GRPCError

HEALTH_CHECK = "grpc.health.v1.Health/Check"
ServingStatus = Literal["SERVING", "NOT_SERVING", "UNKNOWN", "SERVICE_UNKNOWN"]


class Options(CheckOptions):
    host: str = ""
    port: int | None = Field(default=None, ge=1, le=65535)
    service: str = ""  # the service name asked about; "" is the server as a whole
    tls: bool = False
    verify_tls: bool = True
    ca_file: CaFile = None
    server_name: str | None = None  # TLS name to verify (and send as SNI) when it is not `host`
    expect_status: frozenset[ServingStatus] = frozenset({"SERVING"})

    @classmethod
    def problem(cls, data: Mapping[str, Any]) -> str | None:
        if not data.get("host") or not data.get("port"):
            return "host and port are required for kind grpc"
        return None

    @field_validator("expect_status", mode="before")
    @classmethod
    def _statuses(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @property
    def target(self) -> str:
        return f"{'grpcs' if self.tls else 'grpc'}://{self.host}:{self.port}" + (f"/{self.service}" if self.service
                                                                                 else "")

    @property
    def connects_to(self) -> str:
        return self.host

    @property
    def revalidate(self) -> bool:
        return self.ca_file is not None


async def run(target: Target[Options], session: aiohttp.ClientSession | None = None) -> ProbeResult:
    """Ask one server for the serving status of a service (the shared HTTP session is not used)."""
    from grpclib.client import Channel
    from grpclib.config import Configuration
    from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

    opts, started_at = target.options, dt.datetime.now(dt.UTC)
    try:  # before the clock starts: loading the CA store is not the server's connect time
        tls = ssl_context(opts.verify_tls, opts.ca_file, alpn=("h2",)) if opts.tls else None
    except (ssl.SSLError, OSError) as e:
        return ProbeResult.failed(started_at, "tls", f"cannot load CA file {str(opts.ca_file)!r}: {e}")
    timings, timeout_s = Timings(start=time.perf_counter(), tls=opts.tls), target.timeout.total_seconds()
    config = Configuration(ssl_target_name_override=opts.server_name) if opts.server_name else None
    channel = Channel(opts.host, opts.port, ssl=tls, config=config)
    token = timings.activate()
    try:
        async with asyncio.timeout(timeout_s):
            status = await _check(channel, opts.service, timings, timeout_s)
    except TimeoutError:
        stage = "waiting for the health check reply" if timings.sent else "connecting"
        return _failed(started_at, timings, "timeout", f"timeout after {timeout_s:g}s {stage}")
    except GRPCError as e:
        return _failed(started_at, timings, *_rpc_error(e, opts, timeout_s), code=e.status.name)
    except StreamTerminatedError as e:
        hint = "" if opts.tls else " (a TLS server? set tls: true)"
        return _failed(started_at, timings, "closed", f"connection closed before the reply: {e}{hint}")
    except ProtocolError as e:
        return _failed(started_at, timings, "protocol", f"HTTP/2 protocol error: {str(e)[:200]}")
    except OSError as e:
        return _failed(started_at, timings, *_connect_error(e, opts))
    finally:
        timings.deactivate(token)
        channel.close()
    return _judged(target, started_at, timings, status)


async def _check(channel: Channel, service: str, timings: Timings, timeout_s: float) -> str:
    """The serving status name the server answers; raises what grpclib raises."""
    from grpclib.health.v1.health_grpc import HealthStub
    from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

    await channel.__connect__()  # apart from the call, so that connect (and TLS) time is its own
    timings.sent = time.perf_counter()
    remaining = max(0.001, timeout_s - (timings.sent - timings.start))
    reply = await HealthStub(channel).Check(HealthCheckRequest(service=service), timeout=remaining)
    timings.first_byte = timings.end = time.perf_counter()
    return str(HealthCheckResponse.ServingStatus.Name(reply.status))


def _judged(target: Target[Options], started_at: dt.datetime, timings: Timings, status: str) -> ProbeResult:
    body = json.dumps({"status": status}).encode()  # [BODY].status, as Gatus exposes a health reply
    measured = _measured(timings, status)
    not_after = measured.get("cert_not_after")
    observed = Observed(now=started_at, latency_ms=measured.get("latency_ms"), body=body, connected=True,
                        cert_not_after=not_after)
    results = evaluate(target.assertions, observed)
    if status not in target.options.expect_status:
        about = f"service {target.options.service!r}" if target.options.service else "server"
        return ProbeResult.failed(started_at, "grpc_status", f"{about} not serving (status {status})", results,
                                  **measured)
    return ProbeResult.done(started_at, results, **measured)


def _measured(timings: Timings, status: str | None = None, code: str | None = None) -> Measured:
    """Connect (including name resolution) up to the TLS handshake, TLS, the call itself, the total."""
    now = timings.end or time.perf_counter()
    connected = timings.sent or now
    tls_started = timings.tls_started or connected
    measured: Measured = {"latency_ms": _ms(now - timings.start)}
    if timings.sent or timings.tls_started:
        measured["connect_ms"] = _ms(tls_started - timings.start)
    if timings.tls and timings.sent:
        measured["tls_ms"] = _ms(connected - tls_started)
        measured["cert_not_after"] = cert_not_after(timings.ssl_object)
    if timings.first_byte:
        measured["ttfb_ms"] = _ms(timings.first_byte - timings.sent)
    details = {"serving_status": status} if status else {"grpc_code": code} if code else None
    measured["details"] = details
    return measured


def _rpc_error(error: GRPCError, opts: Options, timeout_s: float) -> tuple[str, str]:
    """A gRPC status other than OK -> (error_kind, short message)."""
    from grpclib.const import Status

    detail = f": {error.message}" if error.message else ""
    if error.status is Status.NOT_FOUND:
        return "grpc_status", f"unknown service {opts.service!r} (NOT_FOUND{detail})"
    if error.status is Status.UNIMPLEMENTED:
        return "grpc_status", f"the server does not implement {HEALTH_CHECK} (UNIMPLEMENTED)"
    if error.status is Status.UNAVAILABLE:
        return "connect", f"{opts.host}:{opts.port} unavailable{detail}"
    if error.status is Status.DEADLINE_EXCEEDED:
        return "timeout", f"timeout after {timeout_s:g}s waiting for the health check reply (DEADLINE_EXCEEDED)"
    return "grpc_status", f"{HEALTH_CHECK} failed with {error.status.name}{detail}"


def _connect_error(error: OSError, opts: Options) -> tuple[str, str]:
    if isinstance(error, socket.gaierror):
        return "dns", f"cannot resolve {opts.host}: {error.strerror}"
    if isinstance(error, ssl.SSLCertVerificationError):
        return "tls", f"certificate rejected: {error.verify_message or error.reason}"
    if isinstance(error, ssl.SSLError):
        return "tls", f"TLS handshake failed: {error.reason or error}"
    reason = os.strerror(error.errno) if error.errno else str(error)  # not asyncio's "Connect call failed (...)"
    return "connect", f"cannot connect to {opts.host}:{opts.port}: {reason}"


def _failed(started_at: dt.datetime, timings: Timings, kind: str, message: str,
            code: str | None = None) -> ProbeResult:
    return ProbeResult.failed(started_at, kind, message, **_measured(timings, code=code))


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
