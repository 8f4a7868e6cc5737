"""`python -m agent`: the same command line as `pid-agent` (agent/cli.py)."""

import sys

from agent.cli import main

sys.exit(main())
