"""Runner layer: sweep specs, Ray Tune scheduling, the results store and the command line.

import runner
frame = runner.read_results("results/demo")   # every per-task row, one DataFrame
"""

from runner.results import read_results

__all__ = ["read_results"]
