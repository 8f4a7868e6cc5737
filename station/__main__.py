"""`python -m station`: the same command line as `pid-station` (station/cli.py)."""

import sys

from station.cli import main

sys.exit(main())
