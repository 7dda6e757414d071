from datetime import timedelta

import pytest

from upwatch import durations


@pytest.mark.parametrize(("text", "expected"), [
    ("15s", timedelta(seconds=15)), ("5m", timedelta(minutes=5)), ("1h", timedelta(hours=1)),
    ("7d", timedelta(days=7)), ("1h30m", timedelta(minutes=90)), ("250ms", timedelta(milliseconds=250)),
    (30, timedelta(seconds=30)), ("1.5s", timedelta(seconds=1.5)),
], ids=["s", "m", "h", "d", "compound", "ms", "number", "fraction"])
def test_parse(text: str | int, expected: timedelta) -> None:
    assert durations.parse(text) == expected


@pytest.mark.parametrize("text", ["", "5", "fast", "5 parsecs", "m5", "1h 5"], ids=str)
def test_parse_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        durations.parse(text)


@pytest.mark.parametrize(("value", "text"), [
    (timedelta(seconds=15), "15s"), (timedelta(minutes=90), "1h30m"), (timedelta(days=7), "7d"),
    (timedelta(milliseconds=1500), "1500ms"), (timedelta(0), "0s"),
], ids=["s", "hm", "d", "ms", "zero"])
def test_format_round_trips(value: timedelta, text: str) -> None:
    assert durations.format(value) == text
    assert durations.parse(text) == value
