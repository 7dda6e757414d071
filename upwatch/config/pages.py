"""`status_pages:` status pages served by the prober's listener (prober/pages)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, PlainSerializer, PlainValidator, field_validator, model_validator

from upwatch import conditions
from upwatch.assertions import Assertion, Placeholder
from upwatch.config.base import Section

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
# What a stored check keeps (probe_results), so what the pages can judge a `degraded` condition on.
_STORED = {"status": "[STATUS]", "response_time": "[RESPONSE_TIME]", "cert_expiration": "[CERTIFICATE_EXPIRATION]"}


def _degraded(item: Any) -> Assertion:
    """A condition under which a successful check shows as degraded, e.g. `[RESPONSE_TIME] > 800`."""
    if not isinstance(item, str):  # a mapping (`max_latency: 300ms`) reads as the healthy case, the opposite
        raise ValueError("a degraded condition is a string that holds when degraded, like '[RESPONSE_TIME] > 800'")
    condition = conditions.parse_condition(item)
    subjects = [condition.subject]
    if isinstance(condition.expected, Placeholder):
        subjects.append(condition.expected.subject)
    if any(s.kind not in _STORED for s in subjects):
        raise ValueError(f"{condition.text!r}: a degraded condition is judged on the stored check, so it may use "
                         f"{', '.join(_STORED.values())} only")
    return condition


# An endpoint's `degraded:` list (upwatch/config/endpoints.py): the newest check succeeded, but one of these
# holds, so the status pages show it as degraded rather than up. Written like `assertions`.
DegradedCondition = Annotated[Assertion, PlainValidator(_degraded), PlainSerializer(lambda a: a.text, return_type=str)]


class Group(Section):
    """A heading on the page and the endpoints under it: named ones, then those with any of the tags."""

    name: str = Field(min_length=1, max_length=200)
    endpoints: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _selects(self) -> Group:
        if not self.endpoints and not self.tags:
            raise ValueError("a group selects endpoints, tags or both")
        return self


class StatusPage(Section):
    slug: str
    title: str = Field(min_length=1, max_length=200)
    description: str = ""
    # Endpoints outside any group, shown first under the page title.
    endpoints: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    groups: list[Group] = Field(default_factory=list)
    public: bool = True
    # A private page (and its badges and read API data) needs this token, as a bearer token or as the
    # password of HTTP basic auth (any user name). Put it in the environment: token: ${STATUS_TOKEN}.
    token: str | None = Field(default=None, min_length=16, repr=False)
    # Show the alerter's DOWN alerts that are firing as incidents, beside those operators post.
    alert_incidents: bool = True

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError(f"{value!r} must be 1-64 lower-case letters, digits or '-',"
                             " starting with a letter or digit")
        return value

    @model_validator(mode="after")
    def _shape(self) -> StatusPage:
        if not self.endpoints and not self.tags and not self.groups:
            raise ValueError("a status page selects endpoints, tags or groups")
        if not self.public and not self.token:
            raise ValueError("a private page (public: false) needs a token")
        if self.public and self.token:
            raise ValueError("token is only for private pages (public: false)")
        return self


def _unique_slugs(pages: list[StatusPage]) -> list[StatusPage]:
    seen: set[str] = set()
    for page in pages:
        if page.slug in seen:
            raise ValueError(f"slug {page.slug!r} is used by more than one page")
        seen.add(page.slug)
    return pages


StatusPages = Annotated[list[StatusPage], AfterValidator(_unique_slugs)]
