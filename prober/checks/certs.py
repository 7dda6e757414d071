"""The certificate chain a TLS server presented, read from a handshake's SSL object.

Python 3.11's `ssl` gives the peer's leaf only (`getpeercert`, empty when it was not verified);
the chains are public from 3.13 (`SSLObject.get_unverified_chain()` / `get_verified_chain()`),
and those wrap the `_sslobj` methods used here, which exist since 3.10 and return
`_ssl.Certificate` objects whose `get_info()` decodes a certificate whether or not it was
verified. The presented chain is readable after a failed verification too, so an expired or
untrusted certificate still reports what it was.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# Go's pkix.Name.String() short names (blackbox_exporter's subject and issuer labels).
_SHORT = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
          "localityName": "L", "stateOrProvinceName": "ST", "streetAddress": "STREET", "postalCode": "POSTALCODE",
          "serialNumber": "SERIALNUMBER"}
_ESCAPED = frozenset(',+"\\<>;')


class _Certificate(Protocol):
    """An `_ssl.Certificate` (typeshed does not describe it)."""

    def get_info(self) -> Mapping[str, Any]: ...

    def public_bytes(self) -> str: ...  # PEM; the DER constant is not in the public ssl module


@dataclass(frozen=True, slots=True)
class Cert:
    """What a chain report needs of one certificate."""

    subject: str  # "CN=leaf,O=Example" (most specific first, as Go and blackbox_exporter write it)
    issuer: str
    common_name: str
    not_after: dt.datetime
    serial: str  # lower-case hex
    dns_names: tuple[str, ...]
    fingerprint_sha256: str

    def describe(self) -> str:
        """One line of a chain listing: the subject's CN (or whole subject) and its expiry."""
        return f"{self.common_name or self.subject}, not after {self.not_after.isoformat()}"


@dataclass(frozen=True, slots=True)
class Chain:
    """The certificates the server presented (leaf first), and the chain OpenSSL verified (leaf to
    trust anchor) when verification was on and succeeded, else empty."""

    presented: tuple[Cert, ...]
    verified: tuple[Cert, ...] = ()

    @property
    def leaf(self) -> Cert:
        return self.presented[0]

    @property
    def earliest(self) -> Cert:
        """The presented certificate that expires first (blackbox's probe_ssl_earliest_cert_expiry)."""
        return min(self.presented, key=lambda c: c.not_after)

    @property
    def verified_not_after(self) -> dt.datetime | None:
        """When the verified chain stops being valid (probe_ssl_last_chain_expiry_timestamp_seconds)."""
        return min(c.not_after for c in self.verified) if self.verified else None

    def details(self) -> dict[str, Any]:
        """The chain as flat ProbeResult.details keys."""
        out: dict[str, Any] = {
            "chain": [c.describe() for c in self.presented],
            "chain_length": len(self.presented),
            "earliest_expiry_subject": self.earliest.subject,
            "leaf_subject": self.leaf.subject,
            "leaf_issuer": self.leaf.issuer,
            "leaf_serial": self.leaf.serial,
            "leaf_dns_names": list(self.leaf.dns_names),
            "leaf_fingerprint_sha256": self.leaf.fingerprint_sha256,
        }
        verified_not_after = self.verified_not_after
        if verified_not_after is not None:
            out["verified_chain_not_after"] = verified_not_after.isoformat()
        return out


def read(ssl_object: ssl.SSLObject | ssl.SSLSocket, verified: bool) -> Chain | None:
    """The chain of a handshake (finished, or failed after the server's certificates arrived); None when
    the server presented none. `verified`: whether verification was on and the handshake succeeded."""
    inner = getattr(ssl_object, "_sslobj", None)
    if inner is None or not hasattr(inner, "get_unverified_chain"):  # no handshake yet; a Python without the call
        return None
    presented = _certs(inner.get_unverified_chain())
    if not presented:
        return None
    return Chain(presented, _certs(inner.get_verified_chain()) if verified else ())


def _certs(found: Sequence[_Certificate] | None) -> tuple[Cert, ...]:
    return tuple(cert(c.get_info(), ssl.PEM_cert_to_DER_cert(c.public_bytes())) for c in found or ())


def cert(info: Mapping[str, Any], der: bytes) -> Cert:
    """A Cert from `getpeercert()`-style decoded fields and the certificate's DER."""
    subject = info.get("subject", ())
    return Cert(
        subject=_name(subject),
        issuer=_name(info.get("issuer", ())),
        common_name=next((v for rdn in subject for k, v in rdn if k == "commonName"), ""),
        not_after=dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(str(info["notAfter"])), dt.UTC),
        serial=str(info.get("serialNumber", "")).lower(),
        dns_names=tuple(v for k, v in info.get("subjectAltName", ()) if k == "DNS"),
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
    )


def _name(rdns: Sequence[Sequence[tuple[str, str]]]) -> str:
    return ",".join("+".join(f"{_SHORT.get(k, k)}={_escape(v)}" for k, v in rdn) for rdn in reversed(rdns))


def _escape(value: str) -> str:
    out = "".join(f"\\{ch}" if ch in _ESCAPED else ch for ch in value)
    if out.startswith(("#", " ")):
        out = "\\" + out
    return out[:-1] + "\\ " if out.endswith(" ") else out


def tls_version(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> str | None:
    """'TLS 1.3' as blackbox_exporter names versions (OpenSSL says 'TLSv1.3'); None before a handshake."""
    version = ssl_object.version()
    if version is None:
        return None
    return version.replace("TLSv", "TLS ") if version.startswith("TLSv") else version
