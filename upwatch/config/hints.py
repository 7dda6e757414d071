"""What to write instead of a key that is Gatus's name for an upwatch setting.

People paste Gatus configs into upwatch.yaml; "unknown key 'conditions'" alone sends them to the
docs, while the one-line answer is known. Which section an unknown key is in is told by the keys
allowed there (the loader's message already has them), so this needs no knowledge of the schema.
"""

from __future__ import annotations

from collections.abc import Collection

_IMPORT = "`upwatch import gatus` converts a whole Gatus config"
_NOT_APPLICABLE = "not applicable: upwatch's dashboards are Grafana's and `status_pages`"

ENDPOINT = {
    "conditions": "Gatus's name; upwatch calls it `assertions` (the same condition strings work)",
    "alerts": ("Gatus's per-endpoint alerts; upwatch sets thresholds under `alerting` (`failure_threshold`, "
               "`success_threshold`, `send_resolved`) and who is told under `alerting.routes`"),
    "group": "Gatus's name; upwatch uses `tags` (a list)",
    "client": ("Gatus's client options; upwatch has them on the endpoint: `timeout`, `verify_tls` "
               "(insecure: true is verify_tls: false), `follow_redirects` (ignore-redirect: true is false)"),
    "maintenance-windows": "Gatus's name; upwatch has windows under `alerting.maintenance`, with `endpoints: [NAME]`",
    "dns": "Gatus's DNS settings; upwatch writes `kind: dns`, `host` (the query name) and `record_type`",
    "graphql": "Gatus's GraphQL wrapping; upwatch sends `json: {query: ...}`",
    "ui": f"Gatus's dashboard settings; {_NOT_APPLICABLE}",
    "extra-labels": "Gatus's metric labels; upwatch has `tags`",
    "token": "Gatus's push token; upwatch uses `auth: {bearer: ...}` on a `kind: push` endpoint",
    "heartbeat": "Gatus's heartbeat; upwatch writes `period` (and `grace`) on a `kind: push` endpoint",
    "ssh": "Gatus's SSH check; upwatch has no ssh kind",
}
TOP = {
    "external-endpoints": "Gatus's name; upwatch lists them under `endpoints` with `kind: push`",
    "maintenance": "Gatus's name; upwatch has a list of windows under `alerting.maintenance`",
    "ui": f"Gatus's dashboard settings; {_NOT_APPLICABLE}",
    "web": f"Gatus's dashboard listener; {_NOT_APPLICABLE} (the push API and /metrics listen on `push.listen`)",
    "metrics": "Gatus's switch; upwatch always serves /metrics on `push.listen`",
    "security": f"Gatus's dashboard login; {_NOT_APPLICABLE}",
    "concurrency": "Gatus's name; upwatch has `prober.max_concurrency`",
    "default-endpoint": "to keep an anchor for `<<:` merge keys, start the key with `x-` (`x-default-endpoint`)",
}
_GATUS_ONLY = ("announcements", "suites", "connectivity", "remote", "tunneling", "skip-invalid-config-update",
               "disable-monitoring-lock")
ALERTING = {
    "email": f"Gatus's provider; upwatch's is `smtp` (`from` is `sender`, `to` is `recipients`); {_IMPORT}",
    "slack": f"Gatus's provider; upwatch sends Slack messages through a webhook with `format: slack`; {_IMPORT}",
    "custom": f"Gatus's provider; upwatch's webhooks post JSON to a URL; {_IMPORT}",
}


def instead(key: str, allowed: Collection[str]) -> str | None:
    """': <what to write instead>' when `key` is Gatus's name for something, else None.
    `allowed`: the keys of the section `key` was found in."""
    if "assertions" in allowed:
        text = ENDPOINT.get(key)
    elif "endpoints" in allowed and "alerting" in allowed:
        text = TOP.get(key) or (f"a Gatus setting upwatch has no equivalent for; {_IMPORT} and lists what it"
                                " cannot" if key in _GATUS_ONLY else None)
    elif "smtp" in allowed and "routes" in allowed:
        text = ALERTING.get(key)
    else:
        text = None
    return f": {text}" if text else None
