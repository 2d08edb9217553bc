"""A lasting rise of an asset's scores on a real trained model: without ``follow`` the alarm stands
for ever and hides the fault that comes later; with it the threshold follows the new level, the
alarm ends, and the later fault on top of the new level opens one of its own."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sensorwatch.models.metrics import runs
from sensorwatch.models.recipe import Recipe, TrainOptions
from sensorwatch.pipeline.data.csvfiles import SensorFrame
from sensorwatch.pipeline.jobs.detect import decide, train_on, with_threshold

ROWS, TRAIN_ROWS = 3600, 600
SHIFT = 1500  # the level steps up here and stays: a new operating point
FAULT = slice(3200, 3260)  # a fault on top of the new level
FOLLOW = 400  # windows: blocks of 20, so the level is followed after about 200 raised windows
STEP_MS = 300_000  # one reading every 5 minutes, one channel


@pytest.fixture(scope="module")
def decided() -> dict[int, np.ndarray]:
    """Each row's alarm state after the training rows, with ``follow`` off and on (one model)."""
    rng = np.random.default_rng(4)
    t = np.arange(ROWS)
    x = np.sin(2 * np.pi * t / 288) + rng.normal(0, 0.1, ROWS)  # a daily cycle
    x[SHIFT:] += 4.0
    x[FAULT] += 4.0
    frame = SensorFrame(
        "shift.csv",
        1_600_000_000_000 + t * STEP_MS,
        ["value"],
        x[:, None].astype(np.float32),
        pd.DataFrame(index=t),
    )
    recipe = Recipe(epochs=3, units=16, process="steady")
    trained = train_on(frame, TRAIN_ROWS, recipe, TrainOptions(progress=False, jit_compile=False))
    out = {}
    for follow in (0, FOLLOW):
        detector = with_threshold(trained, "reference", {"factor": 2.0, "follow": follow})
        out[follow] = decide(frame, TRAIN_ROWS, detector)["anomaly"].to_numpy() == 1
    return out


def _rows(flags: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return flags[lo - TRAIN_ROWS : hi - TRAIN_ROWS]


def test_without_follow_the_alarm_stands_and_hides_the_later_fault(decided) -> None:
    flags = decided[0]
    assert _rows(flags, SHIFT, SHIFT + 100).any()
    assert _rows(flags, SHIFT + 600, FAULT.start).mean() > 0.9
    onsets = [a + TRAIN_ROWS for a, _ in runs(flags)]
    assert not any(FAULT.start - 20 <= a < FAULT.stop for a in onsets)


def test_with_follow_the_alarm_ends_and_the_later_fault_opens_its_own(decided) -> None:
    flags = decided[FOLLOW]
    assert _rows(flags, SHIFT, SHIFT + 100).any()  # the step itself is still flagged
    assert _rows(flags, SHIFT + 600, FAULT.start).mean() < 0.05
    onsets = [a + TRAIN_ROWS for a, _ in runs(flags)]
    assert any(FAULT.start - 20 <= a < FAULT.stop for a in onsets), onsets
    assert _rows(flags, FAULT.start, FAULT.stop).mean() > 0.5
