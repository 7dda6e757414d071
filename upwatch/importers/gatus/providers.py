"""Gatus alerting providers (`alerting.email`, `alerting.slack`, ...) as upwatch SMTP and webhooks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from upwatch.importers.gatus.notes import Notes

# Providers whose incoming webhooks take Slack's {"text": ...} (Discord at the URL + /slack).
SLACK_LIKE = {"slack": "Slack", "discord": "Discord", "mattermost": "Mattermost", "rocketchat": "Rocket.Chat",
              "googlechat": "Google Chat"}
_SLUG = re.compile(r"[^a-z0-9]+")
_ADDRESS = re.compile(r"^[^@\s<>,;]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Channel:
    """Where an alert goes in upwatch: email recipients and webhook names."""

    recipients: tuple[str, ...] = ()
    webhooks: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()  # alerting.channels by name (apprise)


@dataclass
class Provider:
    channel: Channel
    default_alert: dict[str, Any] = field(default_factory=dict)
    per_group: dict[str, Channel] = field(default_factory=dict)  # from `overrides[].group`

    def channel_for(self, group: str) -> Channel:
        return self.per_group.get(group, self.channel)


@dataclass
class Providers:
    smtp: dict[str, Any] | None = None
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    channels: list[dict[str, Any]] = field(default_factory=list)
    by_type: dict[str, Provider] = field(default_factory=dict)
    not_converted: set[str] = field(default_factory=set)


def convert(alerting: Any, notes: Notes) -> Providers:
    """The providers upwatch can send through; the others are noted, with their alerts left out."""
    out = Providers()
    for kind, conf in (alerting.items() if isinstance(alerting, dict) else []):
        key = f"alerting.{kind}"
        if not isinstance(conf, dict):
            notes.skip(key, "not a mapping; not converted")
            out.not_converted.add(kind)
        elif kind == "email":
            _email(conf, key, notes, out)
        elif kind in SLACK_LIKE or kind == "custom":
            _webhook(kind, conf, key, notes, out)
        elif kind in APPRISE:
            _apprise(kind, conf, key, notes, out)
        else:
            notes.skip(key, f"upwatch has no {kind} channel (it sends email, webhooks and Apprise URLs); alerts of"
                            f" type {kind} are not converted")
            out.not_converted.add(kind)
    return out


def _telegram(conf: dict[str, Any]) -> str | None:
    token, chat = conf.get("token"), conf.get("id")
    return f"tgram://{token}/{chat}" if token and chat else None


def _ntfy(conf: dict[str, Any]) -> str | None:
    topic = conf.get("topic")
    if not topic:
        return None
    parts = urlsplit(str(conf.get("url") or "https://ntfy.sh"))
    token = f"{conf['token']}@" if conf.get("token") else ""
    return f"{'ntfys' if parts.scheme == 'https' else 'ntfy'}://{token}{parts.netloc}/{topic}"


def _gotify(conf: dict[str, Any]) -> str | None:
    server, token = conf.get("server-url"), conf.get("token")
    if not server or not token:
        return None
    parts = urlsplit(str(server))
    return f"{'gotifys' if parts.scheme == 'https' else 'gotify'}://{parts.netloc}{parts.path.rstrip('/')}/{token}"


def _pushover(conf: dict[str, Any]) -> str | None:
    user, app = conf.get("user-key"), conf.get("application-token")
    return f"pover://{user}@{app}" if user and app else None


def _workflow(conf: dict[str, Any]) -> str | None:
    url = conf.get("webhook-url")
    return str(url) if url else None  # Apprise takes a Teams Workflows (Power Automate) URL as it is


# Gatus provider -> (the Apprise URL made of its settings, the settings that go into it). Their secrets
# (tokens in the URL) are copied as written, like a webhook's: move them to the environment.
APPRISE = {"telegram": (_telegram, {"token", "id"}), "ntfy": (_ntfy, {"topic", "url", "token"}),
           "gotify": (_gotify, {"server-url", "token"}), "pushover": (_pushover, {"user-key", "application-token"}),
           "teams-workflows": (_workflow, {"webhook-url"})}


def _apprise_takes(url: str) -> bool:
    """Whether Apprise can use the URL (one holding ${VAR} is checked by check-config once it is set)."""
    if "${" in url:
        return True
    import apprise  # only when converting such a provider: it loads ~190 plugins

    return apprise.Apprise.instantiate(url, suppress_exceptions=True) is not None


def _apprise(kind: str, conf: dict[str, Any], key: str, notes: Notes, out: Providers) -> None:
    make, used = APPRISE[kind]
    url = make(conf)
    if url is None or not _apprise_takes(url):
        why = f"needs {', '.join(sorted(used))}" if url is None else "Apprise does not take the URL its settings make"
        notes.skip(key, f"{why}; alerts of type {kind} are not converted")
        out.not_converted.add(kind)
        return
    out.channels.append({"name": kind, "type": "apprise", "urls": [url]})
    out.by_type[kind] = Provider(Channel(channels=(kind,)), _default_alert(conf))
    notes.change(key, "sent through Apprise (channel type apprise), in Apprise's message format")
    for name in [k for k in conf if k not in used | {"default-alert"}]:
        notes.skip(f"{key}.{name}", f"not converted (upwatch has no {kind} setting for it)")


def _addresses(value: Any, key: str, notes: Notes) -> tuple[str, ...]:
    """Gatus's comma-separated `to`; what is not a plain address (upwatch takes no display names) is noted."""
    found = [a.strip() for a in str(value or "").split(",") if a.strip()]
    for bad in (a for a in found if not _ADDRESS.match(a)):
        notes.skip(key, f"{bad!r} is not a plain address like oncall@example.com; left out")
    return tuple(a for a in found if _ADDRESS.match(a))


def _email(conf: dict[str, Any], key: str, notes: Notes, out: Providers) -> None:
    host, sender, recipients = conf.get("host"), conf.get("from"), _addresses(conf.get("to"), f"{key}.to", notes)
    if not host or not _ADDRESS.match(str(sender or "")) or not recipients:
        notes.skip(key, "needs host, from and to (Gatus ignores it too); not converted")
        out.not_converted.add("email")
        return
    port = int(conf.get("port") or 25)
    smtp: dict[str, Any] = {"host": str(host), "port": port, "tls": "tls" if port == 465 else "starttls"}
    if port != 465:
        notes.change(f"{key}.port", "Gatus uses STARTTLS when the server offers it; upwatch requires it"
                                    " (tls: starttls; write tls: none for a server without TLS)")
    if conf.get("password"):
        smtp["username"] = str(conf.get("username") or sender)
        smtp["password"] = str(conf["password"])
    smtp["sender"] = str(sender)
    smtp["recipients"] = list(recipients)
    provider = Provider(Channel(recipients=recipients), _default_alert(conf))
    for name, value in conf.items():
        if name == "overrides":
            _email_overrides(value, f"{key}.overrides", notes, provider)
        elif name == "client":
            notes.skip(f"{key}.client", "upwatch always verifies the SMTP server's certificate"
                                        " (alerting.smtp.ca_file trusts a private CA)")
        elif name not in ("host", "port", "from", "to", "username", "password", "default-alert"):
            notes.skip(f"{key}.{name}", "not a Gatus email setting; not converted")
    out.smtp = smtp
    out.by_type["email"] = provider


def _email_overrides(overrides: Any, key: str, notes: Notes, provider: Provider) -> None:
    for i, override in enumerate(overrides if isinstance(overrides, list) else []):
        at = f"{key}[{i}]"
        recipients = _addresses(override.get("to"), f"{at}.to", notes) if isinstance(override, dict) else ()
        if not isinstance(override, dict) or not override.get("group") or not recipients:
            notes.skip(at, "an override needs a group and to; not converted")
            continue
        provider.per_group[str(override["group"])] = Channel(recipients=recipients)
        for name in [k for k in override if k not in {"group", "to"}]:
            notes.skip(f"{at}.{name}", "upwatch has one SMTP server; only the recipients are overridden per group")


def _webhook(kind: str, conf: dict[str, Any], key: str, notes: Notes, out: Providers) -> None:
    url_key = "url" if kind == "custom" else "webhook-url"
    hook = _hook(kind, kind, conf.get(url_key), conf, f"{key}.{url_key}", notes)
    if hook is None:
        out.not_converted.add(kind)
        return
    out.webhooks.append(hook)
    provider = Provider(Channel(webhooks=(kind,)), _default_alert(conf))
    if kind != "slack":
        how = (" at the webhook URL + /slack" if kind == "discord" else "") if kind in SLACK_LIKE else ""
        notes.change(key, f"sent in Slack's message format, which {SLACK_LIKE[kind]} accepts{how}" if kind in SLACK_LIKE
                     else "upwatch posts its own JSON document (subject, text, alerts) to the URL")
    handled = {url_key, "default-alert", "overrides", *(("headers",) if kind == "custom" else ())}
    for i, override in enumerate(conf.get("overrides") or []):
        at = f"{key}.overrides[{i}]"
        group = override.get("group") if isinstance(override, dict) else None
        name = f"{kind}-{_SLUG.sub('-', str(group).lower()).strip('-')}"
        while any(h["name"] == name for h in out.webhooks):  # two groups may slug alike ("a b", "a-b")
            name += "-2"
        extra = _hook(kind, name, override.get(url_key), conf, f"{at}.{url_key}", notes) if group else None
        if extra is None:
            notes.skip(at, f"an override needs a group and {url_key}; not converted")
            continue
        out.webhooks.append(extra)
        provider.per_group[str(group)] = Channel(webhooks=(name,))
    for name in [k for k in conf if k not in handled]:
        reason = ("upwatch's webhooks POST" if name == "method" else
                  "upwatch posts its own JSON document (subject, text, alerts)" if name in ("body", "placeholders")
                  else "upwatch's messages have their own title" if name == "title"
                  else f"not converted (upwatch has no {kind} setting for it)")
        if not (name == "method" and str(conf[name]).upper() == "POST"):
            notes.skip(f"{key}.{name}", reason)
    out.by_type[kind] = provider


def _hook(kind: str, name: str, url: Any, conf: dict[str, Any], key: str, notes: Notes) -> dict[str, Any] | None:
    text = str(url or "")
    if not text.startswith("${") and (urlsplit(text).scheme not in ("http", "https") or not urlsplit(text).hostname):
        # the URL is not quoted: webhook URLs carry their secret in the path
        notes.skip(key, f"{'not an http(s) URL' if text else 'missing'}; not converted")
        return None
    if kind == "discord" and not text.rstrip("/").endswith("/slack"):
        text = text.rstrip("/") + "/slack"
    hook: dict[str, Any] = {"name": name, "url": text, "format": "generic" if kind == "custom" else "slack"}
    if kind == "custom" and isinstance(conf.get("headers"), dict) and conf["headers"]:
        hook["headers"] = {str(k): str(v) for k, v in conf["headers"].items()}
    return hook


def _default_alert(conf: dict[str, Any]) -> dict[str, Any]:
    value = conf.get("default-alert")
    return value if isinstance(value, dict) else {}
