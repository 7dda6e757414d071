"""Read upwatch.yaml: expand ${VARS}, apply defaults and env overrides, validate,
and report every problem at once with the file, line and key it concerns."""

from __future__ import annotations

import contextlib
import gc
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from upwatch.config.base import aliases, model_at, suggest, unknown
from upwatch.config.cache import EndpointCache
from upwatch.config.endpoints import COMMON, kind_options
from upwatch.config.endpoints import keys as endpoint_keys
from upwatch.config.schema import Config
from upwatch.config.yamlmerge import resolve as resolve_merge_keys
from upwatch.masking import MASK, masking

Path_ = tuple[str | int, ...]

DEFAULT_PATH = Path("upwatch.yaml")
# libyaml's parser (in PyYAML's wheels) composes the same nodes, marks included, about 10x faster
# than the pure-Python one, which alone took ~30 s for a 50,000-endpoint file.
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG = "tag:yaml.org,2002:str"
_MASKS = masking()  # error messages are logged and printed: they quote no secret
# Settings whose names look secret by the masking rules but whose values are not (a new such
# setting merely gets its value left out of its error messages).
_NOT_SECRETS = frozenset({"rate_limit_per_key", "key_outage_grace", "secret_names"})
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# Environment variables that override a setting, whatever the file says.
ENV_OVERRIDES: dict[str, Path_] = {
    "UPWATCH_DATABASE_URL": ("storage", "database_url"),
    "UPWATCH_LOG_LEVEL": ("log_level",),
    "UPWATCH_SMTP_HOST": ("alerting", "smtp", "host"),
    "UPWATCH_SMTP_PORT": ("alerting", "smtp", "port"),
    "UPWATCH_SMTP_USER": ("alerting", "smtp", "username"),
    "UPWATCH_SMTP_PASSWORD": ("alerting", "smtp", "password"),
    "UPWATCH_SMTP_FROM": ("alerting", "smtp", "sender"),
    "UPWATCH_SMTP_TO": ("alerting", "smtp", "recipients"),
    "UPWATCH_SMTP_TLS": ("alerting", "smtp", "tls"),
}


@dataclass(frozen=True)
class Problem:
    where: str  # "upwatch.yaml:14", "upwatch.yaml" or "$UPWATCH_SMTP_PORT"
    key: str  # "endpoints[2].interval", or "" for the whole file
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.key}: {self.message}" if self.key else f"{self.where}: {self.message}"


@dataclass(frozen=True)
class _Inherited:
    """The defaults an endpoint of one kind inherits: the common ones and those of its kind."""

    values: dict[str, Any]
    merged: frozenset[str]  # keys whose mapping is merged with the endpoint's own (headers)

    @classmethod
    def of(cls, kind: str | None, defaults: dict[str, Any]) -> _Inherited:
        options = kind_options(kind)
        own = set(COMMON) | (set(aliases(options)) if options is not None else set())
        return cls({k: v for k, v in defaults.items() if k in own},
                   options.merged_defaults if options is not None else frozenset())


class ConfigError(Exception):
    """Every problem found in a configuration, one per line."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(dict.fromkeys(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


def resolve_path(path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path:
    """--config wins, then $UPWATCH_CONFIG, then ./upwatch.yaml."""
    if path:
        return Path(path)
    return Path(environ.get("UPWATCH_CONFIG") or DEFAULT_PATH)


def load(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None, *,
         cache: EndpointCache | None = None) -> Config:
    """Load and validate a config file; raise ConfigError listing every problem. `cache`: the same
    for every load of one file, to skip validating endpoints whose input did not change."""
    env = os.environ if environ is None else environ
    file = resolve_path(path, env)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([Problem(str(file), "", f"cannot read config file: {e.strerror or e}")]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([Problem(str(file), "", f"not UTF-8 text: {e.reason}")]) from None
    return parse(text, str(file), env, cache=cache)


def parse(text: str, filename: str, environ: Mapping[str, str], *, cache: EndpointCache | None = None) -> Config:
    """Validate config text; `filename` is only used in messages."""
    with _collector_paused():
        return _parse(text, filename, environ, cache)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Loading allocates a few objects per line, all alive until it ends: with the cyclic collector
    on, each of its full passes walks them all again, and a 50,000-endpoint file took twice as long."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _parse(text: str, filename: str, environ: Mapping[str, str], cache: EndpointCache | None) -> Config:
    reader = _Reader(filename, environ)
    try:
        root = _compose(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{filename}:{mark.line + 1}" if mark else filename
        column = f" (column {mark.column + 1})" if mark else ""
        raise ConfigError([Problem(where, "", f"invalid YAML: {e.problem or e.context}{column}")]) from None
    except yaml.YAMLError as e:
        raise ConfigError([Problem(filename, "", f"invalid YAML: {e}")]) from None
    merging = resolve_merge_keys(root, text) if root is not None else []
    if merging:
        raise ConfigError([Problem(f"{filename}:{p.line}", _dotted(p.path), p.message) for p in merging])
    data = reader.value(root, ()) if root is not None else {}
    if not isinstance(data, dict):
        raise ConfigError([Problem(f"{filename}:1", "", "the top level must be a mapping of sections")])
    reader.apply_defaults(data)
    reader.apply_env_overrides(data)
    reader.check_references(data)
    inputs = data.get("endpoints")
    if cache is not None and isinstance(inputs, list):
        data["endpoints"] = cache.substitute(inputs)
    config = None
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        reader.problems.extend(reader.from_pydantic(err) for err in e.errors())
    if reader.problems or config is None:
        raise ConfigError(sorted(reader.problems, key=_file_order))
    if cache is not None:
        cache.remember(inputs if isinstance(inputs, list) else [], config.endpoints)
    return config


def _compose(text: str) -> yaml.Node | None:
    """The YAML node tree, composed by libyaml; invalid YAML is parsed again by PyYAML's own parser,
    whose messages are the clearer ones ("expected ',' or ']', but got '<stream end>'")."""
    try:
        return yaml.compose(text, Loader=_YAML_LOADER)
    except yaml.YAMLError:
        if _YAML_LOADER is yaml.SafeLoader:
            raise
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _file_order(problem: Problem) -> tuple[int, int]:
    line = problem.where.rpartition(":")[2]
    return (0, int(line)) if line.isdigit() else (1, 0)


class _Reader:
    def __init__(self, filename: str, environ: Mapping[str, str]):
        self.filename = filename
        self.environ = environ
        self.lines: dict[Path_, int] = {}
        self.sources: dict[Path_, str] = {}  # path -> "$VAR" for env overrides
        self.expanded: set[Path_] = set()  # values with a ${VAR} in them: the environment holds the secrets
        self.display: dict[Path_, Path_] = {}  # endpoint key inherited from defaults -> defaults key
        self.problems: list[Problem] = []
        self._constructor = yaml.constructor.SafeConstructor()

    def where(self, path: Path_) -> str:
        for i in range(len(path), -1, -1):
            if path[:i] in self.sources:
                return self.sources[path[:i]]
            if path[:i] in self.lines:
                return f"{self.filename}:{self.lines[path[:i]]}"
        return self.filename

    def problem(self, path: Path_, message: str) -> None:
        self.problems.append(Problem(self.where(path), _dotted(path), message))

    def value(self, node: yaml.Node, path: Path_) -> Any:
        """The plain value of `node`, recording the line of every key and list item below `path`."""
        self.lines.setdefault(path, node.start_mark.line + 1)
        return self._value(node, path)

    def _value(self, node: yaml.Node, path: Path_) -> Any:
        # Called once per node of the file (hundreds of thousands for a large one): each child's line
        # is recorded here, where it is known, rather than by a setdefault in the child.
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self._scalar(key_node)
                sub = (*path, key)
                if key in out:
                    self.problem(sub, f"duplicate key (first at line {self.lines[sub]})")
                    continue
                self.lines[sub] = key_node.start_mark.line + 1
                out[key] = self._value(value_node, sub)
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                sub = (*path, i)
                self.lines[sub] = item.start_mark.line + 1
                items.append(self._value(item, sub))
            return items
        value = node.value if node.tag == _STR_TAG else self._scalar(node)
        if isinstance(value, str) and "$" in value:
            return self.expand(value, path)
        return value

    def _scalar(self, node: yaml.Node) -> Any:
        if node.tag == _STR_TAG:  # most scalars: no need for the constructor's bookkeeping
            return node.value
        return self._constructor.construct_object(node, deep=True)

    def expand(self, text: str, path: Path_) -> str:
        def substitute(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name, default = m.group(1), m.group(2)
            self.expanded.add(path)
            value = self.environ.get(name)
            if value is None or (value == "" and default is not None):
                if default is not None:
                    return default
                self.problem(path, f"environment variable {name} is not set")
                return ""
            return value

        return _VAR.sub(substitute, text)

    def apply_defaults(self, data: dict[str, Any]) -> None:
        """Give every endpoint the `defaults:` it does not set itself and its kind has."""
        defaults = data.pop("defaults", None)
        if defaults is None:
            return
        if not isinstance(defaults, dict):
            self.problem(("defaults",), "must be a mapping of endpoint settings")
            return
        allowed = endpoint_keys() - {"name"}
        for key in list(defaults):
            if key not in allowed:
                self.problem(("defaults", key), unknown(key, allowed))
                del defaults[key]
        endpoints = data.get("endpoints")
        if not isinstance(endpoints, list):
            return
        # Lines of every node under each default, collected once and copied to each endpoint that
        # inherits it: scanning all lines per endpoint made loading quadratic (issue #17).
        lines_under: dict[Any, list[tuple[Path_, int]]] = {key: [] for key in defaults}
        for sub, line in self.lines.items():
            if len(sub) >= 2 and sub[0] == "defaults" and sub[1] in lines_under:
                lines_under[sub[1]].append((sub[1:], line))
        by_kind: dict[object, _Inherited] = {}
        for i, endpoint in enumerate(endpoints):
            if isinstance(endpoint, dict):
                kind = endpoint.get("kind", defaults.get("kind", "http"))
                if not isinstance(kind, str | None):
                    kind = None  # an invalid kind gets the common defaults only (and its own error)
                inherited = by_kind.get(kind) or by_kind.setdefault(kind, _Inherited.of(kind, defaults))
                self._inherit(i, endpoint, inherited, lines_under)

    def _inherit(self, i: int, endpoint: dict[str, Any], inherited: _Inherited,
                 lines_under: dict[Any, list[tuple[Path_, int]]]) -> None:
        """Give endpoint `i` every default it does not set, with the defaults' lines for its messages."""
        at: Path_ = ("endpoints", i)
        for key, value in inherited.values.items():
            own = endpoint.get(key)
            if key in inherited.merged and isinstance(value, dict) and isinstance(own, dict):
                endpoint[key] = {**value, **own}
                for name in value.keys() - own.keys():
                    self._point_at_default(at, (key, name))
            elif key not in endpoint:
                endpoint[key] = value
                self.display[(*at, key)] = ("defaults", key)
                for suffix, line in lines_under[key]:
                    self.lines[at + suffix] = line

    def _point_at_default(self, at: Path_, suffix: Path_) -> None:
        self.display[at + suffix] = ("defaults", *suffix)
        line = self.lines.get(("defaults", *suffix))
        if line is not None:
            self.lines[at + suffix] = line

    def apply_env_overrides(self, data: dict[str, Any]) -> None:
        for name, path in ENV_OVERRIDES.items():
            raw = self.environ.get(name)
            if raw is None or raw == "":
                continue
            value: Any = [r.strip() for r in raw.split(",") if r.strip()] if path[-1] == "recipients" else raw
            node = data
            for part in path[:-1]:
                child = node.get(str(part))
                if not isinstance(child, dict):
                    child = node[str(part)] = {}
                node = child
            node[str(path[-1])] = value
            self.sources[path] = f"${name}"

    def from_pydantic(self, err: Mapping[str, Any]) -> Problem:
        loc: Path_ = tuple(err["loc"])
        shown = loc
        for i in range(len(loc), 0, -1):
            if loc[:i] in self.display:
                shown = self.display[loc[:i]] + loc[i:]
                break
        if err["type"] == "extra_forbidden":
            message = unknown(str(loc[-1]), aliases(model_at(Config, loc[:-1])))
        else:
            message = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
            given = err.get("input")
            if self._secret(loc):
                message = _hidden(message, given)
            elif (err["type"] != "value_error" and isinstance(given, str | int | float | bool)
                  and "missing" not in err["type"]):
                message += f" (got {given!r})"
        return Problem(self.where(loc), _dotted(shown), _MASKS.text(message) or message)

    def _secret(self, loc: Path_) -> bool:
        """Whether the value at `loc` may be a secret: a secret-looking key on its path (auth, password,
        Authorization, api_key ...) or a value with a ${VAR} in it (secrets come from the environment;
        the UPWATCH_* overrides are named settings, judged by their keys)."""
        return (any(isinstance(part, str) and part not in _NOT_SECRETS and _MASKS.header(part) for part in loc)
                or any(loc[:i] in self.expanded for i in range(1, len(loc) + 1)))

    def check_references(self, data: dict[str, Any]) -> None:
        """Duplicate endpoint names and unknown depends_on targets, checked on the raw data
        so they are reported together with every other problem."""
        endpoints = data.get("endpoints")
        if not isinstance(endpoints, list):
            return
        named = [(i, e["name"]) for i, e in enumerate(endpoints)
                 if isinstance(e, dict) and isinstance(e.get("name"), str)]
        seen: dict[str, int] = {}
        for i, name in named:
            if name in seen:
                first = self.lines.get(("endpoints", seen[name], "name"), 0)
                self.problem(("endpoints", i, "name"), f"duplicate endpoint name {name!r} (first at line {first})")
            else:
                seen[name] = i
        for i, name in named:
            parents = endpoints[i].get("depends_on")
            for j, parent in enumerate(parents if isinstance(parents, list) else []):
                if parent == name:
                    self.problem(("endpoints", i, "depends_on", j), "an endpoint cannot depend on itself")
                elif parent not in seen:
                    self.problem(("endpoints", i, "depends_on", j),
                                 f"unknown endpoint {parent!r}{suggest(str(parent), seen)}")


def _hidden(message: str, given: Any) -> str:
    """`message` without the value it is about: what is wrong is said, the secret is not repeated."""
    if isinstance(given, str) and given:
        return message.replace(repr(given), MASK).replace(given, MASK)
    return message


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
