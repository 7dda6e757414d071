"""YAML merge keys (`<<: *defaults`, `<<: [*a, *b]`) resolved on the composed node tree.

Resolving them on nodes, not on constructed values, keeps every key's start mark: a problem in
a merged setting is reported at the line where that setting is written (under the anchor),
with the key path of the mapping it was merged into. Top-level `x-` keys (the docker-compose
convention for "extension fields") are dropped afterwards, so anchors have somewhere to live.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
EXTENSION_PREFIX = "x-"

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class MergeProblem:
    line: int
    path: Path_  # the mapping the bad `<<` is in
    message: str


def resolve(root: yaml.Node, text: str) -> list[MergeProblem]:
    """Replace every `<<` in `root` (in place) by the keys it merges: the mapping's own keys win,
    then the aliases in the order written. `text`: the YAML `root` was composed from. Returns what
    could not be merged; empty when all is well."""
    merger = _Merger()
    # Without `<<` there is nothing to merge, and without `*` no alias that could contain itself:
    # the walk (about a tenth of the load of a 50,000-endpoint file) is skipped.
    if "<<" in text or "*" in text:
        merger.walk(root, ())
    if isinstance(root, yaml.MappingNode):
        root.value = [(k, v) for k, v in root.value if not _is_extension(k)]
    return merger.problems


def _is_extension(key: yaml.Node) -> bool:
    return isinstance(key, yaml.ScalarNode) and key.tag == _STR_TAG and key.value.startswith(EXTENSION_PREFIX)


class _Merger:
    def __init__(self) -> None:
        self.problems: list[MergeProblem] = []
        self._done: set[int] = set()  # an aliased node is resolved once, wherever it is used
        self._open: set[int] = set()  # nodes being resolved: meeting one again is a recursive alias

    def walk(self, node: yaml.Node, path: Path_) -> bool:
        """Resolve `node` and everything below it; False if it contains itself (a recursive alias)."""
        if id(node) in self._open:
            return False
        if id(node) in self._done or isinstance(node, yaml.ScalarNode):
            return True
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                self._mapping(node, path)
            elif isinstance(node, yaml.SequenceNode):
                for i, item in enumerate(node.value):
                    if not isinstance(item, yaml.ScalarNode):  # most nodes: skipped here, where it is cheapest
                        self._child(item, (*path, i), node, item.start_mark.line + 1)
        finally:
            self._open.discard(id(node))
        self._done.add(id(node))
        return True

    def _child(self, node: yaml.Node, path: Path_, parent: yaml.Node, line: int) -> None:
        """`line`: where `node` is used, which for an alias is not where the node is (the anchor)."""
        if not self.walk(node, path):
            self.problems.append(MergeProblem(line, path, "recursive alias: this value contains itself"))
            parent.value = []  # the reader must not follow the cycle

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> None:
        own: list[tuple[yaml.Node, yaml.Node]] = []
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        for key, value in node.value:
            if key.tag == _MERGE_TAG:
                merged += self._sources(key, value, path)
            else:
                own.append((key, value))
                if not isinstance(value, yaml.ScalarNode):
                    self._child(value, (*path, _name(key)), node, key.start_mark.line + 1)
        if not merged:
            node.value = own
            return
        seen = {_name(k) for k, _ in own}
        inherited = []
        for key, value in merged:
            if _name(key) not in seen:  # the first mapping that sets a key wins, as YAML specifies
                seen.add(_name(key))
                inherited.append((key, value))
        node.value = inherited + own

    def _sources(self, key: yaml.Node, value: yaml.Node, path: Path_) -> list[tuple[yaml.Node, yaml.Node]]:
        """The key/value pairs a `<<` brings in, from a mapping or a list of mappings."""
        sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
        pairs: list[tuple[yaml.Node, yaml.Node]] = []
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                self.problems.append(MergeProblem(
                    key.start_mark.line + 1, path,
                    "a merge key (<<) takes a mapping or a list of mappings, such as *defaults or [*a, *b]"))
                continue
            if not self.walk(source, path):
                self.problems.append(MergeProblem(key.start_mark.line + 1, path,
                                                  "recursive alias: a mapping merges itself"))
                continue
            pairs += source.value
        return pairs


def _name(key: yaml.Node) -> str:
    """A key's text for the path and for telling keys apart (non-scalar keys are rejected later)."""
    return str(key.value) if isinstance(key, yaml.ScalarNode) else f"<{type(key).__name__}@{key.start_mark.line + 1}>"
