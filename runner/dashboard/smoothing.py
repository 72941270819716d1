"""Moving-average windows and the smoothed, thinned, rounded series a figure carries.

A page holds every smoothing of every curve (the buttons switch between them without a
server), so each is kept small: a window-w average changes little within w/3 tasks and
is drawn at every ceil(w/3)-th task, and values are rounded to 4 significant digits
(the plot cannot show more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

WINDOWS = (1, 5, 20, 50)
"""Windows (tasks) a figure offers where the run is longer; 1 = the raw values."""
DIGITS = 4


def default_window(tasks: int) -> int:
    """The window a figure opens with: a tenth of the run, at most 50 tasks (the
    paper's), 1 (raw) for runs under 20 tasks."""
    return min(50, max(1, tasks // 10))


def windows_for(tasks: int) -> list[int]:
    """The standard windows shorter than the run, and its default window."""
    return sorted({w for w in WINDOWS if w < tasks} | {1, default_window(tasks)})


def window_text(window: int) -> str:
    return "raw, no smoothing" if window == 1 else f"{window}-task moving average"


@dataclass(frozen=True)
class Series:
    """One smoothing of a curve, drawn at tasks x0, x0 + dx, ...: the mean across seeds
    and mean ± SE (None where the curve has one seed)."""

    x0: int
    dx: int
    mean: np.ndarray
    low: np.ndarray | None
    high: np.ndarray | None


def smoothed(values: np.ndarray, first_task: int, window: int) -> Series:
    """values [tasks, seeds] (NaN where a seed has no row) -> each seed's trailing
    `window`-task mean, then the mean and SE across seeds (std ddof=1 / sqrt(n)), thinned.
    Averaging each seed before taking the SE keeps the band the spread of what is drawn."""
    step = max(1, math.ceil(window / 3))
    keep = np.arange(len(values) - 1, -1, -step)[::-1]  # the last task is always drawn
    seeds = trailing_mean(values, window)[keep]
    count = np.isfinite(seeds).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(seeds, axis=1) / count
        low = high = None
        if values.shape[1] > 1:
            spread = np.nansum((seeds - mean[:, None]) ** 2, axis=1) / (count - 1)
            se = np.where(count > 1, np.sqrt(spread / count), 0.0)
            low, high = mean - se, mean + se
    return Series(first_task + int(keep[0]) if len(keep) else first_task, step, mean, low,
                  high)  # fmt: skip


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """[tasks, seeds] -> the mean of each seed's last `window` values up to each task
    (fewer at the start; NaNs skipped; NaN where all are), by running sums."""
    if window <= 1:
        return values
    finite = np.isfinite(values)
    total = np.cumsum(np.where(finite, values, 0.0), axis=0)
    count = np.cumsum(finite, axis=0)
    total[window:] = total[window:] - total[:-window]
    count[window:] = count[window:] - count[:-window]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def per_seed(values: np.ndarray, window: int) -> np.ndarray:
    """Each seed's trailing mean, seeds one after another with a NaN between them:
    [seeds * (tasks + 1)], for one trace of every seed of a curve."""
    padded = np.vstack([trailing_mean(values, window), np.full((1, values.shape[1]), np.nan)])
    return padded.T.reshape(-1)


def rounded(values: np.ndarray, digits: int = DIGITS) -> np.ndarray:
    """Values rounded to `digits` significant digits (inf -> NaN), so a button's arrays
    print as '0.8123' and not '0.81234567' (a float64 array: Plotly copies the buttons'
    args, which costs seconds for lists and nothing for an array)."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values) & (values != 0)
    exponent = np.zeros(values.shape, dtype=int)
    exponent[finite] = np.floor(np.log10(np.abs(values[finite]))).astype(int) - (digits - 1)
    scale = 10.0 ** np.abs(exponent)
    # dividing by an exact power of ten gives the double nearest the decimal, whose
    # shortest repr is the decimal itself (a multiplication by 1e-4 would not)
    out = np.where(exponent < 0, np.round(values * scale) / scale,
                   np.round(values / scale) * scale)  # fmt: skip
    return np.where(np.isfinite(out), out, np.nan)
