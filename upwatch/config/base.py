"""The base every config section derives from: strict about unknown keys, immutable."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError


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
