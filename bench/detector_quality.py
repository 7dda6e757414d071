"""Quality benchmark: our detector vs the reference method on labelled synthetic series.

    python bench/detector_quality.py                    # both suites, report seeds, about 10 minutes on 2 cores
                                                        # before the -heavy cadences (3 Dec); choose with --cadences
    python bench/detector_quality.py --suite probe --series 6 --days 3 --workers 1
    python bench/detector_quality.py --suite shapes --tuning   # the seeds used to tune (never to report)
    python bench/detector_quality.py --suite public --public-dir NAB/   # labelled public series (below)

Suites:
- probe: 15 s probe latency (detector.synthetic.generate), `--days` days per series.
- shapes: real-world shapes (detector.synthetic.shapes) at 1 min (7 days) and 5 min
  (21 days, also with irregular spacing and gaps): daily and weekly seasonality, trend,
  AR noise; spikes, dips, level shifts that stay, transient shifts, a noise regime that
  stays, noise bursts. 1m-heavy and 5m-heavy are the 1m and 5m series (same seeds, same
  incidents) with the normal texture of real series on top: heavy-tailed noise, unlabelled
  bursts, on half of them quantised low counts (synthetic.shapes(texture="heavy")).

- public (only with --public-dir): labelled public series in the layout of the Numenta
  Anomaly Benchmark (github.com/numenta/NAB, MIT licence; not shipped here): DIR/data/<group>/<name>.csv
  (timestamp,value) and DIR/labels/combined_windows.json ({"<group>/<name>.csv": [[start, end], ...]}).
  Each labelled window is one incident of kind <group>, replayed as a backtest CSV at its own
  cadence (either direction counts); a sanity check on data we did not generate, never tuned on.
  A directory without labels/combined_windows.json is read in the layout of Microsoft's Cloud
  Monitoring Dataset (github.com/microsoft/cloud-monitoring-dataset, MIT licence; not shipped
  here): DIR/data/<group>/<name>.csv with columns TimeStamp,Value,Label (1 = anomalous row).
  Labelled rows no more than the live incident gap apart (detector.incidents.gap_for, two steps
  at 5 min and slower) form one incident from the first to the last of them; every series is
  scored, those without labels for false alarms only.

Prints incident recall (overall, per kind and per cadence), false alarms per
series-day outside incidents and detection delay, for `ours`
(detector.models.isolation_forest at the production defaults) and `reference`
(reference features + IsolationForest(n_estimators=100, contamination=0.1)), both
replayed by the backtest (detector.backtest.replay). Definitions: detector/evaluation.py.
Tuning seeds (--tuning) start at 1000, report seeds at 5000: figures in docs come from the latter.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detector import backtest, evaluation, features, models, synthetic
from detector.backtest import replay
from detector.incidents import gap_for, group
from detector.models import reference
from upwatch.config.detector import Detector

METHODS: dict[str, models.Model] = {"ours": models.get("isolation_forest"), "reference": reference}
# (step in seconds, days, irregular, texture) per cadence of the shapes suite; "-heavy" is the same
# series with the normal texture of real ones (synthetic._heavy; seventh session, 3 Dec).
CADENCES = {"1m": (60.0, 7.0, False, "plain"), "5m": (300.0, 21.0, False, "plain"),
            "5m-irregular": (300.0, 21.0, True, "plain"),
            "1m-heavy": (60.0, 7.0, False, "heavy"), "5m-heavy": (300.0, 21.0, False, "heavy")}
TUNING_SEED, REPORT_SEED = 1000, 5000


def _nab_windows(root: Path) -> Path:
    return root / "labels" / "combined_windows.json"


def public_series(root: Path) -> list[str]:
    """The CSVs (relative names) to score: of a NAB-layout directory those with at least one window,
    of a label-column directory every one."""
    if not _nab_windows(root).exists():
        return sorted(str(p.relative_to(root / "data")) for p in (root / "data").glob("*/*.csv"))
    windows = json.loads(_nab_windows(root).read_text())
    return sorted(name for name, spans in windows.items() if spans and (root / "data" / name).exists())


def load_public(root: Path, name: str) -> tuple[synthetic.LabelledSeries, float]:
    """One public series with its windows as incidents of kind <group>, and its step in seconds."""
    path = root / "data" / name
    frame = backtest.read_csv(path)[["timestamp", "value"]]
    kind = name.split("/")[0]
    step = features.cadence(frame["timestamp"]).total_seconds()
    if _nab_windows(root).exists():
        spans = [(pd.Timestamp(a, tz="UTC"), pd.Timestamp(b, tz="UTC"))
                 for a, b in json.loads(_nab_windows(root).read_text())[name]]
    else:
        labels = pd.read_csv(path, usecols=lambda c: c.strip().lower() == "label")
        spans = _runs(frame["timestamp"][labels.iloc[:, 0].to_numpy() == 1], gap_for(pd.Timedelta(seconds=step)))
    incidents = tuple(synthetic.Incident(kind, a, b) for a, b in spans)
    return synthetic.LabelledSeries(name, frame, incidents), step


def _runs(stamps: pd.Series, gap: pd.Timedelta) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Labelled times grouped as live incidents are (incidents.group): the next no more than `gap` after the last."""
    return [(run.start, run.end) for run in group(((at, 1.0) for at in sorted(stamps)), gap)]


def run_one(args: tuple[str, int, float, str, dict[str, str]]) -> evaluation.Outcome:
    cadence, seed, days, method, overrides = args
    higher_is_worse = cadence == "15s"  # probe latency, as live; shapes are of unknown meaning, as a CSV
    if cadence.startswith("public:"):
        root, name = cadence.removeprefix("public:").split("|", 1)
        labelled, step = load_public(Path(root), name)
    elif cadence == "15s":
        labelled, step = synthetic.generate(seed, days=days), 15.0
    else:
        step, days, irregular, texture = CADENCES[cadence]
        labelled = synthetic.shapes(seed, step_s=step, days=days, irregular=irregular, texture=texture)
    # The reference is the method as stated: thresholded rows, none of our decision rules after it.
    settings = Detector(**(({"event_hold": "0s"} if method == "reference" else {}) | overrides))
    # The reference knows nothing of incidents, so it learns from every row.
    result = replay(labelled.frame, settings, METHODS[method], exclude_claimed=method == "ours",
                    higher_is_worse=higher_is_worse)
    return evaluation.evaluate(labelled, result, gap=gap_for(pd.Timedelta(seconds=step)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=("probe", "shapes", "public", "all"), default="all")
    parser.add_argument("--public-dir", type=Path, default=None,
                        help="for --suite public: a NAB-layout directory (data/, labels/combined_windows.json) or"
                             " one of CSVs with a Label column (data/<group>/<name>.csv)")
    parser.add_argument("--public-max-rows", type=int, default=None,
                        help="only the public series of at most this many rows (a quicker check)")
    parser.add_argument("--series", type=int, default=None, help="series per cadence (probe 16, shapes 12)")
    parser.add_argument("--days", type=float, default=4.0, help="days per probe series")
    parser.add_argument("--tuning", action="store_true", help=f"use the tuning seeds ({TUNING_SEED}..), not the "
                        f"report seeds ({REPORT_SEED}..)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--methods", default="ours,reference")
    parser.add_argument("--cadences", default=None, help=f"shapes cadences, default all of {','.join(CADENCES)}")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a Detector field, e.g. --set target_false_alarm_rate=0.001")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    unknown = [c for c in (args.cadences or "").split(",") if c and c not in CADENCES]
    if unknown:
        parser.error(f"--cadences: unknown {', '.join(unknown)} (choose from {', '.join(CADENCES)})")
    bad_methods = [m for m in args.methods.split(",") if m not in METHODS]
    if bad_methods:
        parser.error(f"--methods: unknown {', '.join(bad_methods)} (choose from {', '.join(METHODS)})")
    if any("=" not in item for item in args.set):
        parser.error("--set takes KEY=VALUE")
    overrides = dict(item.split("=", 1) for item in args.set)
    seed = TUNING_SEED if args.tuning else REPORT_SEED
    runs: list[tuple[str, int]] = []
    if args.suite in ("probe", "all"):
        runs.append(("15s", args.series or 16))
    if args.suite in ("shapes", "all"):
        runs += [(c, args.series or 12) for c in (args.cadences.split(",") if args.cadences else CADENCES)]
    figures: dict[str, dict[str, object]] = {}
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for method in args.methods.split(","):
            if args.suite == "public":
                figures |= _public(pool, args.public_dir, method, overrides, args.public_max_rows)
                continue
            for cadence, count in runs:
                started = time.perf_counter()
                jobs = [(cadence, seed + i, args.days, method, overrides) for i in range(count)]
                outcomes = list(pool.map(run_one, jobs))
                figures[f"{method} {cadence}"] = evaluation.summarize(outcomes) | {
                    "wall_s": time.perf_counter() - started}
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"seeds from {seed} ({'tuning' if args.tuning else 'report'}), settings overrides: {overrides or 'none'}")
    for label, f in figures.items():
        print(f"\n{label}: {f['series']} series, recall {f['recall']:.3f} of {f['incidents']} incidents | "
              f"false alarms {f['false_alarms']} = {f['false_alarms_per_series_day']:.3f} per series-day "
              f"({f['series_days']:.1f} series-days) | flagged points outside incidents "
              f"{f['flagged_points_outside_per_day']:.1f}/day | delay median {f['delay_median_s']:.0f} s, "
              f"p90 {f['delay_p90_s']:.0f} s | {f['wall_s']:.0f} s")
        for kind, k in f["by_kind"].items():
            print(f"  {kind:<16} recall {k['recall']:.2f} ({k['incidents']:>3})"
                  f"  delay median {k['delay_median_s']:.0f} s")


def _public(pool: ProcessPoolExecutor, root: Path | None, method: str, overrides: dict[str, str],
            max_rows: int | None) -> dict[str, dict[str, object]]:
    """Figures of every labelled public series, overall, per group (the kind) and per cadence."""
    if root is None:
        raise SystemExit("--suite public needs --public-dir")
    names = [n for n in public_series(root)
             if max_rows is None or sum(1 for _ in (root / "data" / n).open()) - 1 <= max_rows]
    started = time.perf_counter()
    steps = {name: load_public(root, name)[1] for name in names}
    jobs = [(f"public:{root}|{name}", 0, 0.0, method, overrides) for name in names]
    outcomes = dict(zip(names, pool.map(run_one, jobs), strict=True))
    wall = time.perf_counter() - started
    out = {f"{method} public": evaluation.summarize(list(outcomes.values())) | {"wall_s": wall}}
    for step in sorted(set(steps.values())):
        mine = [o for n, o in outcomes.items() if steps[n] == step]
        out[f"{method} public {pd.Timedelta(seconds=step)}"] = evaluation.summarize(mine) | {"wall_s": wall}
    return out


if __name__ == "__main__":
    main()
