"""bench/detector_quality.py reads labelled public series in both layouts it documents: NAB's windows
and a Label column (Microsoft's Cloud Monitoring Dataset), the latter grouped as live incidents are;
and names a mistyped option before it runs anything."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "detector_quality.py"


@pytest.fixture(scope="module")
def quality() -> ModuleType:
    spec = importlib.util.spec_from_file_location("detector_quality", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _label_csv(path: Path, step: str, labels: list[int]) -> list[pd.Timestamp]:
    stamps = list(pd.date_range("2018-06-17", periods=len(labels), freq=step, tz="UTC"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("TimeStamp,Value,Label\n" + "".join(
        f'"{t:%Y-%m-%dT%H:%M:%SZ}",{10 + 5 * label},{label}\n' for t, label in zip(stamps, labels, strict=True)))
    return stamps


def test_labelled_rows_no_more_than_the_incident_gap_apart_are_one_incident(tmp_path: Path,
                                                                             quality: ModuleType) -> None:
    # Hourly rows: the live incident gap is two steps, so rows 3 and 5 join and row 9 stands alone.
    hourly = [0] * 12
    hourly[3] = hourly[5] = hourly[9] = 1
    at = _label_csv(tmp_path / "data" / "latency" / "a.csv", "1h", hourly)
    # Per-minute rows: the gap is GAP (2 min), so labels 2 and 3 minutes apart split 2 / 1.
    minutes = [0] * 30
    minutes[2] = minutes[4] = minutes[7] = 1
    by_minute = _label_csv(tmp_path / "data" / "rps" / "b.csv", "1min", minutes)
    _label_csv(tmp_path / "data" / "rps" / "clean.csv", "1min", [0] * 30)

    assert quality.public_series(tmp_path) == ["latency/a.csv", "rps/b.csv", "rps/clean.csv"]
    labelled, step = quality.load_public(tmp_path, "latency/a.csv")
    assert step == 3600 and len(labelled.frame) == 12
    assert [(i.kind, i.start, i.end) for i in labelled.incidents] == [("latency", at[3], at[5]),
                                                                      ("latency", at[9], at[9])]
    labelled, step = quality.load_public(tmp_path, "rps/b.csv")
    assert step == 60 and [(i.start, i.end) for i in labelled.incidents] == [(by_minute[2], by_minute[4]),
                                                                           (by_minute[7], by_minute[7])]
    assert quality.load_public(tmp_path, "rps/clean.csv")[0].incidents == ()


def test_nab_windows_are_read_as_written_and_unlabelled_series_left_out(tmp_path: Path,
                                                                        quality: ModuleType) -> None:
    for name in ("g/one.csv", "g/none.csv"):
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / name).write_text("timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,2\n")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(
        {"g/one.csv": [["2014-04-01 00:00:00.000000", "2014-04-01 00:05:00.000000"]], "g/none.csv": []}))
    assert quality.public_series(tmp_path) == ["g/one.csv"]
    labelled, step = quality.load_public(tmp_path, "g/one.csv")
    assert step == 300 and [(i.kind, i.start, i.end) for i in labelled.incidents] == [
        ("g", pd.Timestamp("2014-04-01 00:00", tz="UTC"), pd.Timestamp("2014-04-01 00:05", tz="UTC"))]


@pytest.mark.parametrize(("args", "named"), [
    (["--suite", "shapes", "--cadences", "5m-irr"], "--cadences: unknown 5m-irr"),
    (["--methods", "ours,nope"], "--methods: unknown nope"),
    (["--set", "target_false_alarm_rate"], "--set takes KEY=VALUE"),
])
def test_a_mistyped_option_is_named_before_any_series_runs(args: list[str], named: str) -> None:
    # A mistyped cadence used to fail in a worker, minutes in, with a KeyError traceback.
    done = subprocess.run([sys.executable, str(BENCH), *args], check=False, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert named in done.stderr
    assert "Traceback" not in done.stderr
