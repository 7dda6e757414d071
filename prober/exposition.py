"""Prometheus text exposition (format 0.0.4) and the blackbox_exporter families a ProbeResult maps onto.

Every family is declared once in FAMILIES with its type and HELP text, so each one rendered has
`# HELP` and `# TYPE` (what `promtool check metrics` asks for), and /metrics and /probe use the
same names, types and labels as blackbox_exporter.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import math
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from prober.checks import certs
from upwatch.assertions import Assertion, Glob
from upwatch.records import ProbeResult

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = Sequence[tuple[str, str]]

# name -> (type, HELP). The probe_* names, types and labels are blackbox_exporter's.
FAMILIES: dict[str, tuple[str, str]] = {
    "probe_success": ("gauge", "Whether the probe succeeded (1) or failed (0)"),
    "probe_duration_seconds": ("gauge", "How long the probe took to complete, in seconds"),
    "probe_timeout_seconds": ("gauge", "The probe's timeout, in seconds"),
    "probe_dns_lookup_time_seconds": ("gauge", "Time taken to resolve the target's name, in seconds"),
    "probe_ip_protocol": ("gauge", "Specifies whether probe ip protocol is IP4 or IP6"),
    "probe_ip_addr_hash": ("gauge", "Specifies the hash of IP address. It's useful to detect if the IP address "
                                    "changes."),
    "probe_http_status_code": ("gauge", "HTTP status code of the response (0 when there was none)"),
    "probe_http_duration_seconds": ("gauge", "Duration of the HTTP request by phase, summed over all redirects"),
    "probe_http_content_length": ("gauge", "Length of http content response (Content-Length; -1 when not sent)"),
    "probe_http_uncompressed_body_length": ("gauge", "Length of the response body after decompression, in bytes"),
    "probe_http_redirects": ("gauge", "The number of redirects"),
    "probe_http_ssl": ("gauge", "Whether the final request (after redirects) used TLS"),
    "probe_http_version": ("gauge", "Returns the version of HTTP of the probe response"),
    "probe_http_last_modified_timestamp_seconds": ("gauge", "Returns the Last-Modified HTTP response header in "
                                                            "unixtime"),
    "probe_failed_due_to_regex": ("gauge", "Whether a body or header pattern assertion failed"),
    "probe_ssl_earliest_cert_expiry": ("gauge", "Earliest expiry of the certificates the server presented, in "
                                                "Unix time"),
    "probe_ssl_last_chain_expiry_timestamp_seconds": ("gauge", "Returns last SSL chain expiry in timestamp seconds"),
    "probe_ssl_last_chain_info": ("gauge", "Contains SSL leaf certificate information"),
    "probe_tls_version_info": ("gauge", "Returns the TLS version used"),
    "probe_tls_cipher_info": ("gauge", "Returns the TLS cipher negotiated during handshake"),
    "probe_dns_query_succeeded": ("gauge", "Whether the name resolved (1) or the lookup failed (0)"),
    "probe_dns_answer_rrs": ("gauge", "Returns number of entries in the answer resource record list"),
    "probe_dns_authority_rrs": ("gauge", "Returns number of entries in the authority resource record list"),
    "probe_dns_additional_rrs": ("gauge", "Returns number of entries in the additional resource record list"),
    "probe_icmp_duration_seconds": ("gauge", "Duration of the ICMP request by phase"),
    "probe_icmp_reply_hop_limit": ("gauge", "Replied packet hop limit (TTL for ipv4)"),
}

# probe_http_duration_seconds phases (blackbox_exporter's), from our ProbeResult columns.
HTTP_PHASES = (("resolve", "dns_ms"), ("connect", "connect_ms"), ("tls", "tls_ms"), ("processing", "ttfb_ms"),
               ("transfer", "transfer_ms"))
# Assertions that are blackbox_exporter's fail_if_(body|header)_(not_)matches_regexp in upwatch.
_PATTERN_OPS = frozenset({"matches", "contains", "not_contains"})


class Exposition:
    """Samples collected by family, rendered with one HELP and TYPE line per family."""

    def __init__(self, families: dict[str, tuple[str, str]] | None = None) -> None:
        self.families = FAMILIES if families is None else families
        self._samples: dict[str, list[str]] = {}

    def add(self, family: str, value: float, labels: Labels = (), suffix: str = "") -> None:
        """One sample of `family` (declared in the catalog; a KeyError otherwise is a bug)."""
        if family not in self.families:
            raise KeyError(f"metric family {family!r} is not declared")
        text = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels)
        name = family + suffix
        self._samples.setdefault(family, []).append(f"{name}{{{text}}} {number(value)}" if text
                                                    else f"{name} {number(value)}")

    def lines(self) -> list[str]:
        """HELP, TYPE and samples of every family that has samples, in the order first added."""
        out: list[str] = []
        for family, samples in self._samples.items():
            kind, help_text = self.families[family]
            out += [f"# HELP {family} {escape_help(help_text)}", f"# TYPE {family} {kind}", *samples]
        return out

    def render(self) -> str:
        return "\n".join(self.lines()) + "\n"


def add_probe(out: Exposition, kind: str, result: ProbeResult, labels: Labels = (), *,
              duration_s: float | None = None, timeout_s: float | None = None,
              assertions: Sequence[Assertion] = ()) -> None:
    """The blackbox_exporter families for one result of a `kind` check (http, tcp, tls, dns, icmp) whose
    endpoint has `assertions`."""
    out.add("probe_success", int(result.ok), labels)
    if duration_s is None and result.latency_ms is not None:
        duration_s = result.latency_ms / 1000
    if duration_s is not None:
        out.add("probe_duration_seconds", duration_s, labels)
    if timeout_s is not None:
        out.add("probe_timeout_seconds", timeout_s, labels)
    details = result.details or {}
    if result.dns_ms is not None or kind in _ADDRESSED:  # blackbox resolves before every probe, failed or not
        out.add("probe_dns_lookup_time_seconds", (result.dns_ms or 0.0) / 1000, labels)
    if kind in _ADDRESSED:
        protocol, digest = address_gauges(details.get("ip"))
        out.add("probe_ip_protocol", protocol, labels)
        out.add("probe_ip_addr_hash", digest, labels)
    if kind == "http":
        _http(out, result, details, labels)
        out.add("probe_failed_due_to_regex", int(_pattern_failed(assertions, result)), labels)
    elif kind == "dns":
        _dns(out, details, labels)
    elif kind == "icmp":
        _icmp(out, result, details, labels)
    if kind in ("http", "tls"):
        _tls(out, result, details, labels)


# Kinds whose details name the address connected to ("ip"); blackbox_exporter's chooseProtocol families.
_ADDRESSED = frozenset({"http", "tcp", "tls", "dns", "icmp"})


@functools.lru_cache(maxsize=65536)
def address_gauges(ip: str | None) -> tuple[int, int]:
    """probe_ip_protocol (4, 6; 0 when no address is known) and probe_ip_addr_hash: FNV-1a (32 bit) of
    the address's bytes, 4 for IPv4 (also when IPv4-mapped), 16 for IPv6, as blackbox_exporter's ipHash."""
    if not ip:
        return 0, 0
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return 0, 0
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    packed = (mapped or address).packed
    digest = 0x811C9DC5
    for byte in packed:
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    return (4 if len(packed) == 4 else 6), digest


def _dns(out: Exposition, details: Mapping[str, Any], labels: Labels) -> None:
    # As blackbox_exporter: a query succeeded when a response came back, whatever its rcode
    # (an NXDOMAIN answer is 1 here and fails probe_success).
    out.add("probe_dns_query_succeeded", int("rcode" in details), labels)
    for family, key in (("probe_dns_answer_rrs", "answer_count"), ("probe_dns_authority_rrs", "authority_count"),
                        ("probe_dns_additional_rrs", "additional_count")):
        if key in details:
            out.add(family, details[key], labels)


def _http(out: Exposition, result: ProbeResult, details: Mapping[str, Any], labels: Labels) -> None:
    out.add("probe_http_status_code", result.status_code or 0, labels)
    for phase, column in HTTP_PHASES:
        value: float | None = getattr(result, column)
        out.add("probe_http_duration_seconds", (value or 0.0) / 1000, [*labels, ("phase", phase)])
    answered = result.status_code is not None  # no response: blackbox's empty http.Response, all zeros
    out.add("probe_http_content_length", details.get("content_length", -1) if answered else 0, labels)
    out.add("probe_http_uncompressed_body_length", result.response_bytes or 0, labels)
    out.add("probe_http_redirects", details.get("redirects", 0), labels)
    final = urlsplit(result.final_url).scheme if result.final_url else ""
    out.add("probe_http_ssl", int(final == "https"), labels)
    out.add("probe_http_version", _version(details.get("http_version")), labels)
    if "last_modified" in details:
        out.add("probe_http_last_modified_timestamp_seconds", details["last_modified"], labels)


def _version(text: object) -> float:
    try:
        return float(str(text))
    except ValueError:
        return 0.0


def _tls(out: Exposition, result: ProbeResult, details: Mapping[str, Any], labels: Labels) -> None:
    """The TLS families of a check whose handshake completed (blackbox_exporter has none otherwise):
    earliest expiry of the presented chain, of the verified chain, the leaf's identity, version, cipher."""
    version = details.get("tls_version")
    if not version or result.cert_not_after is None:
        return
    out.add("probe_ssl_earliest_cert_expiry", int(result.cert_not_after.timestamp()), labels)
    verified = details.get("verified_chain_not_after")
    if verified:
        out.add("probe_ssl_last_chain_expiry_timestamp_seconds",
                int(dt.datetime.fromisoformat(verified).timestamp()), labels)
    out.add("probe_ssl_last_chain_info", 1, [
        *labels, ("fingerprint_sha256", str(details.get("leaf_fingerprint_sha256", ""))),
        ("issuer", str(details.get("leaf_issuer", ""))), ("serialnumber", str(details.get("leaf_serial", ""))),
        ("subject", str(details.get("leaf_subject", ""))),
        ("subjectalternative", ",".join(details.get("leaf_dns_names") or ()))])
    out.add("probe_tls_version_info", 1, [*labels, ("version", str(version))])
    if details.get("cipher"):
        out.add("probe_tls_cipher_info", 1, [*labels, ("cipher", certs.cipher_name(str(details["cipher"])))])


def _icmp(out: Exposition, result: ProbeResult, details: Mapping[str, Any], labels: Labels) -> None:
    # blackbox_exporter's phases; rtt is the average round trip, 0 when no reply came (as blackbox leaves it)
    received = details.get("packets_received", 0)
    phases = (("resolve", result.dns_ms), ("setup", details.get("setup_ms")),
              ("rtt", details.get("rtt_avg_ms") if received else None))
    for phase, value in phases:
        out.add("probe_icmp_duration_seconds", (value or 0.0) / 1000, [*labels, ("phase", phase)])
    if "reply_ttl" in details:
        out.add("probe_icmp_reply_hop_limit", details["reply_ttl"], labels)


def _pattern_failed(assertions: Sequence[Assertion], result: ProbeResult) -> bool:
    """Whether a body or header pattern assertion (matches, contains, pat()) failed; results are in
    the order of the endpoint's assertions."""
    for assertion, outcome in zip(assertions, result.assertions or (), strict=False):
        pattern = assertion.op in _PATTERN_OPS or isinstance(assertion.expected, Glob)
        if pattern and assertion.subject.kind in ("body", "header") and not _held(outcome):
            return True
    return False


def _held(outcome: object) -> bool:
    """An assertion result's `ok`: a record with the attribute, or (as stored before) its JSON mapping."""
    if isinstance(outcome, Mapping):
        return bool(outcome.get("ok"))
    return bool(getattr(outcome, "ok", True))


def number(value: float) -> str:
    """A sample value as Prometheus writes it: integers without a point, NaN, +Inf and -Inf by name."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))  # shortest text that reads back as the same float


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")
