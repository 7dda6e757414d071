"""`python -m alerter [--config FILE] [--log-level LEVEL]`: run the alerter daemon alone (same as `upwatch alerter`)."""

import sys

from upwatch.cli import main

if __name__ == "__main__":
    sys.exit(main(["alerter", *sys.argv[1:]]))
