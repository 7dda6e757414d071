"""Prometheus text exposition (format 0.0.4) and the blackbox_exporter families a ProbeResult maps onto.

Every family is declared once in FAMILIES with its type and HELP text, so each one rendered has
`# HELP` and `# TYPE` (what `promtool check metrics` asks for), and /metrics and /probe use the
same names, types and labels as blackbox_exporter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

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
    "probe_http_status_code": ("gauge", "HTTP status code of the response (0 when there was none)"),
    "probe_http_duration_seconds": ("gauge", "Duration of the HTTP request by phase, summed over all redirects"),
    "probe_http_uncompressed_body_length": ("gauge", "Length of the response body after decompression, in bytes"),
    "probe_http_ssl": ("gauge", "Whether the final request (after redirects) used TLS"),
    "probe_ssl_earliest_cert_expiry": ("gauge", "Expiry of the server certificate, in Unix time"),
    "probe_dns_query_succeeded": ("gauge", "Whether the name resolved (1) or the lookup failed (0)"),
    "probe_dns_answer_rrs": ("gauge", "Returns number of entries in the answer resource record list"),
    "probe_dns_authority_rrs": ("gauge", "Returns number of entries in the authority resource record list"),
    "probe_dns_additional_rrs": ("gauge", "Returns number of entries in the additional resource record list"),
    "probe_failed_due_to_regex": ("gauge", "Whether a body or header pattern assertion failed"),
    "probe_icmp_duration_seconds": ("gauge", "Duration of the ICMP request by phase"),
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
    """The blackbox_exporter families for one result of a `kind` check (http, tcp, dns, icmp) whose
    endpoint has `assertions`."""
    out.add("probe_success", int(result.ok), labels)
    if duration_s is None and result.latency_ms is not None:
        duration_s = result.latency_ms / 1000
    if duration_s is not None:
        out.add("probe_duration_seconds", duration_s, labels)
    if timeout_s is not None:
        out.add("probe_timeout_seconds", timeout_s, labels)
    if result.dns_ms is not None:
        out.add("probe_dns_lookup_time_seconds", result.dns_ms / 1000, labels)
    if kind == "http":
        _http(out, result, labels)
        out.add("probe_failed_due_to_regex", int(_pattern_failed(assertions, result)), labels)
    elif kind == "dns":
        _dns(out, result, labels)
    elif kind == "icmp":
        _icmp(out, result, labels)


def _dns(out: Exposition, result: ProbeResult, labels: Labels) -> None:
    # As blackbox_exporter: a query succeeded when a response came back, whatever its rcode
    # (an NXDOMAIN answer is 1 here and fails probe_success).
    details = result.details or {}
    out.add("probe_dns_query_succeeded", int("rcode" in details), labels)
    for family, key in (("probe_dns_answer_rrs", "answer_count"), ("probe_dns_authority_rrs", "authority_count"),
                        ("probe_dns_additional_rrs", "additional_count")):
        if key in details:
            out.add(family, details[key], labels)


def _http(out: Exposition, result: ProbeResult, labels: Labels) -> None:
    out.add("probe_http_status_code", result.status_code or 0, labels)
    for phase, column in HTTP_PHASES:
        value: float | None = getattr(result, column)
        out.add("probe_http_duration_seconds", (value or 0.0) / 1000, [*labels, ("phase", phase)])
    if result.response_bytes is not None:
        out.add("probe_http_uncompressed_body_length", result.response_bytes, labels)
    final = urlsplit(result.final_url).scheme if result.final_url else ""
    out.add("probe_http_ssl", int(final == "https"), labels)
    if result.cert_not_after is not None:
        out.add("probe_ssl_earliest_cert_expiry", int(result.cert_not_after.timestamp()), labels)


def _icmp(out: Exposition, result: ProbeResult, labels: Labels) -> None:
    # blackbox_exporter's phases; rtt is the average round trip, 0 when no reply came (as blackbox leaves it)
    details = result.details or {}
    received = details.get("packets_received", 0)
    phases = (("resolve", result.dns_ms), ("setup", details.get("setup_ms")),
              ("rtt", details.get("rtt_avg_ms") if received else None))
    for phase, value in phases:
        out.add("probe_icmp_duration_seconds", (value or 0.0) / 1000, [*labels, ("phase", phase)])


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
