"""A Gatus endpoint's `client:` options as upwatch endpoint settings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from upwatch.importers.gatus.notes import Notes, go_duration, spelled

_NO_EQUIVALENT = {
    "dns-resolver": "upwatch resolves names with the system resolver",
    "oauth2": "upwatch has no OAuth2 client-credentials flow; send a token with auth: {bearer: ${TOKEN}}",
    "identity-aware-proxy": "upwatch fetches no Google Identity-Aware-Proxy tokens",
    "proxy-url": "upwatch's checks connect directly, not through a proxy",
    "tls": "upwatch sends no client certificate (mTLS)",
    "network": "for ICMP checks, which upwatch does not have",
    "tunnel": "upwatch has no SSH tunnels",
    "store-cookies": "upwatch keeps no cookies between checks",
}


def client_options(client: dict[str, Any], key: str, notes: Notes) -> dict[str, Any]:
    """timeout, verify_tls and follow_redirects; every other client option is noted as not converted."""
    out: dict[str, Any] = {}
    for name, value in client.items():
        at = f"{key}.{name}"
        if name == "insecure":
            if value is True:
                out["verify_tls"] = False
        elif name == "ignore-redirect":
            if value is True:
                out["follow_redirects"] = False
        elif name == "timeout":
            _timeout(value, out, at, notes)
        elif name in _NO_EQUIVALENT:
            notes.skip(at, _NO_EQUIVALENT[name])
        else:
            notes.skip(at, "not a Gatus client setting")
    return out


def _timeout(value: Any, out: dict[str, Any], key: str, notes: Notes) -> None:
    try:
        timeout = go_duration(value)
    except ValueError as e:
        notes.skip(key, str(e))
        return
    if timeout <= timedelta(0):
        notes.skip(key, f"{value}: a timeout must be more than 0; upwatch's default 10s (Gatus's) is used")
        return
    out["timeout"] = spelled(timeout)
