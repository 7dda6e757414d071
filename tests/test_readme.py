"""README.md promises: every config key is documented, and CI runs the README's test command."""

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from upwatch.config.schema import Config

REPO = Path(__file__).parents[1]
README = (REPO / "README.md").read_text()


def leaf_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        nested = [a for a in (field.annotation, *typing.get_args(field.annotation))
                  if isinstance(a, type) and issubclass(a, BaseModel)]
        if nested and isinstance(field.default, BaseModel):
            keys += leaf_keys(nested[0], f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def test_every_config_key_is_in_the_readme_reference() -> None:
    missing = [k for k in leaf_keys(Config) if not re.search(rf"[`.]{re.escape(k.rsplit('.', 1)[-1])}\b", README)]
    assert missing == []


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (REPO / ".ci" / "run").read_text()
    assert "upwatch --config examples/upwatch.yaml up" in commands[0]
