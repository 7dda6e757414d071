"""Configuration: one YAML file, `${VAR}` expansion, env overrides, strict validation.

`load()` returns a frozen `Config` or raises `ConfigError` whose lines each name
file, line and key.
"""

from upwatch.config.cache import EndpointCache
from upwatch.config.loader import (
    ENV_OVERRIDES,
    ConfigError,
    Problem,
    load,
    parse,
    resolve_path,
)
from upwatch.config.schema import Config

__all__ = ["ENV_OVERRIDES", "Config", "ConfigError", "EndpointCache", "Problem", "load", "parse", "resolve_path"]
