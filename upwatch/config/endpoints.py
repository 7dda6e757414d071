"""`endpoints:` what is checked.

An endpoint is written flat (`url:` or `host:` sit next to `name:`), but only the
common keys below belong to it; every other key belongs to its kind and is
validated by that kind's Options (prober.checks.CHECKS). A key of another kind
is an error, not silently ignored.
"""

from __future__ import annotations

import functools
import re
import typing
from typing import Annotated, Any

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    PlainSerializer,
    PlainValidator,
    SerializeAsAny,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from prober.checks import CHECKS, CheckOptions, rdap
from upwatch import conditions
from upwatch.assertions import Assertion
from upwatch.config.base import Section, aliases, model_at, unknown
from upwatch.config.pages import DegradedCondition
from upwatch.durations import Interval, PositiveDuration
from upwatch.masking import Masking

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# Keys of every endpoint, whatever its kind; `options` is where the kind's own keys end up.
COMMON = ("name", "kind", "interval", "timeout", "assertions", "degraded", "tags", "depends_on", "enabled")
_COMMON = frozenset(COMMON)

# Written as a mapping (`status: 200-299`) or a Gatus-style string (`[STATUS] == 200`);
# parsed once here, stored and shown as the text the operator wrote.
AssertionSpec = Annotated[Assertion, PlainValidator(conditions.parse),
                          PlainSerializer(lambda a: a.text, return_type=str)]


class Endpoint(Section):
    name: str
    kind: str = "http"
    interval: Interval = Field(default="15s", validate_default=True)
    timeout: PositiveDuration = Field(default="10s", validate_default=True)
    assertions: list[AssertionSpec] = Field(default_factory=list)
    degraded: list[DegradedCondition] = Field(default_factory=list)  # status pages (docs/pages.md)
    tags: list[str] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)
    enabled: bool = True
    options: SerializeAsAny[CheckOptions] = Field(default_factory=CheckOptions)  # the kind's Options

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} must be 1-100 letters, digits, '.', '_' or '-'")
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _kind_options(cls, data: Any, handler: ModelWrapValidatorHandler[Endpoint]) -> Endpoint:
        """Split the flat input into the common keys and the kind's, validate both, and report every
        problem of the endpoint together."""
        if not isinstance(data, dict) or isinstance(data.get("options"), CheckOptions):
            return handler(data)
        common = {k: v for k, v in data.items() if k in _COMMON}
        kind = data.get("kind", "http")
        options, errors = _options(kind, {k: v for k, v in data.items() if k not in _COMMON})
        try:
            endpoint = handler({**common, "options": options if options is not None else CheckOptions()})
        except ValidationError as e:
            raise ValidationError.from_exception_data(e.title, [*_details(e.errors()), *errors]) from None
        too_short = endpoint.options.timeout_problem(endpoint.timeout)
        if too_short is not None:
            errors.append(_problem(("timeout",), too_short, data.get("timeout")))
        no_domain = rdap.problem(endpoint.kind, endpoint.options, endpoint.assertions)
        if no_domain is not None:
            errors.append(_problem(("assertions", no_domain[0]), no_domain[1], None))
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return endpoint

    @model_serializer(mode="wrap")
    def _flat(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Dumped flat, as written: the kind's keys next to the common ones."""
        data: dict[str, Any] = handler(self)
        options = data.pop("options", None)
        return {**data, **options} if isinstance(options, dict) else data

    @property
    def target(self) -> str:
        """What the check points at, for display and the endpoints table."""
        return self.options.target

    def stored(self, masks: Masking) -> dict[str, Any]:
        """The settings as the endpoints table keeps them (Grafana's reader role reads it): flat, as
        written, secrets masked (the kind knows which of its keys hold them); deterministic."""
        data = self.model_dump(mode="json", by_alias=True, exclude={"name", "kind", "tags", "enabled", "options"})
        data["assertions"] = [masks.assertion(a) for a in data["assertions"]]
        data.update(self.options.stored(masks))
        return data


def kind_options(kind: object) -> type[CheckOptions] | None:
    """The Options of a registered kind; None for an unknown one."""
    check = CHECKS.get(kind) if isinstance(kind, str) else None
    return None if check is None else check.Options


def keys() -> frozenset[str]:
    """Every key an endpoint of some kind may have: what `defaults:` may set."""
    return _COMMON.union(*(_keys(c.Options) for c in CHECKS.values()))


@functools.lru_cache(maxsize=64)
def _keys(options: type[CheckOptions]) -> frozenset[str]:
    return frozenset(aliases(options))


def _options(kind: object, data: dict[str, Any]) -> tuple[CheckOptions | None, list[InitErrorDetails]]:
    """The kind's Options from the endpoint's other keys, or the problems with them (locations as
    the endpoint's: the keys are written flat)."""
    check = CHECKS.get(kind) if isinstance(kind, str) else None
    if check is None:
        known = ", ".join(CHECKS)
        return None, [_problem(("kind",), f"unknown kind {kind!r} (use one of {known})", kind)]
    try:
        return check.Options.model_validate(data), []
    except ValidationError as e:
        return None, [_foreign(err, str(kind), check.Options) if err["type"] == "extra_forbidden" else _detail(err)
                      for err in e.errors()]


def _foreign(err: ErrorDetails, kind: str, options: type[CheckOptions]) -> InitErrorDetails:
    """An unknown key: one of another kind ("... is not an option of kind http"), or a typo."""
    loc, key = err["loc"], str(err["loc"][-1])
    if len(loc) == 1 and any(key in _keys(c.Options) for c in CHECKS.values()):
        return _problem(loc, f"{key} is not an option of kind {kind}", err["input"])
    allowed = [*COMMON, *aliases(options)] if len(loc) == 1 else aliases(model_at(options, loc[:-1]))
    return _problem(loc, unknown(key, allowed), err["input"])


def _problem(loc: tuple[int | str, ...], message: str, given: Any) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError("value_error", "Value error, {error}", {"error": message}),
                            loc=loc, input=given)


def _detail(err: ErrorDetails) -> InitErrorDetails:
    # errors() gives back what from_exception_data takes (type, loc, input, ctx), as pydantic documents
    return typing.cast(InitErrorDetails, err)


def _details(errors: list[ErrorDetails]) -> list[InitErrorDetails]:
    return typing.cast(list[InitErrorDetails], errors)
