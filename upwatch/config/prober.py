"""`prober:` how this prober instance runs."""

from __future__ import annotations

import difflib
import ipaddress
import re
import socket
import typing
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from prober.checks import rdap
from upwatch.config.base import Section
from upwatch.config.endpoints import Endpoint
from upwatch.durations import PositiveDuration
from upwatch.durations import format as format_duration

_SHARD = re.compile(r"^(\d+)/(\d+)$")


# What a /probe target fills in (blackbox_exporter's `target=`), and keys that mean nothing for a one-off probe.
_FROM_TARGET = {"name", "url", "host", "port"}
_NOT_FOR_MODULES = {"interval", "period", "grace", "tags", "depends_on", "enabled"}
# Stand-ins for the target while a module's settings are checked at load time.
_PLACEHOLDER: dict[str, dict[str, Any]] = {"http": {"url": "http://module.invalid/"},
                                           "tcp": {"host": "module.invalid", "port": 1},
                                           "dns": {"host": "module.invalid"},
                                           "icmp": {"host": "module.invalid"},
                                           "tls": {"host": "module.invalid", "port": 1}}
# blackbox_exporter's dns prober settings, as the dns check names them. With query_name the /probe
# target is the nameserver to ask (as in blackbox_exporter); without it, the name to query.
DNS_SETTINGS = {"query_name": "host", "query_type": "record_type"}
# blackbox_exporter prober names upwatch has no check for: such a module loads, and /probe answers 400.
UNSUPPORTED_KINDS: tuple[str, ...] = ()


class Module(Section):
    """A /probe module: a check kind plus endpoint keys (method, headers, expected_status, timeout,
    assertions ...) applied to every target probed with it; written flat, like an endpoint."""

    kind: Literal["http", "tcp", "dns", "icmp", "tls"]
    settings: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _flat(cls, data: Any, handler: ModelWrapValidatorHandler[Module]) -> Module:
        if not isinstance(data, dict) or "settings" in data:
            return handler(data)
        settings = {k: v for k, v in data.items() if k != "kind"}
        module = handler({**({"kind": data["kind"]} if "kind" in data else {}), "settings": settings})
        problems = _settings_problems(module.kind, settings)
        if problems:
            raise ValidationError.from_exception_data("Module", problems)
        return module

    @property
    def endpoint_settings(self) -> dict[str, Any]:
        """The settings as endpoint keys (a dns module's query_name and query_type as host and record_type)."""
        if self.kind != "dns":
            return self.settings
        return {DNS_SETTINGS.get(k, k): v for k, v in self.settings.items()}

    @property
    def target_is_nameserver(self) -> bool:
        """A dns module with query_name: the target is the nameserver, as in blackbox_exporter."""
        return self.kind == "dns" and "query_name" in self.settings

    @property
    def explicit_timeout(self) -> bool:
        """Whether the module sets its own timeout (else a scrape's timeout decides, as in blackbox_exporter)."""
        return "timeout" in self.settings


def _settings_problems(kind: str, settings: dict[str, Any]) -> list[InitErrorDetails]:
    """Errors in a module's keys, located at each key: validated as an endpoint of `kind` would be."""
    problems = [_problem((key,), f"{key} comes from the /probe target, not the module")
                for key in settings if key in _FROM_TARGET]
    problems += [_problem((key,), f"{key} does not apply to /probe modules") for key in settings
                 if key in _NOT_FOR_MODULES]
    if kind in UNSUPPORTED_KINDS:
        return problems + [_problem((key,), f"upwatch has no {kind} check: an {kind} module takes no settings")
                           for key in settings]
    usable = {DNS_SETTINGS.get(k, k) if kind == "dns" else k: v for k, v in settings.items()
              if k not in _FROM_TARGET | _NOT_FOR_MODULES}
    try:
        Endpoint.model_validate({"name": "module", "kind": kind, **_PLACEHOLDER[kind], **usable})
    except ValidationError as e:
        known = [f.alias or n for n, f in Endpoint.model_fields.items() if n not in _FROM_TARGET | _NOT_FOR_MODULES]
        for err in e.errors():
            if err["type"] == "extra_forbidden":
                key = str(err["loc"][-1])
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                problems.append(_problem(err["loc"], f"unknown key {key!r}"
                                         + (f" (did you mean {close[0]!r}?)" if close else "")))
            else:
                problems.append(typing.cast(InitErrorDetails, err))
    return problems


def _problem(loc: tuple[int | str, ...], message: str) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError("value_error", "Value error, {error}", {"error": message}),
                            loc=loc, input=None)


DEFAULT_MODULES: dict[str, Module] = {
    # blackbox_exporter's http_2xx: any 2xx once redirects are followed.
    "http_2xx": Module(kind="http", settings={"expected_status": "200-299"}),
    "tcp_connect": Module(kind="tcp"),
    "icmp": Module(kind="icmp"),
    "dns": Module(kind="dns"),
}
# Loopback: where Prometheus usually runs next to the prober.
DEFAULT_CALLERS = ("127.0.0.0/8", "::1/128")
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOST = re.compile(rf"^(\*\.)?({_LABEL}\.)*{_LABEL}\.?$")


def parse_allowed(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | str:
    """A probe_allowed entry: a network (`10.0.0.0/8`, `192.0.2.7`, `::1`), a host name, `*.domain` or `*`."""
    text = entry.strip()
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    if text == "*" or _HOST.match(text):
        return text.lower().rstrip(".")
    raise ValueError(f"{entry!r} is not a network (10.0.0.0/8), an address, a host name, *.domain or *")


def parse_network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A probe_callers entry: a network or a single address."""
    try:
        return ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{entry!r} is not a network or address (e.g. 10.0.0.0/8, ::1)") from None


def _checked(parse: typing.Callable[[str], object]) -> typing.Callable[[str], str]:
    def check(entry: str) -> str:
        parse(entry)
        return entry

    return check


# Kept as written (shown back in errors and docs); parsed again where they are used.
AllowedTarget = Annotated[str, AfterValidator(_checked(parse_allowed))]
Network = Annotated[str, AfterValidator(_checked(parse_network))]


class Rdap(Section):
    """prober.rdap: where [DOMAIN_EXPIRATION] is looked up (prober.checks.rdap)."""

    # The base URL of an RDAP service (RFC 9082); the default redirects to each registry's server.
    server: str = rdap.DEFAULT_SERVER
    timeout: PositiveDuration = Field(default=f"{rdap.DEFAULT_TIMEOUT_S:g}s", validate_default=True)
    cache_ttl: PositiveDuration = Field(default=f"{rdap.DEFAULT_CACHE_TTL_S / 3600:g}h", validate_default=True)

    @field_validator("server")
    @classmethod
    def _server(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
                or parts.username or parts.password:
            raise ValueError(f"{value!r} must be an http:// or https:// base URL such as {rdap.DEFAULT_SERVER} "
                             "(no query, fragment or credentials)")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: timedelta) -> timedelta:
        if value > timedelta(seconds=60):
            raise ValueError("must be at most 60s (a lookup delays the probe that waits for it)")
        return value

    @field_validator("cache_ttl")
    @classmethod
    def _cache_ttl(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise ValueError("must be at least 1m (RDAP servers limit how often they are asked)")
        return value

    def settings(self) -> rdap.Settings:
        """As prober.checks.rdap takes them."""
        return rdap.Settings(server=self.server, timeout_s=self.timeout.total_seconds(),
                             cache_ttl_s=self.cache_ttl.total_seconds())


class Prober(Section):
    location: str = Field(default_factory=socket.gethostname, min_length=1)
    instance: str = Field(default_factory=socket.gethostname, min_length=1)
    max_concurrency: int = Field(default=512, ge=1)
    per_host_concurrency: int = Field(default=32, ge=1)
    # HTTP checks keep idle connections for the next run instead of opening one per probe: less CPU
    # per check for very large fleets, at the price of dns/connect/tls phases of 0 on most probes.
    reuse_connections: bool = False
    data_dir: Path = Path(".upwatch")
    spool_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    batch_rows: int = Field(default=500, ge=1)
    queue_size: int = Field(default=50_000, ge=100)
    flush_interval: PositiveDuration = Field(default="1s", validate_default=True)
    # /healthz reports the writer stuck when no batch finished for this long while rows wait
    # (default: 10 × flush_interval, at least 30s).
    writer_stuck_after: PositiveDuration | None = None
    # The part of queue_size pushed rows may fill; the rest is kept for the prober's own results.
    push_queue_share: float = Field(default=0.5, gt=0, le=1)
    # `i/n`: run only the endpoints whose name hashes to shard i of n (also `upwatch prober --shard i/n`);
    # `auto`: share the location's endpoints with its other probers through leases in the database,
    # taking over a stopped or hung prober's share (prober/leases.py, docs/production.md).
    shard: str | None = None
    # shard: auto: the number of slots the endpoints are split into (the same on every prober of a
    # location) and how long a prober holds a slot without renewing it (renewed every quarter of it).
    lease_slots: int = Field(default=64, ge=1, le=4096)
    lease_ttl: PositiveDuration = Field(default="10s", validate_default=True)
    config_poll_interval: PositiveDuration = Field(default="2s", validate_default=True)
    heartbeat_check_interval: PositiveDuration = Field(default="5s", validate_default=True)
    # GET /probe (blackbox_exporter's multi-target endpoint): modules added to DEFAULT_MODULES (a
    # module of the same name replaces the default), the targets it may probe (none by default: it
    # makes requests on a caller's behalf) and the addresses allowed to call it (loopback by default).
    modules: dict[str, Module] = Field(default_factory=dict)
    probe_allowed: list[AllowedTarget] = Field(default_factory=list)
    probe_callers: list[Network] = Field(default_factory=lambda: list(DEFAULT_CALLERS))
    rdap: Rdap = Field(default_factory=Rdap)

    @field_validator("writer_stuck_after")
    @classmethod
    def _stuck_after(cls, value: timedelta | None, info: ValidationInfo) -> timedelta | None:
        # A shorter wait than a flush would call an idle-between-flushes writer stuck.
        flush = info.data.get("flush_interval")
        if value is not None and flush is not None and value <= flush:
            raise ValueError(f"must be longer than flush_interval ({format_duration(flush)})")
        return value

    def writer_stuck_after_s(self) -> float | None:
        """writer_stuck_after in seconds, None for the writer's default."""
        return None if self.writer_stuck_after is None else self.writer_stuck_after.total_seconds()

    def probe_modules(self) -> dict[str, Module]:
        """The defaults with the configured modules over them."""
        return {**DEFAULT_MODULES, **self.modules}

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        m = _SHARD.match(value or "")
        if value is not None and value != "auto" and not (m and 1 <= int(m.group(1)) <= int(m.group(2))):
            raise ValueError(f"{value!r} must be i/n with 1 <= i <= n, e.g. 2/3, or auto (leases)")
        return value

    @field_validator("lease_ttl")
    @classmethod
    def _lease_ttl(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=2):
            raise ValueError("must be at least 2s (it is renewed every quarter of it)")
        return value
