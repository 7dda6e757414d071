"""`alerting.channels`: each entry is validated by the `Options` of its type in CHANNELS, and the
references between channels and routes are checked, all with the usual file:line messages."""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field, ModelWrapValidatorHandler, SerializeAsAny, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from alerter.channels import CHANNELS, email, recipients, takes_recipients, webhook
from upwatch import durations
from upwatch.config.base import Section

Smtp = email.Options  # `alerting.smtp`: the channel named "email"
Webhook = webhook.Options  # an `alerting.webhooks[]` entry: the channel named "webhook:<name>"


class Channel(Section):
    """One `alerting.channels[]` entry: a name, a type registered in CHANNELS and that type's options
    (written next to name and type, validated by the type's `Options`)."""

    name: str = Field(min_length=1)
    type: str
    options: SerializeAsAny[BaseModel]

    @model_validator(mode="wrap")
    @classmethod
    def _typed(cls, data: Any, handler: ModelWrapValidatorHandler[Channel]) -> Channel:
        if not isinstance(data, dict):
            return handler(data)
        kind = data.get("type")
        module = CHANNELS.get(kind) if isinstance(kind, str) else None
        errors: list[InitErrorDetails] = []
        options: BaseModel = _Invalid()  # replaced, or an error is raised
        if module is not None:
            given = {k: v for k, v in data.items() if k not in ("name", "type")}
            if "name" in module.Options.model_fields:  # a bad name is reported once, by the channel
                name = data.get("name")
                given["name"] = name if isinstance(name, str) and name else "?"
            try:
                options = module.Options.model_validate(given)
            except ValidationError as e:
                errors = _option_errors(e, str(kind), module.Options)
        elif isinstance(kind, str):
            errors = [value_error(("type",), f"unknown channel type {kind!r} (types: {', '.join(sorted(CHANNELS))})",
                             kind)]
        try:
            channel = handler({k: data[k] for k in ("name", "type") if k in data} | {"options": options})
        except ValidationError as e:
            errors = typing.cast(list[InitErrorDetails], e.errors()) + errors
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return channel

    @property
    def recipients(self) -> tuple[str, ...]:
        """Its own recipients (for channel types that have them)."""
        return recipients(self.options)


class _Invalid(BaseModel):
    """Stands in for options that did not validate, so the common keys are still checked."""


def value_error(loc: tuple[str | int, ...], message: str, given: Any) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError("value_error", "Value error, {error}", {"error": message}),
                            loc=loc, input=given)


def _option_errors(error: ValidationError, kind: str, model: type[BaseModel]) -> list[InitErrorDetails]:
    """The type's errors, a key it does not take named as such (not "unknown key" among name/type/options)."""
    known = ["name", "type", *(f.alias or n for n, f in model.model_fields.items())]
    out = []
    for err in typing.cast(list[InitErrorDetails], error.errors()):
        if err["type"] != "extra_forbidden":
            out.append(err)
            continue
        key = str(err["loc"][-1])
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        out.append(value_error(err["loc"], f"{key!r} is not an option of channel type {kind}{hint}", err["input"]))
    return out


@dataclass(frozen=True)
class _Declared:
    """A channel as the `alerting` input declares it, for the reference checks."""

    name: str
    type: str
    where: str  # "alerting.channels[2]"
    loc: tuple[str | int, ...]  # of its name


def _dicts(value: Any) -> list[tuple[int, dict[str, Any]]]:
    return [(i, v) for i, v in enumerate(value) if isinstance(v, dict)] if isinstance(value, list) else []


def _declared(data: dict[str, Any]) -> list[_Declared]:
    """Every channel the input declares: `smtp` (if given, or if no channels are), `webhooks`, `channels`."""
    written = _dicts(data.get("channels"))
    out = [_Declared("email", "email", "alerting.smtp", ("smtp",))] if "smtp" in data or not written else []
    out += [_Declared(f"webhook:{w['name']}", "webhook", f"alerting.webhooks[{i}]", ("webhooks", i, "name"))
            for i, w in _dicts(data.get("webhooks")) if isinstance(w.get("name"), str)]
    out += [_Declared(c["name"], str(c.get("type")), f"alerting.channels[{i}]", ("channels", i, "name"))
            for i, c in written if isinstance(c.get("name"), str)]
    return out


def reference_errors(data: dict[str, Any]) -> list[InitErrorDetails]:
    """Duplicate channel names, and routes naming channels or webhooks that are not declared."""
    errors: list[InitErrorDetails] = []
    first: dict[str, _Declared] = {}
    for channel in _declared(data):
        if channel.name in first:
            errors.append(value_error(channel.loc, f"channel names must be unique: {channel.name!r} is also"
                                 f" {first[channel.name].where}", channel.name))
        else:
            first[channel.name] = channel
    for i, route in _dicts(data.get("routes")):
        errors += _route_errors(i, route, first)
    return errors


def _names(value: Any) -> list[tuple[int, str]]:
    return [(j, v) for j, v in enumerate(value) if isinstance(v, str)] if isinstance(value, list) else []


def _route_errors(i: int, route: dict[str, Any], declared: dict[str, _Declared]) -> list[InitErrorDetails]:
    configured = ", ".join(map(repr, declared)) or "none"
    errors = [value_error(("routes", i, "channels", j), f"unknown channel {name!r} (configured: {configured})", name)
              for j, name in _names(route.get("channels")) if name not in declared]
    hooks = ", ".join(repr(n.removeprefix("webhook:")) for n in declared if n.startswith("webhook:")) or "none"
    errors += [value_error(("routes", i, "webhooks", j), f"unknown webhook {name!r} (configured: {hooks})", name)
               for j, name in _names(route.get("webhooks")) if f"webhook:{name}" not in declared]
    takers = [n for _, n in _names(route.get("channels")) if n in declared and takes_recipients(declared[n].type)]
    if route.get("recipients") and "email" not in declared and not takers:
        errors.append(value_error(("routes", i, "recipients"), "recipients need a channel that has recipients:"
                             " name one in channels, or set alerting.smtp", route.get("recipients")))
    return errors


def lifetime_errors(data: dict[str, Any], repeat_interval: timedelta,
                    channels: list[Channel]) -> list[InitErrorDetails]:
    """Alertmanager channels whose firing alerts would end (`ends_after`) before the next reminder
    (`repeat_interval`) posts them again: Alertmanager would resolve alerts that still fire."""
    errors = []
    for i, written in _dicts(data.get("channels")):
        channel = next((c for c in channels if c.name == written.get("name")), None)
        if channel is None or channel.type != "alertmanager":
            continue
        ends_after = getattr(channel.options, "ends_after", None)
        if isinstance(ends_after, timedelta) and ends_after <= repeat_interval:
            errors.append(value_error(("channels", i, "ends_after"), "must be longer than alerting.repeat_interval"
                                      f" ({durations.format(repeat_interval)}), or Alertmanager resolves alerts"
                                      " that still fire between reminders", written.get("ends_after")))
    return errors
