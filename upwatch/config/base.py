"""The base every config section derives from: strict about unknown keys, immutable."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from upwatch.config.hints import instead


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def with_problem(error: ValidationError, data: Any, problem: str | None) -> ValidationError:
    """`error` plus `problem`, a section-level message about its input `data`. A model validator
    that runs after the fields runs only once every field is valid; sections that check what they
    can on the input too report those problems together with the field errors, not after them."""
    if problem is None:
        return error
    extra = InitErrorDetails(type=PydanticCustomError("value_error", "Value error, {error}", {"error": problem}),
                             loc=(), input=data)
    # errors() gives back what from_exception_data takes (type, loc, input, ctx), as pydantic documents
    found = typing.cast(list[InitErrorDetails], error.errors())
    return ValidationError.from_exception_data(error.title, [*found, extra])


def aliases(model: type[BaseModel] | None) -> list[str]:
    """The keys a section is written with."""
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean ...?)' for a close choice, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown(key: str, allowed: Iterable[str]) -> str:
    """The message for a key no section has."""
    allowed = list(allowed)
    return f"unknown key {key!r}{instead(key, allowed) or suggest(key, allowed)}"


def model_at(model: type[BaseModel] | None, loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at `loc` below `model`."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            args = typing.get_args(current)
            current = args[-1] if args else None
            continue
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        current = field.annotation if field else None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """Drop Optional[...] and Annotated[...] wrappers."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            rest = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation
