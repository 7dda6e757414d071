"""Speed benchmark: training wall time for many series, scoring latency, detector RSS.

    python bench/detector_speed.py                       # 100 series x 40,320 rows on 2 workers
    python bench/detector_speed.py --series 10 --workers 1

1. Training: detector.training.fit for N series of 7 days at 15 s (40,320 rows each)
   in a ProcessPoolExecutor, exactly as the live service fans out; wall time.
2. Scoring: the live path for one series per tick (features over 26 h of history,
   score, verdicts) for every series, i.e. the CPU work between a row landing and
   its anomaly row; p50/p99 per series and per full pass over all series.
3. RSS: resident memory of this process after loading all models, and peak of workers.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detector import artifacts, synthetic, training
from detector.models import MODEL, MODELS
from detector.scoring import judge
from detector.series import Series
from upwatch.config.detector import Detector


def _series(seed: int, days: float) -> pd.DataFrame:
    """Exactly days x 5,760 rows at 15 s: daily cycle, multiplicative noise, a few incidents."""
    labelled = synthetic.generate(seed, days=days)
    n = int(days * 86400 / synthetic.STEP_S)
    stamps = synthetic.START + pd.to_timedelta(np.arange(n) * synthetic.STEP_S, unit="s")
    values = np.interp(stamps.asi8, labelled.frame["timestamp"].astype("int64"), labelled.frame["value"])
    return pd.DataFrame({"timestamp": stamps, "value": values})


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _judge_latest(frame: pd.DataFrame, artifact: artifacts.Artifact, tick: int, series: Series) -> None:
    """What one live tick does for a series whose newest row just landed (history = training.LOOKBACK)."""
    end = len(frame) - 5 + tick
    stamps = frame["timestamp"]
    history = frame.iloc[int(np.searchsorted(stamps, stamps.iloc[end] - training.LOOKBACK)):end + 1]
    judge(history, stamps.iloc[end - 1].floor("us").to_pydatetime(), artifact, series)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    settings = Detector(max_workers=args.workers)
    model_dir = Path(tempfile.mkdtemp(prefix="upwatch-speed-"))
    frames = [_series(9000 + i, args.days) for i in range(args.series)]
    rows = len(frames[0])

    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=context) as pool:
        jobs = [pool.submit(training.fit, f"bench:{i}", frame, [], settings, 1, model_dir)
                for i, frame in enumerate(frames)]
        trained = [job.result() for job in jobs]
    train_s = time.perf_counter() - started
    workers_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"training: {args.series} series x {rows:,} rows on {args.workers} workers: {train_s:.1f} s wall "
          f"({train_s / args.series:.2f} s per series), worker peak RSS {workers_rss:.0f} MB")

    module = MODELS[MODEL]
    loaded = [artifacts.load(artifacts.path_for(model_dir, a.series), MODEL, tuple(module.FEATURES))
              for a in trained]
    series = Series("bench", "latency", "latency", "ms")
    per_series = []
    passes = []
    for tick in range(5):
        pass_started = time.perf_counter()
        for frame, artifact in zip(frames, loaded, strict=True):
            one = time.perf_counter()
            _judge_latest(frame, artifact, tick=tick, series=series)
            per_series.append(time.perf_counter() - one)
        passes.append(time.perf_counter() - pass_started)
    with ThreadPoolExecutor(max_workers=args.workers) as threads:
        threaded = []
        for tick in range(3):
            pass_started = time.perf_counter()
            list(threads.map(lambda pair, t=tick: _judge_latest(*pair, tick=t, series=series),
                             zip(frames, loaded, strict=True)))
            threaded.append(time.perf_counter() - pass_started)
    print(f"scoring one new row: per series p50 {np.median(per_series) * 1000:.0f} ms, "
          f"p99 {np.quantile(per_series, 0.99) * 1000:.0f} ms; full pass over {args.series} series "
          f"p50 {np.median(passes):.2f} s on one thread, {np.median(threaded):.2f} s on {args.workers} threads "
          f"(the service's concurrency); score_interval {settings.score_interval}")
    print(f"detector process RSS (models of all series loaded, peak): {_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
