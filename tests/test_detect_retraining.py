"""``detect --retrain-every``: what the service and a scheduled retrain would decide together on a
long file whose normal behaviour drifts, with real training at every retrain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sensorwatch.models.recipe import Recipe, TrainOptions
from sensorwatch.pipeline.jobs.detect import detect_file

ROWS, TRAIN_ROWS, EVERY = 2400, 400, 400
# The first channel shifted far out (a step, not a creep), late in the file.
FAULT = slice(2050, 2110)
QUICK = TrainOptions(progress=False, jit_compile=False)


@pytest.fixture(scope="module")
def drifting(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two periodic channels whose level creeps up by three amplitudes over the file (normal wear),
    and one fault near the end."""
    rng = np.random.default_rng(0)
    t = np.arange(ROWS)
    base, creep = np.sin(2 * np.pi * t / 30), 3.0 * t / ROWS
    x = np.c_[base + creep, 0.5 * base + creep] + rng.normal(0, 0.1, (ROWS, 2))
    x[FAULT, 0] += 5.0
    path = tmp_path_factory.mktemp("drift") / "drift.csv"
    stamps = pd.to_datetime(1_600_000_000_000 + t * 1000, unit="ms")
    pd.DataFrame(
        {"timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%SZ"), "a": x[:, 0], "b": x[:, 1]}
    ).to_csv(path, index=False)
    return path


def _flags(out: pd.DataFrame) -> tuple[float, int]:
    """Share of the fault's rows flagged, and rows flagged far from it."""
    rows = np.arange(TRAIN_ROWS, ROWS)
    flags = out["anomaly"].to_numpy()
    inside = flags[(rows >= FAULT.start) & (rows < FAULT.stop)].mean()
    far = flags[(rows < FAULT.start - 100) | (rows > FAULT.stop + 100)].sum()
    return float(inside), int(far)


def test_retraining_follows_a_drift_and_still_finds_the_fault(drifting: Path) -> None:
    recipe = Recipe(epochs=3, units=16)
    once = detect_file(drifting, TRAIN_ROWS, recipe, QUICK)
    again = detect_file(drifting, TRAIN_ROWS, recipe, QUICK, retrain_every=EVERY)
    assert len(again) == len(once) == ROWS - TRAIN_ROWS
    assert list(again.columns) == ["datetime", "score", "anomaly"]
    assert (again["datetime"] == once["datetime"]).all()
    found_once, far_once = _flags(once)
    found, far = _flags(again)
    # One model trained on the first rows takes the creep for a fault; the retrained ones follow it.
    assert far_once > 0.2 * (ROWS - TRAIN_ROWS), far_once
    assert far < 0.05 * (ROWS - TRAIN_ROWS) < far_once, (far, far_once)
    assert found >= 0.5, found  # the fault is still found by the version then deciding
