"""`python -m detector`: run the detector daemon alone (same as `upwatch detector`)."""

import sys

from upwatch.cli import main

if __name__ == "__main__":
    sys.exit(main(["detector", *sys.argv[1:]]))
