"""`python -m detector`: the live detector (same as `upwatch detector`), or `backtest` to replay CSVs.

    python -m detector [upwatch detector options]
    python -m detector backtest --input IN.csv --output OUT.csv [--config upwatch.yaml]
    python -m detector backtest --input-dir IN/ --output-dir OUT/ [--config upwatch.yaml] [--workers N]

Exit status: 0 done, 2 bad input or configuration (the message names the file and column).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from detector import backtest
from upwatch.config import ConfigError, load
from upwatch.config.detector import Detector

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m detector", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    replay = commands.add_parser("backtest", help="score CSVs of timestamp,value as if they arrived live")
    replay.add_argument("--config", type=Path, help="upwatch.yaml whose detector: section to use")
    source = replay.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", type=Path, help="CSV with columns timestamp,value")
    source.add_argument("--input-dir", type=Path, help="directory of such CSVs")
    replay.add_argument("--output", type=Path, help="CSV to write (with --input)")
    replay.add_argument("--output-dir", type=Path, help="directory to write (with --input-dir)")
    replay.add_argument("--workers", type=int, default=None,
                        help="files backtested at once with --input-dir (default: the CPUs this process may use)")
    return parser


def load_settings(config: Path | None) -> Detector:
    """Detector settings from upwatch.yaml's detector: section, or the defaults."""
    return Detector() if config is None else load(config).detector


def run_backtest(args: argparse.Namespace) -> int:
    """Run the backtest subcommand; return the exit status."""
    if args.input is not None and args.output is None:
        print("error: --input needs --output", file=sys.stderr)
        return 2
    if args.input_dir is not None and args.output_dir is None:
        print("error: --input-dir needs --output-dir", file=sys.stderr)
        return 2
    try:
        settings = load_settings(args.config)
        if args.input is not None:
            flagged = backtest.run_file(args.input, args.output, settings)
            print(f"backtest done input={args.input} output={args.output} anomalies={flagged}", file=sys.stderr)
        else:
            workers = args.workers or len(os.sched_getaffinity(0))
            flagged = backtest.run_dir(args.input_dir, args.output_dir, settings, workers)
            print(f"backtest done input_dir={args.input_dir} output_dir={args.output_dir} anomalies={flagged}",
                  file=sys.stderr)
    except (backtest.BadInput, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except backtest.FilesFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1 if e.internal else 2
    return 0


def _as_upwatch(argv: list[str]) -> list[str]:
    """`-c x.yaml status` -> `-c x.yaml detector status`: upwatch's global options come first."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in ("-c", "--config", "--log-level") else 1
    return [*argv[:i], "detector", *argv[i:]]


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["backtest"]:
        from upwatch.cli import main as upwatch

        return upwatch(_as_upwatch(argv))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return run_backtest(_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
