"""Gatus `endpoints` and `external-endpoints` as upwatch endpoints."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from upwatch import conditions
from upwatch.importers.gatus.client import client_options
from upwatch.importers.gatus.notes import Notes, dotted, go_duration, spelled

_INVALID = re.compile(r"[^A-Za-z0-9_.-]+")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ORDER = ("name", "kind", "url", "host", "port", "record_type", "nameserver", "expected_rcode", "require_answer",
          "starttls", "tls", "method", "headers",
          "body", "json", "send", "auth", "interval", "period", "timeout", "verify_tls", "follow_redirects",
          "expected_status", "assertions", "tags", "enabled")
_KINDS = "http, tcp, dns, icmp, tls, udp, ssh, websocket, grpc and push"
_NO_CHECK = "upwatch has no {}:// check (its kinds are " + _KINDS + "); endpoint not converted"
# Gatus scheme -> (upwatch kind, its default port or None when the URL must name one, extra settings).
_HOST_SCHEMES: dict[str, tuple[str, int | None, dict[str, Any]]] = {
    "tcp": ("tcp", None, {}), "udp": ("udp", None, {}), "ssh": ("ssh", 22, {}), "icmp": ("icmp", 0, {}),
    "tls": ("tls", None, {}), "starttls": ("tls", None, {"starttls": "smtp"}),
    "grpc": ("grpc", None, {}), "grpcs": ("grpc", None, {"tls": True}),
}
# The client options each kind has (Gatus sets them on any endpoint).
_CLIENT_KEYS = {"verify_tls": {"http", "tls", "websocket", "grpc"}, "follow_redirects": {"http"}}
_NOT_APPLICABLE = {
    "ui": "dashboard display settings: not applicable (Grafana and status pages show results)",
    "store": "suites only: upwatch has no suites",
    "always-run": "suites only: upwatch has no suites",
}
# What Gatus's ssh check does after logging in, and upwatch's (which reads the server's banner) does not.
_SSH_LOGIN = ("upwatch's ssh check reads the server's identification line without logging in; "
              "no command is run")
_RUNTIME_PLACEHOLDERS = re.compile(r"\[(LOCAL_ADDRESS|RANDOM_STRING_\d+|CONTEXT)\]")
GATUS_INTERVAL = timedelta(seconds=60)  # Gatus's default; upwatch's is 15s


@dataclass
class Converted:
    """One endpoint: the upwatch mapping, plus what the alerting part needs from the Gatus one."""

    key: str  # Gatus key path: endpoints[3]
    endpoint: dict[str, Any]
    group: str
    alerts: list[Any] = field(default_factory=list)
    windows: list[Any] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.endpoint["name"])


class Names:
    """upwatch names for Gatus names, which may hold any text and repeat across groups."""

    def __init__(self, notes: Notes) -> None:
        self.notes = notes
        self.used: set[str] = set()

    def unique(self, name: str, group: str, key: str) -> str:
        base = _slug(name)
        candidate = base
        if candidate in self.used and group:
            candidate = _slug(f"{group}-{name}")
        n = 2
        while candidate in self.used:
            candidate, n = f"{base[:95]}-{n}", n + 1
        self.used.add(candidate)
        if candidate != name:
            self.notes.change(f"{key}.name", f"{name!r} is named {candidate!r}: upwatch names are unique and made of"
                                             " letters, digits, '.', '_' and '-', and it has no display name")
        return candidate


def _slug(name: str) -> str:
    return _INVALID.sub("-", name).strip("-._")[:100].rstrip("-._") or "endpoint"


def convert(items: Any, notes: Notes, names: Names) -> list[Converted]:
    """Every convertible entry of Gatus's `endpoints`."""
    out = []
    for i, item in enumerate(items if isinstance(items, list) else []):
        converted = _endpoint(item, dotted("endpoints", i), notes, names)
        if converted is not None:
            out.append(converted)
    if not isinstance(items, list | None):
        notes.skip("endpoints", "must be a list; not converted")
    return out


def _endpoint(item: Any, key: str, notes: Notes, names: Names) -> Converted | None:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
        notes.skip(key, "an endpoint needs a name; not converted")
        return None
    target = _target(item, key, notes)
    if target is None:
        return None
    group = str(item.get("group") or "")
    out: dict[str, Any] = {"name": names.unique(item["name"], group, key), **target}
    converted = Converted(key, out, group, _list(item.get("alerts")), _list(item.get("maintenance-windows")))
    for name, value in item.items():
        _setting(str(name), value, item, out, f"{key}.{name}", notes)
    out.setdefault("interval", spelled(GATUS_INTERVAL))
    if out.get("kind", "http") == "http":
        # Gatus judges an endpoint by its conditions alone; upwatch also wants the status in expected_status.
        out["expected_status"] = "100-599"
    converted.endpoint = {k: out[k] for k in ORDER if k in out}
    return converted


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _target(item: dict[str, Any], key: str, notes: Notes) -> dict[str, Any] | None:
    """kind and what it checks, from `url` (and `dns`); None when upwatch cannot check it."""
    url = item.get("url")
    if isinstance(item.get("dns"), dict):
        return _dns(item["dns"], url, key, notes)
    if not isinstance(url, str) or not url:
        notes.skip(key, "an endpoint needs a url; not converted")
        return None
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return {"url": url}
    if scheme in ("ws", "wss"):
        # Gatus always sends a message (empty without `body`) and waits for the reply.
        return {"kind": "websocket", "url": url, "send": ""}
    if scheme in _HOST_SCHEMES:
        return _host_target(scheme, parts.hostname, _port(parts), key, notes)
    notes.skip(f"{key}.url", _NO_CHECK.format(scheme) if scheme else
               "no scheme (http://, https://, tcp://, ...); endpoint not converted")
    return None


def _port(parts: Any) -> int | None:
    try:
        port = parts.port
    except ValueError:
        return None
    return int(port) if port else None


def _host_target(scheme: str, host: str | None, port: int | None, key: str, notes: Notes) -> dict[str, Any] | None:
    kind, default_port, extra = _HOST_SCHEMES[scheme]
    port = port or default_port
    if not host or port is None:
        notes.skip(f"{key}.url", f"a {scheme}:// URL needs a host and a port; endpoint not converted")
        return None
    out: dict[str, Any] = {"kind": kind, "host": host, **extra}
    if kind != "icmp" and port != default_port:  # icmp has no port; ssh's default is 22
        out["port"] = port
    return out


_RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "NS", "TXT", "SOA", "SRV", "CAA", "PTR")


def _dns(dns: dict[str, Any], server: Any, key: str, notes: Notes) -> dict[str, Any] | None:
    name, record = dns.get("query-name"), str(dns.get("query-type") or "").upper()
    if record not in _RECORD_TYPES:
        notes.skip(f"{key}.dns.query-type", f"{record or 'none'}: upwatch's dns check asks for "
                                             f"{', '.join(_RECORD_TYPES)}; endpoint not converted")
        return None
    if not isinstance(name, str) or not name:
        notes.skip(f"{key}.dns.query-name", "missing; endpoint not converted")
        return None
    for other in [k for k in dns if k not in {"query-name", "query-type"}]:
        notes.skip(f"{key}.dns.{other}", "not a Gatus dns setting")
    # Gatus judges a DNS result by its conditions alone ([DNS_RCODE] among them): so does the conversion.
    out: dict[str, Any] = {"kind": "dns", "host": name.rstrip("."), "record_type": record,
                           "expected_rcode": "any", "require_answer": False}
    if server:
        out["nameserver"] = str(server).removeprefix("dns://")
    return out


def _setting(name: str, value: Any, item: dict[str, Any], out: dict[str, Any], key: str, notes: Notes) -> None:
    """Convert one key of a Gatus endpoint into `out`."""
    kind = out.get("kind", "http")
    if name in ("name", "url", "dns", "alerts", "maintenance-windows", "graphql"):
        return
    if name in ("group", "extra-labels"):
        _tags(name, value, out, key, notes)
    elif name in _NOT_APPLICABLE:
        notes.skip(key, _NOT_APPLICABLE[name])
    elif name in ("method", "headers", "body", "ssh"):
        _request(name, value, item, out, key, notes)
    elif name == "interval":
        _interval(value, out, key, notes)
    elif name == "conditions":
        out["assertions"] = assertions(value, key, notes, kind, _domain_host(out))
    elif name == "client" and isinstance(value, dict):
        _client(client_options(value, key, notes), kind, out, key, notes)
    elif name == "enabled":
        if value is False:
            out["enabled"] = False
    else:
        notes.skip(key, "not a Gatus endpoint setting (or not in this shape); not converted")


def _request(name: str, value: Any, item: dict[str, Any], out: dict[str, Any], key: str, notes: Notes) -> None:
    """What a check sends: an http request's method, headers and body, a websocket's message."""
    kind = out.get("kind", "http")
    if name == "ssh":
        if kind == "ssh" and isinstance(value, dict) and any(value.get(k) for k in ("username", "password",
                                                                                     "private-key")):
            notes.change(key, _SSH_LOGIN)
        elif kind != "ssh":
            notes.skip(key, "only for ssh:// endpoints; not converted")
    elif kind == "websocket" and name == "body":
        out["send"] = str(value)
    elif kind == "websocket" and name == "headers" and isinstance(value, dict):
        out["headers"] = {str(k): str(v) for k, v in value.items()}
    elif kind != "http":
        notes.skip(key, f"upwatch's {kind} check sends no request; not converted")
    elif name == "method":
        _method(value, out, key, notes)
    elif name == "headers" and isinstance(value, dict):
        out["headers"] = {str(k): str(v) for k, v in value.items()}
    elif name == "body":
        _body(str(value), item, out, key, notes)
    else:
        notes.skip(key, "not a Gatus endpoint setting (or not in this shape); not converted")


def _client(options: dict[str, Any], kind: str, out: dict[str, Any], key: str, notes: Notes) -> None:
    for name, value in options.items():
        if kind in _CLIENT_KEYS.get(name, {kind}):
            out[name] = value
        else:
            notes.skip(key, f"{name}: upwatch's {kind} check has no such setting; not converted")


def _tags(name: str, value: Any, out: dict[str, Any], key: str, notes: Notes) -> None:
    if name == "group" and value:
        out.setdefault("tags", []).append(str(value))
    elif name == "extra-labels" and isinstance(value, dict):
        out.setdefault("tags", []).extend(f"{k}={v}" for k, v in value.items())
        notes.change(key, "written as tags key=value (upwatch has no metric labels)")


def _method(value: Any, out: dict[str, Any], key: str, notes: Notes) -> None:
    method = str(value).upper()
    if method not in _METHODS:
        notes.skip(key, f"{value!r}: upwatch sends {', '.join(_METHODS)}")
    elif method != "GET":
        out["method"] = method


def _body(body: str, item: dict[str, Any], out: dict[str, Any], key: str, notes: Notes) -> None:
    # Gatus fills these in from the endpoint itself: known now, so written out.
    for placeholder, field_name in (("[ENDPOINT_NAME]", "name"), ("[ENDPOINT_GROUP]", "group"),
                                    ("[ENDPOINT_URL]", "url")):
        body = body.replace(placeholder, str(item.get(field_name) or ""))
    for m in dict.fromkeys(_RUNTIME_PLACEHOLDERS.findall(body)):
        notes.change(key, f"[{m}] is not filled in by upwatch: it is sent as written")
    if item.get("graphql") is True:
        out["json"] = {"query": body}
    else:
        out["body"] = body


def _interval(value: Any, out: dict[str, Any], key: str, notes: Notes) -> None:
    try:
        interval = go_duration(value)
    except ValueError as e:
        notes.skip(key, f"{e}; upwatch's default {spelled(GATUS_INTERVAL)} (Gatus's) is used")
        return
    if interval < timedelta(seconds=1):
        notes.change(key, f"{value}: upwatch's shortest interval is 1s")
        interval = timedelta(seconds=1)
    out["interval"] = spelled(interval)


def _domain_host(out: dict[str, Any]) -> str:
    """The host [DOMAIN_EXPIRATION] looks up, as prober.checks.rdap picks it (a TLS server_name first)."""
    if out.get("server_name"):
        return str(out["server_name"])
    return str(out.get("host") or urlsplit(str(out.get("url", ""))).hostname or "")


def assertions(items: Any, key: str, notes: Notes, kind: str = "http", host: str = "") -> list[str]:
    """The conditions upwatch reads (the same strings); the others are noted with the reason."""
    out = []
    for j, text in enumerate(items if isinstance(items, list) else []):
        try:
            parsed = conditions.parse_condition(str(text))
        except ValueError as e:
            notes.skip(dotted(key, j), str(e))
            continue
        no_domain = conditions.domain_problem(kind, host) if conditions.reads_domain(parsed) else None
        if no_domain is not None:
            notes.skip(dotted(key, j), no_domain)
            continue
        if kind == "ssh" and ("[STATUS]" in str(text) or "[BODY]." in str(text)):
            # Gatus: the exit status and output of a command run after logging in.
            notes.skip(dotted(key, j), f"{_SSH_LOGIN}, so there is no exit status or command output")
            continue
        out.append(str(text))
    return out
