"""`python -m runner.cli`: the same as the `plasticity` command."""

import sys

from runner.cli import main

sys.exit(main())
