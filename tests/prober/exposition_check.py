"""Read a Prometheus text exposition the way Prometheus's own tools do: prometheus_client's parser, and
`promtool check metrics` where Debian's `prometheus` package put it on PATH."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

PROMTOOL = shutil.which("promtool")


def families(text: str) -> dict[str, Metric]:
    """Families by name; a family the parser saw without `# TYPE` has type 'unknown'."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(text: str, name: str, **labels: str) -> Iterator[Sample]:
    """Samples named `name` (a family name or a histogram's `_bucket` ...) whose labels include `labels`."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                yield sample


def value(text: str, name: str, **labels: str) -> float:
    """The one sample of `name` with `labels`."""
    found = list(samples(text, name, **labels))
    assert len(found) == 1, (name, labels, found)
    return found[0].value


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    """`promtool check metrics` on `text`; the calling test is skipped where promtool is not installed."""
    if PROMTOOL is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    return subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30,
                          check=False)
