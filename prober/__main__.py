"""`python -m prober`: run the prober daemon alone (same as `upwatch prober`)."""

import sys

from upwatch.cli import main

if __name__ == "__main__":
    sys.exit(main(["prober", *sys.argv[1:]]))
