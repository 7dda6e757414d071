"""Notification channels. A channel is one module with `Options`, `options(alerting, target)`
and `async def send(notice, options) -> Delivery` that never raises for delivery errors."""

from __future__ import annotations

from types import ModuleType

from alerter.channels import email, webhook

CHANNELS: dict[str, ModuleType] = {"email": email, "webhook": webhook}


def split(channel: str) -> tuple[str, str]:
    """'webhook:ops' -> ('webhook', 'ops'); 'email' -> ('email', '')."""
    kind, _, target = channel.partition(":")
    return kind, target
