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
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detector import artifacts, synthetic, training  # noqa: E402
from detector.models import MODELS  # noqa: E402
from detector.scoring import judge  # noqa: E402
from detector.series import Series  # noqa: E402
from upwatch.config.detector import Detector  # noqa: E402


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    settings = Detector(max_workers=args.workers)
    model_dir = Path(tempfile.mkdtemp(prefix="upwatch-speed-"))
    frames = [synthetic.generate(9000 + i, days=args.days).frame for i in range(args.series)]
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

    module = MODELS[settings.model]
    loaded = [artifacts.load(artifacts.path_for(model_dir, a.series), settings.model, tuple(module.FEATURES))
              for a in trained]
    series = Series("bench", "latency", "latency", "ms")
    per_series = []
    passes = []
    lookback = training.LOOKBACK
    for tick in range(5):
        pass_started = time.perf_counter()
        for frame, artifact in zip(frames, loaded, strict=True):
            end = len(frame) - 5 + tick
            stamps = frame["timestamp"]
            history = frame.iloc[int(np.searchsorted(stamps, stamps.iloc[end] - lookback)):end + 1]
            one = time.perf_counter()
            judge(history, stamps.iloc[end - 1].floor("us").to_pydatetime(), artifact, series)
            per_series.append(time.perf_counter() - one)
        passes.append(time.perf_counter() - pass_started)
    print(f"scoring one new row: per series p50 {np.median(per_series) * 1000:.0f} ms, "
          f"p99 {np.quantile(per_series, 0.99) * 1000:.0f} ms; full pass over {args.series} series "
          f"p50 {np.median(passes):.2f} s, max {max(passes):.2f} s (one core, score_interval {settings.score_interval})")
    print(f"detector process RSS (models of all series loaded, peak): {_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
