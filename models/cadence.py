"""The data's own cadence: its typical interval between readings, and where its gaps are.

Plants sample every 100 ms, every second, every minute or every hour, and rarely exactly: clocks
jitter and readings get dropped. The typical interval is the median of the positive steps
between readings (jitter and a few missing readings do not move it), learned from each training
set and stored with the model version, so the gap and grace rules of ``Recipe.cadence`` mean the
same thing at any rate.

>>> ts = np.array([0, 290_000, 600_000, 900_000, 1_200_000, 1_500_000])   # about every 5 minutes
>>> learn_interval([ts])
300000
>>> [len(s) for s in split_at_gaps(TimeSeries(np.r_[0, 1, 2, 50, 51], np.zeros((5, 1))), 10)]
[3, 2]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sensorwatch.models.recipe import Recipe


@dataclass(frozen=True)
class TimeSeries:
    """One asset's (or file's) readings in time order: event times (epoch ms) and values (rows × channels)."""

    ts_ms: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        if len(self.ts_ms) != len(self.values):
            raise ValueError(f"{len(self.ts_ms)} times for {len(self.values)} rows of values")

    def __len__(self) -> int:
        return len(self.ts_ms)


class TrainingDataError(ValueError):
    """Training data the recipe cannot use (too short, or every stretch broken by gaps)."""


class NoCadenceError(TrainingDataError):
    """The data has no two readings at different times, so no interval can be learned."""


def learn_interval(times: Sequence[np.ndarray]) -> int:
    """The median positive step between consecutive readings of every series, in ms (at least 1)."""
    steps = np.concatenate(
        [np.diff(np.asarray(t, np.int64)) for t in times] or [np.zeros(0, np.int64)]
    )
    positive = steps[steps > 0]
    if positive.size == 0:
        raise NoCadenceError(
            "no two readings at different times: the sampling interval cannot be learned"
        )
    return max(1, int(np.median(positive)))


def split_at_gaps(series: TimeSeries, max_gap_ms: int) -> list[TimeSeries]:
    """The stretches of ``series`` between gaps longer than ``max_gap_ms`` (the ones a stream resets at)."""
    cuts = np.flatnonzero(np.diff(np.asarray(series.ts_ms, np.int64)) > max_gap_ms) + 1
    bounds = np.r_[0, cuts, len(series)]
    return [
        TimeSeries(series.ts_ms[a:b], series.values[a:b])
        for a, b in zip(bounds[:-1], bounds[1:])
        if b > a
    ]


def describe_gaps(times: np.ndarray, max_gap_ms: int) -> str:
    """Why readings at ``times`` form no window: how far apart they are against the gap limit.

    >>> describe_gaps(np.array([0, 300_000, 600_000]), 60_000)
    'readings are 300 s apart (median), and a gap over 60 s resets the window'
    """
    steps = np.diff(np.asarray(times, np.int64))
    if steps.size == 0:
        return "there is only one reading"
    return (
        f"readings are {_seconds(float(np.median(steps)))} apart (median), "
        f"and a gap over {_seconds(max_gap_ms)} resets the window"
    )


def training_stretches(
    series: Sequence[TimeSeries], recipe: Recipe
) -> tuple[list[np.ndarray], int]:
    """The value stretches a stream would window (cut at the recipe's gaps), and the learned interval.

    Raises ``TrainingDataError`` saying why when no stretch holds one window.
    """
    if not series or not any(len(s) for s in series):
        raise TrainingDataError("no training readings")
    try:
        interval = learn_interval([s.ts_ms for s in series])
    except NoCadenceError as exc:
        raise TrainingDataError(str(exc)) from None
    gap = recipe.cadence(interval).max_gap_ms
    stretches = [
        part.values for s in series for part in split_at_gaps(s, gap) if len(part) >= recipe.window
    ]
    if not stretches:
        longest = max(len(part) for s in series for part in split_at_gaps(s, gap))
        biggest = max(series, key=len)
        why = f" ({describe_gaps(biggest.ts_ms, gap)})" if longest < len(biggest) else ""
        raise TrainingDataError(
            f"too little data: no stretch of {recipe.window} readings for one window; "
            f"the longest without a gap has {longest}{why}"
        )
    return stretches, interval


def _seconds(ms: float) -> str:
    return f"{ms / 1000:g} s"
