"""`python -m detector` hands everything but `backtest` to `upwatch detector`."""

from __future__ import annotations

import pytest

from detector.__main__ import _as_upwatch


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ["detector"]),
        (["status"], ["detector", "status"]),
        (["-c", "x.yaml"], ["-c", "x.yaml", "detector"]),
        (["-c", "x.yaml", "--log-level", "INFO", "status"],
         ["-c", "x.yaml", "--log-level", "INFO", "detector", "status"]),
        (["--help"], ["--help", "detector"]),
    ],
    ids=["daemon", "status", "config", "config-and-level", "help"],
)
def test_arguments_become_an_upwatch_detector_command(argv: list[str], expected: list[str]) -> None:
    assert _as_upwatch(argv) == expected
