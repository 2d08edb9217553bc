"""The signal the cadence tests share: one to three periodic channels with a level shift inside
``FAULT``, stamped at any interval with a jittered clock and a few dropped readings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sensorwatch.models.process import choose
from sensorwatch.models.recipe import Recipe
from sensorwatch.models.spec import fit_scaler
from sensorwatch.models.training import TrainOptions

CADENCES = {"10 Hz": 100, "1 s": 1000, "1 min": 60_000, "5 min": 300_000, "1 h": 3_600_000}
ROWS, TRAIN_ROWS = 1000, 400
FAULT = slice(650, 730)  # rows whose first channel is shifted well out of its normal range
FAST = Recipe(epochs=8)
# Many short trainings of one shape in this process: each one after the first resets the kept model
# to its seeded start instead of building it and tracing its steps again. XLA would cost more to
# compile than it saves on a few hundred windows.
# (The model a training returns is then valid until the next one: each test uses its own at once.)
KEPT = TrainOptions(progress=False, reuse_model=True, jit_compile=False)


def signal(channels: int, seed: int = 0) -> np.ndarray:
    """Periodic channels with noise, a level shift on the first one inside FAULT."""
    rng = np.random.default_rng(seed)
    t = np.arange(ROWS)
    cols = [
        np.sin(2 * np.pi * t / (40 + 13 * c) + c) + rng.normal(0, 0.1, ROWS)
        for c in range(channels)
    ]
    values = np.stack(cols, axis=1)
    values[FAULT, 0] += 2.5
    return values.round(5)


def stamps(interval_ms: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Times at ``interval_ms`` with ±20 % jitter, and the rows kept (one in 40 dropped, none in the fault)."""
    rng = np.random.default_rng(seed)
    ts = (
        1_600_000_000_000
        + np.arange(ROWS) * interval_ms
        + rng.integers(-interval_ms // 5, interval_ms // 5 + 1, ROWS)
    )
    keep = np.ones(ROWS, bool)
    keep[np.arange(20, ROWS, 40)] = False
    keep[FAULT] = True
    return ts, keep


def write_csv(
    path: Path, interval_ms: int, channels: int, iso: bool = True, empty: bool = False
) -> Path:
    """The signal at ``interval_ms``, without the dropped rows, or (``empty``) with them written
    back with their first channel empty."""
    ts, keep = stamps(interval_ms)
    values = signal(channels)
    if empty:
        values[~keep, 0] = np.nan
        keep = np.ones_like(keep)
    names = ["value"] if channels == 1 else [f"sensor_{c}" for c in range(channels)]
    frame = pd.DataFrame(values, columns=names)
    frame.insert(
        0,
        "timestamp",
        pd.to_datetime(ts, unit="ms").strftime("%Y-%m-%dT%H:%M:%S.%fZ") if iso else ts,
    )
    frame[keep].to_csv(path, index=False)
    return path


def chosen_recipe(train: np.ndarray) -> Recipe:
    """The recipe ``FAST`` becomes on these training rows (``sensorwatch.models.process``)."""
    mean, std = fit_scaler(train.astype(np.float32))
    return choose(FAST, [(train - mean) / std])[0]


def flagged_rows(out: pd.DataFrame, keep: np.ndarray) -> np.ndarray:
    """Original row numbers of the rows decided anomalous."""
    rows = np.flatnonzero(keep)[TRAIN_ROWS:]
    return rows[out["anomaly"].to_numpy() == 1]
