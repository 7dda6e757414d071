"""GET /probe?target=...&module=...: blackbox_exporter's multi-target endpoint on the prober's listener.

A Prometheus job that relabels its targets into `__param_target` and points `__address__` at a
blackbox_exporter works pointed at upwatch: each scrape runs one check now, with the named module
(`prober.modules`), and answers with blackbox_exporter's families. Nothing is stored.

/probe makes requests on its caller's behalf, so who may call it (`prober.probe_callers`, loopback by
default) and what it may reach (`prober.probe_allowed`, nothing by default) are configured; a host
name is allowed only by name, never because of what it resolves to now (which may differ from
what it resolves to when the check connects).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import yarl
from aiohttp import web
from pydantic import ValidationError

from prober import checks
from prober.checks import dns
from prober.checks.http import new_session
from prober.exposition import CONTENT_TYPE, Exposition, add_probe
from upwatch import durations
from upwatch.config.endpoints import Endpoint
from upwatch.config.prober import UNSUPPORTED_KINDS, Module, Prober, parse_allowed, parse_network
from upwatch.masking import masking
from upwatch.records import ProbeResult
from upwatch.runtime import Runtime

logger = logging.getLogger(__name__)

SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
# Left of a scrape's timeout for the answer to travel back (blackbox_exporter's --timeout-offset default).
TIMEOUT_OFFSET_S = 0.5
DEFAULT_MODULE = "http_2xx"  # blackbox_exporter's, when the module parameter is left out
SESSION_LIMIT = 100
ENDPOINT_CACHE = 4096
_MASKS = masking()  # a refused target is logged: credentials and secret-looking parameters in it are not
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Refused(Exception):
    """A /probe request answered with an error instead of a probe: 400 (bad request) or 403 (not allowed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Access:
    """Who may call /probe and which hosts it may probe."""

    networks: list[IPNetwork] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    suffixes: tuple[str, ...] = ()
    everything: bool = False
    callers: list[IPNetwork] = field(default_factory=list)

    @classmethod
    def of(cls, settings: Prober) -> Access:
        access = cls(callers=[parse_network(c) for c in settings.probe_callers])
        suffixes = []
        for entry in map(parse_allowed, settings.probe_allowed):
            if isinstance(entry, str) and entry == "*":
                access.everything = True
            elif isinstance(entry, str) and entry.startswith("*."):
                suffixes.append(entry[1:])
            elif isinstance(entry, str):
                access.names.add(entry)
            else:
                access.networks.append(entry)
        access.suffixes = tuple(suffixes)
        return access

    def caller_allowed(self, remote: str | None) -> bool:
        address = _address(remote or "")
        return address is not None and _within(address, self.callers)

    def target_allowed(self, host: str) -> bool:
        if self.everything:
            return True
        address = _address(host)
        if address is not None:
            return _within(address, self.networks)
        name = host.lower().rstrip(".")
        return name in self.names or name.endswith(self.suffixes)


def _address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return mapped or address  # ::ffff:10.0.0.1 is 10.0.0.1, also for the allow-lists


def _within(address: IPAddress, networks: list[IPNetwork]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def target_fields(kind: str, target: str) -> tuple[dict[str, Any], str]:
    """The endpoint keys a target fills in for `kind`, and the host to check against probe_allowed."""
    if kind == "http":
        url = target if target.lower().startswith(("http://", "https://")) else f"http://{target}"
        try:  # parsed as aiohttp will parse it, so the host checked is the host connected to
            host = yarl.URL(url).raw_host
        except ValueError as e:
            raise Refused(400, f"Target {target!r} is not a URL: {e}") from None
        if not host:
            raise Refused(400, f"Target {target!r} is not a URL with a host")
        return {"url": url}, host
    if kind in ("tcp", "tls"):
        host, sep, port = target.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise Refused(400, f"Target {target!r} must be host:port for a {kind} module")
        return {"host": host, "port": int(port)}, host
    return {"host": target}, target  # dns: the name to resolve; icmp: the host to ping


def nameserver_fields(module: Module, target: str) -> tuple[dict[str, Any], str]:
    """A dns module with query_name: the target is the nameserver to ask (blackbox_exporter's dns prober)."""
    try:
        host = dns.parse_nameserver(target, module.settings.get("transport", "udp"))[0]
    except ValueError as e:
        raise Refused(400, f"Target {target!r}: {e}") from None
    return {"nameserver": target}, host


def timeout_s(module: Module, header: str | None) -> float | None:
    """The check's timeout: the scrape's (from Prometheus's header) less the offset, or the module's when
    that is shorter or the scrape sent none; None keeps the endpoint default."""
    own = durations.parse(module.settings["timeout"]).total_seconds() if module.explicit_timeout else None
    if header is None:
        return None
    try:
        scrape = float(header)
    except ValueError:
        raise Refused(400, f"{SCRAPE_TIMEOUT_HEADER}: {header!r} is not a number of seconds") from None
    limit = scrape - TIMEOUT_OFFSET_S
    if limit <= 0:
        return None
    return limit if own is None else min(own, limit)


def endpoint_for(module: Module, target: str, timeout: float | None) -> tuple[Endpoint, str]:
    """The endpoint a probe of `target` with `module` runs, and the target's host."""
    fields, host = nameserver_fields(module, target) if module.target_is_nameserver \
        else target_fields(module.kind, target)
    data: dict[str, Any] = {"name": "probe", "kind": module.kind, **module.endpoint_settings, **fields}
    if timeout is not None:
        data["timeout"] = timeout
    try:
        return Endpoint.model_validate(data), host
    except ValidationError as e:
        error = e.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        raise Refused(400, f"Target {target!r}: {where + ': ' if where else ''}{message}") from None


class ProbeHandler:
    """The /probe route: parameters, access, one check through the registry, blackbox's families."""

    def __init__(self, settings: Prober, session: Callable[[], aiohttp.ClientSession]) -> None:
        self.modules = settings.probe_modules()
        self.access = Access.of(settings)
        self.session = session
        # Prometheus asks for the same targets every scrape: one Endpoint each, validated once, and
        # the same object every time, so the check's per-endpoint caches see one endpoint, not a new one each scrape.
        self.endpoint = functools.lru_cache(maxsize=ENDPOINT_CACHE)(self._endpoint)

    def _endpoint(self, name: str, target: str, timeout: float | None) -> tuple[Endpoint, str]:
        return endpoint_for(self.modules[name], target, timeout)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            return await self._probe(request)
        except Refused as e:
            logger.info("probe refused status=%d reason=%r", e.status, _MASKS.text(e.message))
            return web.json_response({"error": e.message}, status=e.status)

    async def _probe(self, request: web.Request) -> web.Response:
        if not self.access.caller_allowed(request.remote):
            raise Refused(403, f"caller {request.remote} is not in prober.probe_callers")
        query = request.query
        for unsupported in ("hostname", "debug"):
            if query.get(unsupported):
                raise Refused(400, f"the {unsupported} parameter is not supported by upwatch's /probe")
        name = query.get("module") or DEFAULT_MODULE
        module = self.modules.get(name)
        if module is None:
            raise Refused(400, f"Unknown module {json.dumps(name)}")
        target = query.get("target", "")
        if not target:
            raise Refused(400, "Target parameter is missing")
        if module.kind in UNSUPPORTED_KINDS:
            raise Refused(400, f"module {name!r}: upwatch has no {module.kind} check (use tcp_connect or http_2xx)")
        if not checks.probed(module.kind):  # push: results arrive, nothing is sent
            raise Refused(400, f"module {name!r}: kind {module.kind} is not probed")
        endpoint, host = self.endpoint(name, target, timeout_s(module, request.headers.get(SCRAPE_TIMEOUT_HEADER)))
        if not self.access.target_allowed(host):
            raise Refused(403, f"target host {host!r} is not in prober.probe_allowed")
        started = time.perf_counter()
        result = await run_check(endpoint, self.session())
        out = Exposition()
        add_probe(out, endpoint.kind, result, duration_s=time.perf_counter() - started,
                  timeout_s=endpoint.timeout.total_seconds(), assertions=endpoint.assertions)
        return web.Response(text=out.render(), headers={"Content-Type": CONTENT_TYPE})


async def run_check(endpoint: Endpoint, session: aiohttp.ClientSession) -> ProbeResult:
    """One check through the registry's entry point (never raises for network errors)."""
    return await checks.run(endpoint, session)


SESSION = web.AppKey("probe_session", aiohttp.ClientSession)


def setup(app: web.Application, runtime: Runtime, writer: object) -> None:
    """Add GET /probe to the prober's listener (an Extension for prober.app), with its own HTTP session."""

    async def session_context(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = new_session(SESSION_LIMIT)
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_context)
    app.router.add_get("/probe", ProbeHandler(runtime.config.prober, lambda: app[SESSION]).handle)

