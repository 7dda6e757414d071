"""Endpoints validated by an earlier load of the same file, kept with the input each came from.

A reload of a large file re-validated every endpoint for one edit; with a cache, an
endpoint whose input (after defaults and ${VAR} expansion) is unchanged is taken as
it was. Endpoints whose validation read more than the input (an http `ca_file`: the
file system; see CheckOptions.revalidate) are always validated again.
"""

from __future__ import annotations

from typing import Any

from upwatch.config.endpoints import Endpoint


class EndpointCache:
    """Pass the same cache to every `load()` of one file."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[dict[str, Any], Endpoint]] = {}

    def substitute(self, inputs: list[Any]) -> list[Any]:
        """`inputs`, with each endpoint whose input is unchanged replaced by its validated Endpoint."""
        out = []
        for raw in inputs:
            name = raw.get("name") if isinstance(raw, dict) else None
            known = self._known.get(name) if isinstance(name, str) else None
            out.append(known[1] if known is not None and known[0] == raw else raw)
        return out

    def remember(self, inputs: list[Any], endpoints: list[Endpoint]) -> None:
        """Keep the inputs of a load that validated, with the endpoints made from them."""
        self._known = {e.name: (raw, e) for raw, e in zip(inputs, endpoints, strict=True)
                       if isinstance(raw, dict) and not e.options.revalidate}

    def adopt(self, running: list[Endpoint]) -> bool:
        """Hand out the `running` Endpoint objects for entries equal to them, so that the caller's
        next comparisons of old and new endpoints are identity checks. True when every running
        endpoint was found equal (the file says what runs)."""
        by_name = {e.name: e for e in running}
        matched = 0
        for name, (raw, endpoint) in self._known.items():
            same = by_name.get(name)
            if same is not None and (same is endpoint or same == endpoint):
                self._known[name] = (raw, same)
                matched += 1
        return matched == len(self._known) == sum(not e.options.revalidate for e in running)

    def __len__(self) -> int:
        return len(self._known)
