"""Runner layer: sweep specs, Ray Tune scheduling, the results store and the command line.

import runner
frame = runner.read_results("results/demo")   # every per-task row, one DataFrame
"""

import os

# Before torch loads OpenMP: its idle threads spin for 10,000 iterations instead of ~300,000,
# so two processes sharing the cores no longer starve each other (2 cores, 256x4 MLP, one
# task: alone 0.10 s either way; two at once 6.7 s each by default, 0.42 s with this).
# 3,000 shares better (0.24 s) but slows a process alone by ~30% (bench); README "Threads".
# A user's own GOMP_SPINCOUNT or OMP_WAIT_POLICY wins.
if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "10000"

from runner.results import read_results  # noqa: E402 (after the OpenMP setting)

__all__ = ["read_results"]
