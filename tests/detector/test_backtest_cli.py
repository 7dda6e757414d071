"""`python -m detector backtest` follows its contract: same rows, same order, causal, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from detector import synthetic
from detector.__main__ import main
from detector.backtest import read_csv, replay
from upwatch.config.detector import Detector

REPO = Path(__file__).resolve().parents[2]
CONFIG = """\
detector:
  min_training_rows: 2000
  min_training_span: 8h
  retrain_interval: 3h
"""


def _backtest(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "detector", "backtest", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=50, check=False)


@pytest.fixture(scope="module")
def series() -> pd.DataFrame:
    frame = synthetic.generate(31, days=1.0, incidents_per_day=3).frame
    return frame.assign(timestamp=frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def test_backtest_writes_the_same_rows_in_the_same_order(tmp_path: Path, series: pd.DataFrame) -> None:
    shuffled = series.sample(frac=1.0, random_state=4)
    shuffled.to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "upwatch.yaml").write_text(CONFIG)
    done = _backtest("--input", "in.csv", "--output", "out.csv", "--config", "upwatch.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = pd.read_csv(tmp_path / "out.csv", dtype={"timestamp": str})
    assert list(out.columns) == ["timestamp", "value", "anomaly_score", "is_anomaly"]
    assert out["timestamp"].tolist() == shuffled["timestamp"].tolist()
    assert out["value"].tolist() == pytest.approx(shuffled["value"].tolist())
    assert out["anomaly_score"].between(0, 1).all()
    assert set(out["is_anomaly"]) <= {0, 1} and out["is_anomaly"].sum() > 0
    # Before the model has min_training_rows rows (the 2000 earliest) only the early rule speaks: its
    # claims are its scores at or above 0.5.
    earliest = pd.to_datetime(out["timestamp"]).rank(method="first") <= 2000
    pre = out.loc[earliest]
    assert (pre["is_anomaly"] == (pre["anomaly_score"] >= 0.5)).all() and pre["anomaly_score"].max() > 0
    assert "anomalies=" in done.stderr


def test_backtest_is_causal_future_rows_do_not_change_past_verdicts(series: pd.DataFrame) -> None:
    settings = Detector(min_training_rows=2000, min_training_span="8h", retrain_interval="3h")
    whole = replay(series, settings)
    changed = series.copy()
    changed.loc[4000:, "value"] = changed.loc[4000:, "value"] * 9
    after = replay(changed, settings)
    pd.testing.assert_frame_equal(whole.iloc[:4000], after.iloc[:4000])


def test_series_shorter_than_the_minimum_claims_nothing(tmp_path: Path, series: pd.DataFrame) -> None:
    series.iloc[:300].to_csv(tmp_path / "in.csv", index=False)
    assert main(["backtest", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")]) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    assert len(out) == 300 and out["anomaly_score"].between(0, 1).all()
    # No model: the early rule's claims only (its score at or above 0.5); silent claims nothing at all.
    assert (out["is_anomaly"] == (out["anomaly_score"] >= 0.5)).all()
    (tmp_path / "silent.yaml").write_text("detector:\n  before_model: silent\n")
    assert main(["backtest", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv"),
                 "--config", str(tmp_path / "silent.yaml")]) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    assert out["is_anomaly"].eq(0).all() and out["anomaly_score"].eq(0).all()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,value\n2026-03-02T00:00:00Z,1\n", "missing column 'timestamp' (found: time, value"),
        ("timestamp,latency\n2026-03-02T00:00:00Z,1\n", "missing column 'value' (found: timestamp, latency"),
        ("", "cannot read CSV"),
        ("timestamp,value\n2026-03-02T00:00:00Z,1\nyesterday,2\n",
         "in.csv:3: column 'timestamp': not a timestamp (ISO 8601, Unix time, or the date format of the other rows): "
         "'yesterday'"),
        ("timestamp,value\n2026-03-02T00:00:00Z,fast\n", "in.csv:2: column 'value': not a number: 'fast'"),
        ("timestamp,Value,value\n2026-03-02T00:00:00Z,1,2\n",
         "more than one column 'value' (found: timestamp, Value, value)"),
        ("timestamp,value,is_anomaly\n1,5,0\n2,6,0\n",
         "in.csv:2: column 'timestamp': not a timestamp nor Unix time (a row number? the detector needs"),
    ],
    ids=["misnamed-timestamp", "misnamed-value", "empty-file", "bad-timestamp", "bad-value", "value-twice",
         "row-numbers"],
)
def test_bad_csv_exits_2_naming_the_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    (tmp_path / "in.csv").write_text(text)
    status = main(["backtest", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")])
    assert status == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()


def test_bad_csv_exit_status_reaches_the_shell(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("when,value\n2026-03-02T00:00:00Z,1\n")
    done = _backtest("--input", "in.csv", "--output", "out.csv", cwd=tmp_path)
    assert done.returncode == 2
    assert "missing column 'timestamp'" in done.stderr


def test_empty_values_and_non_finite_rows_are_kept_unjudged(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("timestamp,value\n2026-03-02T00:00:00Z,\n2026-03-02T00:00:15Z,inf\n"
                                     "2026-03-02T00:00:30Z,NaN\n2026-03-02T00:00:45Z,120\n")
    assert main(["backtest", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")]) == 0
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False, dtype=str)
    assert out["value"].tolist() == ["", "inf", "NaN", "120"]
    assert out["is_anomaly"].tolist() == ["0"] * 4


def test_directory_mode_writes_one_output_per_input_with_progress(tmp_path: Path, series: pd.DataFrame) -> None:
    (tmp_path / "in").mkdir()
    for name in ("a.csv", "b.csv"):
        series.iloc[:500].to_csv(tmp_path / "in" / name, index=False)
    done = _backtest("--input-dir", "in", "--output-dir", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.csv", "b.csv"]
    assert "2/2" in done.stderr and "b.csv" in done.stderr  # tqdm's bar names the last file done


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_bad_file_in_a_directory_is_reported_and_the_others_are_backtested(
    tmp_path: Path, series: pd.DataFrame, workers: str
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    for name in ("a.csv", "c.csv"):
        series.iloc[:500].to_csv(tmp_path / "in" / name, index=False)
    (tmp_path / "in" / "b.csv").write_text("timestamp,value\n1,5\n2,6\n")  # row numbers: refused
    (tmp_path / "out" / "b.csv").write_text("timestamp,value,anomaly_score,is_anomaly\n1,5,0.9,1\n")  # stale
    done = _backtest("--input-dir", "in", "--output-dir", "out", "--workers", workers, cwd=tmp_path)
    assert done.returncode == 2
    assert "1 of 3 files not backtested" in done.stderr
    assert "b.csv:2: column 'timestamp': not a timestamp nor Unix time" in done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.csv", "c.csv"]
    assert len(pd.read_csv(tmp_path / "out" / "c.csv")) == 500


def test_an_output_that_cannot_be_written_fails_that_file_only_with_status_1(
    tmp_path: Path, series: pd.DataFrame
) -> None:
    (tmp_path / "in").mkdir()
    for name in ("a.csv", "b.csv"):
        series.iloc[:500].to_csv(tmp_path / "in" / name, index=False)
    (tmp_path / "out" / "a.csv.tmp").mkdir(parents=True)  # where a.csv's output is written first
    done = _backtest("--input-dir", "in", "--output-dir", "out", "--workers", "1", cwd=tmp_path)
    assert done.returncode == 1
    assert "1 of 2 files not backtested" in done.stderr and "a.csv.tmp" in done.stderr
    assert (tmp_path / "out" / "b.csv").is_file() and not (tmp_path / "out" / "a.csv").exists()


def test_semicolon_separated_files_with_decimal_commas_are_read(tmp_path: Path) -> None:
    # A European spreadsheet's export: `;` between fields, `,` before the decimals.
    (tmp_path / "in.csv").write_text("Timestamp;Value\n14.02.2014 14:00;1,5\n14.02.2014 14:05;12\n"
                                     "14.02.2014 14:10;\n")
    frame = read_csv(tmp_path / "in.csv")
    assert frame["value"].tolist()[:2] == [1.5, 12.0] and pd.isna(frame["value"].iloc[2])
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2014-02-14T14:00Z")
    assert main(["backtest", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")]) == 0
    assert pd.read_csv(tmp_path / "out.csv", dtype=str)["value"].tolist()[:2] == ["1,5", "12"]


def test_unix_second_timestamps_are_read_as_times(tmp_path: Path) -> None:
    # Some public benchmarks write Unix seconds; they used to be refused as "not an ISO timestamp".
    lines = [f"{1416726000 + 3600 * i},{100 + (i % 24)}" for i in range(30)]
    (tmp_path / "in.csv").write_text("timestamp,value\n" + "\n".join(lines) + "\n")
    assert main(["backtest", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")]) == 0
    out = pd.read_csv(tmp_path / "out.csv", dtype={"timestamp": str})
    assert out["timestamp"].tolist() == [line.split(",")[0] for line in lines]
    assert read_csv(tmp_path / "in.csv")["timestamp"].iloc[1] == pd.Timestamp("2014-11-23T08:00:00Z")


@pytest.mark.parametrize(
    ("scale", "decimals"), [(1e3, 0), (1e6, 0), (1e9, 0), (1.0, 2)], ids=["ms", "us", "ns", "fractional-s"]
)
def test_unix_times_in_any_unit_are_read_as_times(tmp_path: Path, scale: float, decimals: int) -> None:
    # Milliseconds used to crash the backtest with an out-of-bounds traceback (read as seconds).
    stamps = [f"{(1416726000 + 300 * i + 0.25) * scale:.{decimals}f}" for i in range(40)]
    (tmp_path / "in.csv").write_text("timestamp,value\n" + "".join(f"{t},{100 + i % 7}\n"
                                                                   for i, t in enumerate(stamps)))
    times = read_csv(tmp_path / "in.csv")["timestamp"]
    assert times.iloc[0].floor("s") == pd.Timestamp("2014-11-23T07:00:00Z")
    assert (times.diff().dropna() == pd.Timedelta(minutes=5)).all()
    assert main(["backtest", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")]) == 0
    assert pd.read_csv(tmp_path / "out.csv", dtype={"timestamp": str})["timestamp"].tolist() == stamps


@pytest.mark.parametrize(
    "layout", ["%m/%d/%Y %H:%M", "%d.%m.%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%b %d %Y %H:%M"],
    ids=["us", "eu-dots", "eu-slashes", "month-name"],
)
def test_other_date_formats_are_read_day_and_month_the_right_way_round(tmp_path: Path, layout: str) -> None:
    # Ten days from 1 February at 5-minute steps: every day is 12 or less, so each row alone could be
    # read either way; only the right way round reads them as ten days, not a day in each of eleven months.
    times = pd.date_range("2014-02-01", periods=3000, freq="5min", tz="UTC")
    (tmp_path / "in.csv").write_text("timestamp,value\n" + "".join(f"{t.strftime(layout)},{100 + i % 9}\n"
                                                                   for i, t in enumerate(times)))
    assert (read_csv(tmp_path / "in.csv")["timestamp"] == pd.Series(times)).all()


def test_column_names_match_in_any_case_and_other_columns_are_left_out(tmp_path: Path, series: pd.DataFrame) -> None:
    # The layout of Microsoft's Cloud Monitoring Dataset: TimeStamp,Value,Label with quoted timestamps.
    rows = series.iloc[:300]
    text = "TimeStamp,Value,Label\n" + "".join(f'"{t}",{v},0\n' for t, v in zip(rows["timestamp"], rows["value"],
                                                                                  strict=True))
    (tmp_path / "in.csv").write_text(text)
    assert main(["backtest", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")]) == 0
    out = pd.read_csv(tmp_path / "out.csv", dtype={"timestamp": str})
    assert list(out.columns) == ["timestamp", "value", "anomaly_score", "is_anomaly"]
    assert out["timestamp"].tolist() == rows["timestamp"].tolist()
    assert out["value"].tolist() == pytest.approx(rows["value"].tolist())
