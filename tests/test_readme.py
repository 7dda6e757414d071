"""README.md promises: every config key is documented at its full path, and CI runs the README's test command."""

import re
import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from upwatch.config.schema import Config

REPO = Path(__file__).parents[1]
README = (REPO / "README.md").read_text()

SECTION = re.compile(r"^`(\w+)(?::|(\[\]))`")  # `prober:` or `endpoints[]`, opening a key table
TOP_KEY = re.compile(r"^`(\w+)`: ")  # `log_level`: `INFO` (...)
ROW = re.compile(r"^\| (`[^|]*`) \|")  # the key cell of a table row


def documented_keys(text: str) -> dict[str, str]:
    """Full key paths of the README's config reference (`alerting.smtp.host`, `endpoints[].url`), each
    with the words written in code in its line. In a cell like "`smtp.host` / `port`", a key
    without a dot shares the first key's prefix."""
    reference = text.split("### Reference", 1)[1].split("\n## ", 1)[0]
    keys: dict[str, str] = {}
    section = ""
    for line in reference.splitlines():
        code = " ".join(re.findall(r"`([^`]+)`", line))
        if m := SECTION.match(line):
            section = m[1] + ("[]." if m[2] else ".")
        elif m := TOP_KEY.match(line):
            keys[m[1]] = code
        elif (m := ROW.match(line)) and section:
            names = [n.removesuffix("[]") for n in re.findall(r"`([^`]+)`", m[1])]
            prefix = names[0].rpartition(".")[0]
            keys |= {section + (n if "." in n or not prefix else f"{prefix}.{n}"): code for n in names}
    return keys


def nested(annotation: object) -> tuple[type[BaseModel] | None, bool]:
    """The model inside a field's type (`Model`, `Model | None`, `list[Model]`), and whether it is a list."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return nested(typing.get_args(annotation)[0])
    if origin is list:
        return nested(typing.get_args(annotation)[0])[0], True
    if origin in (typing.Union, types.UnionType):
        found = [nested(a) for a in typing.get_args(annotation) if a is not type(None)]
        return next(((m, many) for m, many in found if m is not None), (None, False))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def flat_options(field: FieldInfo) -> bool:
    """A registered type's options (a channel's), typed only as BaseModel: they are written next to the
    field's siblings (`name`, `type`), not under the field's own name, and documented with their type."""
    return nested(field.annotation)[0] is BaseModel


def schema_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every key path the config accepts, nested sections and list items included."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        if flat_options(field):
            continue
        key = prefix + (field.alias or name)
        keys.add(key)
        inner, many = nested(field.annotation)
        if inner is not None:
            keys |= schema_keys(inner, key + ("[]." if many else "."))
    return keys


def undocumented(model: type[BaseModel], documented: dict[str, str], prefix: str = "") -> list[str]:
    """Keys the reference leaves out. A section may be one row (`alerting.webhooks[]`, `endpoints[].auth`)
    if that row names each of its keys in code."""
    missing: list[str] = []
    for name, field in model.model_fields.items():
        if flat_options(field):
            continue
        key = prefix + (field.alias or name)
        inner, many = nested(field.annotation)
        inside = key + ("[]." if many else ".")
        if key in documented and inner is not None:
            named = set(re.findall(r"\w+", documented[key]))
            missing += [f"{k} (in the row of {key})" for k in sorted(schema_keys(inner, inside))
                        if k.rpartition(".")[2] not in named]
        elif key not in documented:
            missing += [key] if inner is None else undocumented(inner, documented, inside)
    return missing


def test_every_config_key_is_in_the_readme_reference() -> None:
    assert undocumented(Config, documented_keys(README)) == []


def test_every_key_in_the_readme_reference_is_a_config_key() -> None:
    accepted = {k.replace("[].", ".") for k in schema_keys(Config)}
    assert sorted(k for k in documented_keys(README) if k.replace("[].", ".") not in accepted) == []


def test_a_key_counts_only_at_its_full_path() -> None:
    text = ("### Reference\n\n`alerting:`\n\n| key | default | meaning |\n|---|---|---|\n"
            "| `host` / `port` | none | documented at the wrong level |\n"
            "| `delivery.backoff` / `max_age` | `10s` | |\n\n`log_level`: `INFO`\n\n## CLI\n| `x` | |\n")
    assert set(documented_keys(text)) == {"alerting.host", "alerting.port", "alerting.delivery.backoff",
                                          "alerting.delivery.max_age", "log_level"}
    assert "alerting.smtp.host" in undocumented(Config, documented_keys(text))


def test_a_section_in_one_row_names_each_of_its_keys() -> None:
    text = ("### Reference\n\n`alerting:`\n\n| key | default | meaning |\n|---|---|---|\n"
            "| `webhooks[]` | `[]` | `name`, `url`, `format` (`generic` or `slack`), `timeout` |\n")
    missing = undocumented(Config, documented_keys(text))
    assert "alerting.webhooks[].headers (in the row of alerting.webhooks)" in missing
    assert not [k for k in missing if k.startswith("alerting.webhooks[].") and "headers" not in k]


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (REPO / ".ci" / "run").read_text()
    assert "upwatch --config examples/upwatch.yaml up" in commands[0]
