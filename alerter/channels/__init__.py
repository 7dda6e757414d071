"""Notification channel types. CHANNELS is the only place a type is registered: upwatch.config
validates `alerting.channels[].type` against it and the rest of each entry against the type's
`Options`; the outbox sends through it.

The contract of a channel module (see docs/alerter.md, "Adding a channel"):

- `Options`: a pydantic model with `extra="forbid", frozen=True`, the keys an entry of this type
  takes besides `name` and `type`. Two field names mean something: `name`, if declared, is given
  the channel's name (for messages); `recipients`, if declared, makes it a per-recipient channel:
  each recipient's outcome is kept and a retry goes only to those still owed (`notice.owed`).
  A `recipients` property instead (apprise: a label per URL) keeps the per-recipient outcomes,
  but a route's `recipients` (email addresses) do not replace it.
- `async def send(notice: Notice, options: Options) -> Delivery`: deliver one notice. Never raises
  for transport errors: return `Delivery.failed(reason, permanent=...)`, permanent when a retry
  cannot help (the receiver said no for good). Errors it returns are stored and shown: keep
  secrets (tokens in URLs, passwords) out of them.

Channel modules import only ground modules (`upwatch.*` except config and cli) and the
alerter's records: never upwatch.config, which imports this registry.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel

from alerter.channels import alertmanager, apprise, email, webhook
from alerter.records import Delivery, Notice


class ChannelType(Protocol):
    """What CHANNELS holds: a module (or any object) with `Options` and `send`."""

    @property
    def Options(self) -> type[BaseModel]: ...

    async def send(self, notice: Notice, options: Any, /) -> Delivery: ...


CHANNELS: dict[str, ChannelType] = {"email": email, "webhook": webhook, "apprise": apprise,
                                   "alertmanager": alertmanager}


def takes_recipients(kind: str) -> bool:
    """Whether channels of type `kind` have recipients of their own (an Options field `recipients`)."""
    module = CHANNELS.get(kind)
    return module is not None and "recipients" in module.Options.model_fields


def recipients(options: BaseModel) -> tuple[str, ...]:
    """The recipients a channel's options name (none for channels without recipients)."""
    value = getattr(options, "recipients", ())
    return tuple(str(r) for r in value)
