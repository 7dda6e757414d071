"""Apprise: one channel type for every service Apprise speaks (ntfy, Teams Workflows, Discord, Telegram,
Pushover, Gotify, Matrix, PagerDuty, Opsgenie, ..., and json:// / form:// for anything else).

Each URL is a recipient of the channel: its outcome is kept and a retry goes only to the URLs
still owed. What the outbox stores and shows as a recipient is the URL's *label*, the form Apprise
itself uses in logs (`ntfy://***@host/topic`, `discord://4...8/J...s/`), never the URL: those
carry their service's token.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from datetime import timedelta
from functools import cache
from types import ModuleType
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr

from alerter.records import Delivery, Notice, Outcome
from upwatch.durations import PositiveDuration
from upwatch.masking import MASK, masking

logger = logging.getLogger(__name__)

_MASKS = masking()
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_PIECE = re.compile(r"[^/:@?&=#,+]{4,}")  # user names, tokens, path segments and query values of a URL
_WIKI = "https://github.com/caronc/apprise/wiki"
# Apprise's plain HTTP schemes show their path in full; Slack-style receivers keep their secret there.
_GENERIC = frozenset({"json", "jsons", "form", "forms", "xml", "xmls"})


@cache
def _library() -> ModuleType:
    """Apprise, imported on first use: it loads ~190 service plugins, which `import upwatch.config`
    must not pay for when no channel of this type is configured."""
    import apprise

    # Its own log lines go nowhere: at debug level many plugins print request URLs and payloads,
    # which hold their tokens. What a failure says reaches our logs, scrubbed, through send().
    logging.getLogger("apprise").propagate = False
    return apprise


def _asset(timeout_s: float) -> Any:
    """Apprise settings: no persistent cache on disk, no templates, our time limit per service."""
    return _library().AppriseAsset(storage_mode="memory", allow_templates=False, service_timeout=timeout_s)


def _plugin(url: str, timeout_s: float = 10.0) -> Any:
    """Apprise's plugin for `url`, or None when Apprise cannot use it."""
    return _library().Apprise.instantiate(url, asset=_asset(timeout_s), suppress_exceptions=True)


def problem(url: str) -> str | None:
    """Why Apprise cannot use `url` (None: it can); the message names the scheme, never the URL."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return f"not an Apprise URL: expected SCHEME://..., such as ntfy://host/topic (see {_WIKI})"
    if _plugin(url) is not None:  # also a service's own https:// webhook URL (Discord, Teams Workflows, ...)
        return None
    name = scheme.group(1).lower()
    plugins = _library().NotificationManager()
    if name in ("http", "https"):
        return (f"not a webhook URL Apprise knows: write it as json://, form:// or the service's scheme"
                f" (see {_WIKI})")
    if name not in plugins:
        return f"unknown Apprise service {name}:// (see {_WIKI} for the services and their URLs)"
    service = plugins[name]
    where = getattr(service, "setup_url", None) or _WIKI
    return f"not a valid {service.service_name} URL ({name}://...): see {where}"


def _url(value: str) -> str:
    reason = problem(value)
    if reason is not None:
        raise ValueError(reason)
    return value


AppriseUrl = Annotated[str, AfterValidator(_url)]


def label(plugin: Any) -> str:
    """A URL as the outbox stores and shows it: Apprise's privacy form (tokens cut to their first
    and last character), without its query, with any user:password@ masked as well, and for the
    plain HTTP schemes without the path (as webhook URLs are shown)."""
    shown = str(plugin.url(privacy=True)).partition("?")[0]
    scheme, _, rest = shown.partition("://")
    if scheme.lower() in _GENERIC and "/" in rest.rstrip("/"):
        shown = f"{scheme}://{rest.split('/', 1)[0]}/…"
    return _MASKS.url(shown) or shown


def labels(plugins: Iterable[Any]) -> tuple[str, ...]:
    """One distinct label per URL; a second URL with the same label gets ` #2`, and so on."""
    out: list[str] = []
    seen: dict[str, int] = {}
    for plugin in plugins:
        base = label(plugin) if plugin is not None else "?"
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base} #{seen[base]}")
    return tuple(out)


class Options(BaseModel):
    """An apprise channel: `urls` (Apprise URLs, usually from ${ENV}) and a time limit per send."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)  # filled in from the channel's name in alerting.channels
    urls: tuple[AppriseUrl, ...] = Field(min_length=1, repr=False)  # carry tokens
    timeout: PositiveDuration = Field(default=timedelta(seconds=10), validate_default=True)
    _labels: tuple[str, ...] = PrivateAttr(default=())

    def model_post_init(self, context: Any, /) -> None:
        self._labels = labels(_plugin(u) for u in self.urls)

    @property
    def recipients(self) -> tuple[str, ...]:
        """The URLs' labels: the recipients of each alert. A property, not a field: a route's
        `recipients` (email addresses) do not replace them (see alerter/channels/__init__.py)."""
        return self._labels

    @property
    def timeout_s(self) -> float:
        return self.timeout.total_seconds()

    def url(self, recipient: str) -> str | None:
        """The URL behind a label, None if none has it (any more)."""
        return dict(zip(self._labels, self.urls, strict=True)).get(recipient)


def scrubbed(text: str, url: str, shown: str) -> str:
    """`text` without the parts of `url` that its label `shown` leaves out (its tokens): Apprise's
    messages are mostly safe already, but a plugin may quote what it was given."""
    rest = url.partition("://")[2]
    for piece in sorted(set(_PIECE.findall(rest)), key=len, reverse=True):
        if piece not in shown:
            text = text.replace(piece, MASK)
    return _MASKS.text(text) or text


def notify_type(notice: Notice) -> str:
    """Apprise's colour and icon: failure while anything fires, warning for reminders, success when all resolved."""
    events = {a.event for a in notice.alerts}
    return "failure" if "firing" in events else "warning" if "reminder" in events else "success"


def _reason(result: Any, timeout_s: float) -> str:
    """The last warning Apprise logged for one service, or what its status says."""
    status = result.status.name
    if status == "TIMEOUT":
        return f"no answer within {timeout_s:g} s: it may have arrived"
    said = [e.message for e in result.logs() if e.level in ("WARNING", "ERROR")]
    return said[-1].strip() if said else "Apprise reported a failure"


async def _one(notice: Notice, recipient: str, options: Options) -> Outcome:
    url = options.url(recipient)
    if url is None:
        return Outcome("failed", "no longer one of the channel's urls")
    apprise = _library()
    service = apprise.Apprise(asset=_asset(options.timeout_s))
    # Building the plugin parses the URL and may load plugin modules: off the event loop.
    if not await asyncio.to_thread(service.add, url):
        return Outcome("failed", "Apprise can no longer use this URL")
    try:
        # async_notify runs each plugin's blocking HTTP call in Apprise's own thread pool; the
        # outer bound also covers plugins that ignore the service timeout.
        result = await asyncio.wait_for(
            service.async_notify(body=notice.text, title=notice.subject, notify_type=notify_type(notice),
                                 body_format="text", timeout=options.timeout_s),
            options.timeout_s + 1)
    except TimeoutError:
        return Outcome("uncertain", f"no answer within {options.timeout_s:g} s: it may have arrived")
    if not result.results:
        return Outcome("pending", "Apprise sent nothing")
    outcome = result.results[0]  # a NotifyResult: false unless it succeeded
    if outcome:
        return Outcome("sent")
    reason = scrubbed(_reason(outcome, options.timeout_s), url, recipient)
    return Outcome("uncertain" if outcome.status.name == "TIMEOUT" else "pending", reason)


async def send(notice: Notice, options: Options) -> Delivery:
    """Notify every URL still owed (`notice.owed`, labels), at once; an Outcome per URL. A send that
    fails is retried (Apprise does not tell a refused token from an outage); a URL that is no longer
    configured fails for good. Never raises for network errors."""
    owed = notice.owed or options.recipients  # a notice without recipients (a one-off) goes to every URL
    outcomes = dict(zip(owed, await asyncio.gather(*(_one(notice, r, options) for r in owed)), strict=True))
    failed = {r: o for r, o in outcomes.items() if o.state != "sent"}
    summary = "; ".join(f"{r}: {o.error}" for r, o in failed.items()) or None
    if summary:
        logger.warning("apprise failed channel=%s urls=%d failed=%d error=%r", options.name, len(owed),
                       len(failed), summary)
    if len(failed) < len(owed):
        return Delivery.sent(summary, outcomes)
    return Delivery.failed(summary or "no urls", all(o.state == "failed" for o in failed.values()), outcomes)
