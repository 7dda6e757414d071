"""Temporary files an interrupted save left in model_dir are removed at start; nothing else is."""

from __future__ import annotations

import os
import time
from pathlib import Path

from detector import artifacts


def test_sweep_removes_old_leftovers_only(tmp_path: Path) -> None:
    model = artifacts.path_for(tmp_path, "endpoint:api:latency_ms")
    model.write_bytes(b"a model")
    old = tmp_path / f".{model.name}.abc123"  # the name save()'s mkstemp gives
    old.write_bytes(b"half a model")
    fresh = tmp_path / f".{model.name}.def456"  # another detector may be saving it right now
    fresh.write_bytes(b"being written")
    other = tmp_path / ".keep-me"
    other.write_bytes(b"not ours")
    hour_ago = time.time() - artifacts.LEFTOVER_AGE_S - 60
    for path in (model, old, other):
        os.utime(path, (hour_ago, hour_ago))

    assert artifacts.sweep(tmp_path) == 1

    assert not old.exists()
    assert model.read_bytes() == b"a model"
    assert fresh.exists() and other.exists()


def test_sweep_of_a_missing_directory_is_nothing(tmp_path: Path) -> None:
    assert artifacts.sweep(tmp_path / "never-created") == 0
