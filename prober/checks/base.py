"""What a check kind is: a module with `Options` (a CheckOptions) and `run`, registered in CHECKS."""

from __future__ import annotations

import datetime as dt
import re
import typing
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Protocol

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from upwatch.masking import Masking
from upwatch.records import ProbeResult, Target

if TYPE_CHECKING:
    import aiohttp  # for annotations: upwatch.config imports this package, and loading it stays cheap

# Returns a ProbeResult; never raises for network errors (they are results: error_kind + error).
Check = Callable[[Target[Any], "aiohttp.ClientSession"], Awaitable[ProbeResult]]


class CheckOptions(BaseModel):
    """The keys of an endpoint that belong to its kind: strict about unknown keys, immutable.

    A kind overrides what it needs of the rest: `problem` (checks across keys), `timeout_problem`, `target`,
    `summary`, `connects_to`, `revalidate`, `stored` and `merged_defaults`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Keys whose mapping in `defaults:` is merged with the endpoint's own (headers) rather than replaced by it.
    merged_defaults: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def problem(cls, data: Mapping[str, Any]) -> str | None:
        """What the input `data` lacks as a whole (a required pair of keys), if anything. Run on the
        input, so that it is reported together with the keys' own errors, not after they are fixed."""
        return None

    @model_validator(mode="wrap")
    @classmethod
    def _whole(cls, data: Any, handler: ModelWrapValidatorHandler[CheckOptions]) -> CheckOptions:
        problem = cls.problem(data) if isinstance(data, Mapping) else None
        try:
            options = handler(data)
        except ValidationError as e:
            if problem is None:
                raise
            raise _with_problem(e, data, problem) from None
        if problem is not None:
            raise ValueError(problem)
        return options

    def timeout_problem(self, timeout: dt.timedelta) -> str | None:
        """Why the endpoint's `timeout` cannot fit what these options ask for (icmp: count packets
        packet_interval apart), if it cannot; reported at the endpoint's `timeout` key."""
        return None

    @property
    def target(self) -> str:
        """What the check points at, for display and the endpoints table."""
        return ""

    @property
    def summary(self) -> str:
        """The first line of `upwatch probe` after the name and kind."""
        return self.target

    @property
    def connects_to(self) -> str:
        """The host a check connects to, for the per-host concurrency cap."""
        return ""

    @property
    def revalidate(self) -> bool:
        """Whether validating these options read more than the input (a file on disk), so that a
        reload validates them again even when the input is unchanged."""
        return False

    def stored(self, masks: Masking) -> dict[str, Any]:
        """These options as the endpoints table keeps them (Grafana's reader role can read it): secrets masked."""
        masked: dict[str, Any] = masks.json(self.model_dump(mode="json", by_alias=True))
        return masked


def _existing_ca_file(value: Path | None) -> Path | None:
    if value is not None and not value.is_file():
        raise ValueError(f"CA file {str(value)!r} does not exist")
    return value


def _regular_expression(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as e:
            raise ValueError(f"{value!r} is not a regular expression: {e}") from None
    return value


# Option types the kinds share: a CA bundle that must exist when the config is read, and a regular
# expression that must compile (so a typo is a config error at its line, not a failing check).
CaFile = Annotated[Path | None, AfterValidator(_existing_ca_file)]
Pattern = Annotated[str | None, AfterValidator(_regular_expression)]


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str
    password: str = Field(repr=False)


class Auth(BaseModel):
    """`auth:` of an http check (sent) or a push endpoint (required of whoever pushes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    basic: BasicAuth | None = None
    bearer: str | None = Field(default=None, repr=False)


class Kind(Protocol):
    """A check kind module. `run` is None for a kind that is not probed (push: results arrive)."""

    @property
    def Options(self) -> type[CheckOptions]: ...

    @property
    def run(self) -> Check | None: ...


def _with_problem(error: ValidationError, data: Any, problem: str) -> ValidationError:
    extra = InitErrorDetails(type=PydanticCustomError("value_error", "Value error, {error}", {"error": problem}),
                             loc=(), input=data)
    # errors() gives back what from_exception_data takes (type, loc, input, ctx), as pydantic documents
    found = typing.cast(list[InitErrorDetails], error.errors())
    return ValidationError.from_exception_data(error.title, [*found, extra])
