"""The certificate chain a TLS server presented, read from a handshake's SSL object.

Python 3.11's `ssl` gives the peer's leaf only (`getpeercert`, empty when it was not verified);
the chains are public from 3.13 (`SSLObject.get_unverified_chain()` / `get_verified_chain()`),
and those wrap the `_sslobj` methods used here, which exist since 3.10 and return
`_ssl.Certificate` objects whose `get_info()` decodes a certificate whether or not it was
verified. The presented chain is readable after a failed verification too, so an expired or
untrusted certificate still reports what it was.
"""

from __future__ import annotations

import _ssl
import datetime as dt
import functools
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

    def public_bytes(self, encoding: int) -> bytes: ...  # called with _ssl.ENCODING_DER (not in the public ssl module)


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


@dataclass(frozen=True)
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
        """The chain as flat ProbeResult.details keys (a new dict each call)."""
        return dict(self._details)

    @functools.cached_property
    def _details(self) -> dict[str, Any]:
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


# Chains by the DER of their certificates: decoding one costs ~0.1 ms a certificate, reading its DER
# microseconds, and a fleet's probes see the same few chains at every handshake.
_CHAINS: dict[tuple[tuple[bytes, ...], tuple[bytes, ...]], Chain] = {}
CHAIN_CACHE = 4096


def read(ssl_object: ssl.SSLObject | ssl.SSLSocket, verified: bool) -> Chain | None:
    """The chain of a handshake (finished, or failed after the server's certificates arrived); None when
    the server presented none. `verified`: whether verification was on and the handshake succeeded."""
    inner = getattr(ssl_object, "_sslobj", None)
    if inner is None or not hasattr(inner, "get_unverified_chain"):  # no handshake yet; a Python without the call
        return None
    presented = inner.get_unverified_chain() or []
    if not presented:
        return None
    trusted = (inner.get_verified_chain() or []) if verified else []
    key = (_ders(presented), _ders(trusted))
    chain = _CHAINS.get(key)
    if chain is None:
        if len(_CHAINS) >= CHAIN_CACHE:  # renewed and rotated chains: start over rather than grow
            _CHAINS.clear()
        chain = _CHAINS[key] = Chain(_certs(presented, key[0]), _certs(trusted, key[1]))
    return chain


def _ders(found: Sequence[_Certificate]) -> tuple[bytes, ...]:
    return tuple(c.public_bytes(_ssl.ENCODING_DER) for c in found)


def _certs(found: Sequence[_Certificate], ders: tuple[bytes, ...]) -> tuple[Cert, ...]:
    return tuple(cert(c.get_info(), der) for c, der in zip(found, ders, strict=True))


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


# OpenSSL's names of the cipher suites Go's crypto/tls knows -> the IANA names Go's tls.CipherSuiteName
# gives them (blackbox_exporter's probe_tls_cipher_info label). TLS 1.3 suites have IANA names in OpenSSL too.
_IANA = {
    "ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "ECDHE-RSA-CHACHA20-POLY1305": "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "ECDHE-ECDSA-AES128-SHA": "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "ECDHE-ECDSA-AES256-SHA": "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "ECDHE-RSA-AES128-SHA": "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "ECDHE-RSA-AES256-SHA": "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "ECDHE-ECDSA-AES128-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "ECDHE-RSA-AES128-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "ECDHE-RSA-DES-CBC3-SHA": "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "ECDHE-ECDSA-RC4-SHA": "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "ECDHE-RSA-RC4-SHA": "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "AES128-GCM-SHA256": "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "AES256-GCM-SHA384": "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "AES128-SHA256": "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "AES128-SHA": "TLS_RSA_WITH_AES_128_CBC_SHA",
    "AES256-SHA": "TLS_RSA_WITH_AES_256_CBC_SHA",
    "DES-CBC3-SHA": "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "RC4-SHA": "TLS_RSA_WITH_RC4_128_SHA",
}


def cipher_name(openssl_name: str) -> str:
    """The IANA name of a cipher suite as Go (and blackbox_exporter) writes it; suites Go does not know
    (DHE, CCM, ARIA ...) keep OpenSSL's name."""
    return _IANA.get(openssl_name, openssl_name)
