"""Replay a series as if it arrived live: causal features, retraining on the data-time cadence.

CSV contract: IN has columns timestamp,value; OUT has the same rows in the same
order with timestamp,value,anomaly_score,is_anomaly. Rows before the first model are judged
by the early rule (detector.early; or not at all with detector.before_model: silent); rows
that could not be judged (non-finite values, silent) get score 0 and is_anomaly 0.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import sys
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import partial
from pathlib import Path
from typing import Literal, TextIO

import numpy as np
import pandas as pd
from tqdm import tqdm

from detector import early, models, training
from detector import features as feature_set
from detector.incidents import LastAlarm, gap_for, hold_flags, quarantine
from detector.models import Fitted, Model, NotEnoughData
from upwatch.config.detector import Detector

logger = logging.getLogger(__name__)

INPUT_COLUMNS = ("timestamp", "value")
OUTPUT_COLUMNS = ("timestamp", "value", "anomaly_score", "is_anomaly")


class BadInput(ValueError):
    """The input cannot be backtested; the message names the file and column."""


class FilesFailed(Exception):
    """Some files of a directory were not backtested (the others were): one message per file.

    `internal` when any failed on something other than its input: an output that cannot be written, or an
    error of ours (logged with its traceback).
    """

    def __init__(self, messages: list[str], total: int, internal: bool) -> None:
        super().__init__(f"{len(messages)} of {total} files not backtested:\n" + "\n".join(messages))
        self.messages, self.internal = messages, internal


def replay(
    frame: pd.DataFrame, settings: Detector, model: Model | None = None, *, exclude_claimed: bool = True,
    higher_is_worse: bool = False,
) -> pd.DataFrame:
    """Per row of `frame` (same index and order): anomaly_score in [0, 1], is_anomaly 0/1, judged (a model saw it).

    `model` replaces the configured one (settings.model), for the benchmark's reference method.
    Causal: a model is trained on rows before a cut (training.select, as live) and judges
    rows from the cut until its next due time in data time (training.due_after); when a retraining
    finds too few rows, the last model goes on judging until it has outlived its training window
    (training.outlived), then the early rule does, as live. Features
    are computed once per step the models see (features of a row read only earlier rows).
    exclude_claimed=False trains on every row, flagged or not: only for replaying the
    reference method, which knows nothing of incidents. A model's flagged rows pass the event
    hold (settings.event_hold, detector.incidents.hold) before they count, as live. higher_is_worse: only rises are
    anomalies, as for the live series (latency, error rates); by default a CSV's values are
    of unknown meaning and deviations either way count. Before the first model rows are
    judged by the simple rule (detector.early) or not at all, as settings.before_model says.
    """
    module = model if model is not None else models.get(settings.model)
    prepared = feature_set.prepare(frame)
    finite = prepared["value"].notna().to_numpy()
    stamps = pd.DatetimeIndex(prepared["timestamp"]).tz_convert(None).to_numpy()
    by_step: dict[pd.Timedelta, tuple[pd.DataFrame, np.ndarray]] = {}
    scores = np.full(len(prepared), np.nan)
    flags = np.zeros(len(prepared), dtype=bool)
    cut = training.ready_at(stamps, finite, settings) + 1  # train on rows before cut, judge from cut on
    window = pd.Timedelta(settings.event_hold).to_pytimedelta()
    last: LastAlarm | None = None  # the event hold's state, carried across models (live: the anomalies rows)
    rule = settings.before_model == "rule"
    if rule:  # the early rule has a rising bar of its own; the hold is for models
        scores[:cut], flags[:cut] = early.flags(prepared.iloc[:cut], not higher_is_worse)
    current: tuple[Fitted, pd.Timedelta, np.datetime64] | None = None  # the model judging: its step, when trained
    while cut < len(stamps):
        trained_at = stamps[cut - 1]
        step = feature_set.cadence(stamps[:cut][finite[:cut]])
        feats, usable = _features(by_step, prepared, module, step, higher_is_worse)
        claimed = flags if exclude_claimed else np.zeros_like(flags)
        fitted = _fit(module, feats, stamps, usable, claimed, cut, step, settings)
        # As live: a retraining that fails leaves the model it would have replaced judging (its next try
        # is when that one is due again) while it is younger than its training window; after that, and
        # for a series that has never had one, the early rule judges (training.outlived).
        if fitted is not None:
            current = (fitted, step, trained_at)
        elif current is not None and training.outlived(current[2], current[1], trained_at, settings):
            current = None
        wait = training.due_after(current[0].rows, current[1], settings) if current is not None \
            else pd.Timedelta(settings.retrain_interval)
        stop = max(int(np.searchsorted(stamps, trained_at + np.timedelta64(wait), side="right")), cut + 1)
        if current is not None:
            judging, trained_step, _ = current
            feats = _features(by_step, prepared, module, trained_step, higher_is_worse)[0]
            scores[cut:stop] = module.score(judging, feats.iloc[cut:stop]).to_numpy()
            flags[cut:stop], last = hold_flags(stamps[cut:stop], scores[cut:stop],
                                               scores[cut:stop] >= judging.threshold, last, gap_for(trained_step),
                                               window)
        elif rule:
            scores[cut:stop], flags[cut:stop] = _early(prepared, stamps, cut, stop, not higher_is_worse)
        cut = stop
    judged = np.isfinite(scores)
    out = pd.DataFrame(index=prepared.index)
    out["anomaly_score"] = np.where(judged, np.clip(scores, 0.0, 1.0), 0.0)
    out["is_anomaly"] = flags.astype("int64")
    out["judged"] = judged
    return out.reindex(frame.index)


def _features(by_step: dict[pd.Timedelta, tuple[pd.DataFrame, np.ndarray]], prepared: pd.DataFrame, module: Model,
              step: pd.Timedelta, higher_is_worse: bool) -> tuple[pd.DataFrame, np.ndarray]:
    """The model's features at `step` (computed once per step) and which rows have all of them."""
    if step not in by_step:
        feats = feature_set.compute(prepared, module.FEATURES, step, not higher_is_worse)
        by_step[step] = feats, np.isfinite(feats.loc[:, list(module.FEATURES)].to_numpy()).all(axis=1)
    return by_step[step]


def _early(prepared: pd.DataFrame, stamps: np.ndarray, cut: int, stop: int,
           two_sided: bool) -> tuple[np.ndarray, np.ndarray]:
    """The early rule's (score, flag) for rows cut..stop of a series without a model, judged as live judges
    them: over the rows of the lookback before them (its bar rises with what that window held)."""
    first = int(np.searchsorted(stamps, stamps[cut] - np.timedelta64(training.LOOKBACK), side="left"))
    scored, flagged = early.flags(prepared.iloc[first:stop], two_sided)
    return scored[cut - first:], flagged[cut - first:]


def _fit(
    module: Model,
    feats: pd.DataFrame,
    stamps: np.ndarray,
    usable: np.ndarray,
    flags: np.ndarray,
    cut: int,
    step: pd.Timedelta,
    settings: Detector,
) -> Fitted | None:
    """Train on the window before row `cut`, leaving out rows inside incidents already claimed."""
    trained_at = stamps[cut - 1]
    first = int(np.searchsorted(stamps, trained_at - np.timedelta64(training.window_for(step, settings)),
                                side="right"))
    claimed = quarantine(stamps[first:cut], flags[first:cut], gap_for(step))
    try:
        keep = training.select(stamps[first:cut], usable[first:cut], claimed, step, settings)
        return module.train(feats.iloc[first:cut][keep], settings)
    except NotEnoughData as e:
        logger.info("backtest no model trained_at=%s reason=%r", trained_at, str(e))
        return None


def read_csv(path: Path) -> pd.DataFrame:
    """Read a backtest input; raise BadInput naming the file and the missing or unreadable column."""
    try:
        separator = _separator(path)
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, sep=separator)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: cannot read CSV: {e}") from e
    present = [str(c).strip() for c in frame.columns]
    # Names match in any case: public benchmarks write `timestamp,value`, `TimeStamp,Value,Label`, ...
    named = [c.lower() for c in present]
    for column in INPUT_COLUMNS:
        if column not in named:
            raise BadInput(
                f"{path}: missing column {column!r} (found: {', '.join(present) or 'none'}; "
                f"expected: {','.join(INPUT_COLUMNS)})"
            )
        if named.count(column) > 1:
            raise BadInput(f"{path}: more than one column {column!r} (found: {', '.join(present)})")
    frame.columns = named
    stamps = _timestamps(frame["timestamp"].str.strip())
    _refuse(path, "timestamp", stamps.isna(), frame["timestamp"], _not_a_time(frame["timestamp"]))
    text = frame["value"].str.strip()
    blank = text.str.lower().isin(("", "nan", "null", "none"))
    values = pd.to_numeric(text.where(~blank), errors="coerce")
    if separator != ",":  # `;`-separated files (a European spreadsheet's export) may write decimal commas
        values = values.fillna(pd.to_numeric(text.where(~blank).str.replace(",", ".", regex=False), errors="coerce"))
    _refuse(path, "value", values.isna() & ~blank, frame["value"], "not a number")
    return pd.DataFrame(
        {"timestamp": stamps, "value": values.astype("float64"),
         "raw_timestamp": frame["timestamp"], "raw_value": frame["value"]}
    )


def _separator(path: Path) -> str:
    """`,`, or `;` or a tab where the header has one of those and no comma (a spreadsheet's export)."""
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        header = f.readline()
    if "," not in header:
        for candidate in (";", "\t"):
            if candidate in header:
                return candidate
    return ","


# Unix seconds (as some public benchmarks write them) from this on; smaller numbers are more
# likely row numbers than times, and a row number says nothing about cadence.
EPOCH_FLOOR_S = 1e8  # 1973-03-03
# A column of Unix times is in seconds below 1e11 (the year 5138), then in milliseconds, microseconds
# or nanoseconds, by the magnitude of its median: 1973 onwards in each unit.
EpochUnit = Literal["s", "ms", "us", "ns"]
EPOCH_UNITS: tuple[tuple[float, EpochUnit], ...] = ((1e11, "s"), (1e14, "ms"), (1e17, "us"), (math.inf, "ns"))


def _timestamps(text: pd.Series) -> pd.Series:
    """ISO timestamps, a column of Unix times, or one other format throughout; NaT where none parses.

    Another format (`02/14/2014 14:00`, `14.02.2014 14:00`) is read month first and day first, and
    the reading kept is the one that parses the most rows, then reads them in order, then spans the
    shortest time: `01.02.2014 … 11.02.2014` at 5-minute steps is ten days in February, not a day
    in each of eleven months.
    """
    numbers = pd.to_numeric(text, errors="coerce")
    if len(text) and numbers.notna().all() and (numbers >= EPOCH_FLOOR_S).all():
        unit = next(u for bound, u in EPOCH_UNITS if float(numbers.median()) < bound)
        return pd.to_datetime(numbers, unit=unit, utc=True, errors="coerce")
    iso = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    if iso.notna().all() or numbers.notna().all():
        return iso
    readings = [iso]
    for dayfirst in (False, True):
        with warnings.catch_warnings():  # "could not infer format": the row-by-row parse is the fallback
            warnings.simplefilter("ignore", UserWarning)
            readings.append(pd.to_datetime(text, utc=True, errors="coerce", dayfirst=dayfirst))
    return max(readings, key=_reading_rank)


def _reading_rank(parsed: pd.Series) -> tuple[int, bool, float]:
    """Rows parsed, in order, and minus the span: larger is the likelier reading of a column."""
    times = parsed.dropna()
    span = (times.max() - times.min()).total_seconds() if len(times) else 0.0
    return len(times), bool(times.is_monotonic_increasing), -span


def _not_a_time(text: pd.Series) -> str:
    numbers = pd.to_numeric(text.str.strip(), errors="coerce")
    if len(text) and numbers.notna().all():  # a column of numbers, some below EPOCH_FLOOR_S: row numbers
        return "not a timestamp nor Unix time (a row number? the detector needs times to know the cadence)"
    return "not a timestamp (ISO 8601, Unix time, or the date format of the other rows)"


def _refuse(path: Path, column: str, bad: pd.Series, raw: pd.Series, what: str) -> None:
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        # +2: the header is line 1 and rows count from 1.
        raise BadInput(f"{path}:{first + 2}: column {column!r}: {what}: {raw.iloc[first]!r}")


def run_file(source: Path, target: Path, settings: Detector) -> int:
    """Backtest one CSV into another; returns the number of rows flagged. A bad input leaves no output
    (an earlier run's is removed, so it cannot pass for this one's)."""
    try:
        frame = read_csv(source)
    except BadInput:
        target.unlink(missing_ok=True)
        raise
    result = replay(frame[["timestamp", "value"]], settings)
    out = pd.DataFrame(
        {
            "timestamp": frame["raw_timestamp"],
            "value": frame["raw_value"],
            "anomaly_score": result["anomaly_score"].round(6),
            "is_anomaly": result["is_anomaly"],
        },
        columns=list(OUTPUT_COLUMNS),
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    out.to_csv(tmp, index=False)
    tmp.replace(target)
    return int(out["is_anomaly"].sum())


def run_dir(source: Path, target: Path, settings: Detector, workers: int = 1, progress: TextIO = sys.stderr) -> int:
    """Backtest every *.csv in a directory, `workers` files at a time, with a progress bar; returns total rows flagged.

    Files are independent, so they spread over processes (spawned: no inherited locks or threads).
    A file that fails (bad input, or an error of ours) does not stop the others: when all are done,
    FilesFailed names each failed file and why.
    """
    files = sorted(source.glob("*.csv"))
    if not files:
        raise BadInput(f"{source}: no *.csv files")
    flagged = 0
    failed: dict[Path, str] = {}
    internal = False

    def finished(path: Path, run: Callable[[], int]) -> None:
        nonlocal flagged, internal
        try:
            flagged += run()
        except BadInput as e:
            failed[path] = str(e)
        except OSError as e:  # the output cannot be written (full disk, a directory in its place)
            failed[path] = f"{path}: {e}"
            internal = True
        except Exception as e:  # one file's failure is reported with the others' results, not instead of them
            logger.exception("backtest failed input=%s", path)
            failed[path] = f"{path}: internal error: {e!r}"
            internal = True
        bar.set_postfix_str(path.name, refresh=False)
        bar.update()

    with tqdm(total=len(files), desc="backtest", unit="file", file=progress, mininterval=1.0) as bar:
        if workers <= 1 or len(files) == 1:
            for path in files:
                finished(path, partial(run_file, path, target / path.name, settings))
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(files)), mp_context=context) as pool:
                pending = {pool.submit(run_file, path, target / path.name, settings): path for path in files}
                for done in as_completed(pending):
                    finished(pending[done], done.result)
    if failed:
        raise FilesFailed([failed[p] for p in files if p in failed], len(files), internal)
    return flagged
