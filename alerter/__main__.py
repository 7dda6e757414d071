"""`python -m alerter [--config FILE] [--log-level LEVEL]`: run the alerter daemon alone (same as `upwatch alerter`)."""

import sys

from upwatch.cli import main

if __name__ == "__main__":
    # upwatch's global options (--config, --log-level) go before the subcommand.
    sys.exit(main([*sys.argv[1:], "alerter"]))
