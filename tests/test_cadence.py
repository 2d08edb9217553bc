"""Any sampling cadence, one channel or several: detect, train on CSV, and serve on the broker
(the command line's part: ``test_cadence_cli.py``).

The same signal is stamped at 10 Hz, 1 s, 1 min, 5 min and 1 h, with jittered clocks and a few
dropped readings. Every rule that involves time is relative to the learned interval, so each
cadence must train, form windows, and find the same injected fault.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cadence_data import (
    CADENCES,
    FAST,
    FAULT,
    KEPT,
    ROWS,
    TRAIN_ROWS,
    chosen_recipe,
    flagged_rows,
    signal,
    stamps,
    write_csv,
)

from sensorwatch.models.recipe import Recipe
from sensorwatch.models.training import fit_detector
from sensorwatch.pipeline.jobs.detect import detect_file
from sensorwatch.pipeline.jobs.train import csv_series

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("name", "channels"), [(c, 1) for c in CADENCES] + [("10 Hz", 3), ("1 h", 3)]
)
def test_detect_finds_the_fault_at_any_cadence(tmp_path: Path, name: str, channels: int) -> None:
    interval = CADENCES[name]
    out = detect_file(write_csv(tmp_path / "data.csv", interval, channels), TRAIN_ROWS, FAST, KEPT)
    _, keep = stamps(interval)
    assert len(out) == keep.sum() - TRAIN_ROWS
    flagged = flagged_rows(out, keep)
    in_fault = np.isin(flagged, np.arange(FAULT.start, FAULT.stop))
    assert in_fault.sum() >= 0.5 * (FAULT.stop - FAULT.start), f"{name}: the fault was missed"
    # What stays flagged after the fault is bounded by the alarm rules of the recipe the training
    # rows chose (the slower periods of three channels make it the moving one); nothing far is.
    recipe = chosen_recipe(signal(channels)[np.flatnonzero(keep)[:TRAIN_ROWS]])
    bound = FAULT.stop + 2 * recipe.window + recipe.merge_windows
    far = flagged[(flagged < FAULT.start) | (flagged > bound)]
    assert far.size == 0, f"{name}: false alarms at rows {far[:10]}"


def test_a_row_with_an_empty_value_is_decided_as_a_dropped_reading_and_written_unscored(
    tmp_path: Path,
) -> None:
    interval = CADENCES["5 min"]
    dropped = detect_file(write_csv(tmp_path / "dropped.csv", interval, 2), TRAIN_ROWS, FAST, KEPT)
    path = write_csv(tmp_path / "empty.csv", interval, 2, empty=True)
    out = detect_file(path, TRAIN_ROWS, FAST, KEPT)
    _, keep = stamps(interval)
    first = np.flatnonzero(keep)[TRAIN_ROWS]  # the first decided row
    assert len(out) == ROWS - first  # every row after the training part is written
    kept = keep[first:]
    assert out["score"][~kept].isna().all()
    # The other rows are decided as if the left-out readings had never come.
    pd.testing.assert_frame_equal(out[kept].reset_index(drop=True), dropped)
    # A left-out row keeps the alarm state of the row before it.
    rows = np.flatnonzero(~kept)
    assert (out["anomaly"].to_numpy()[rows] == out["anomaly"].to_numpy()[rows - 1]).all()
    flagged = flagged_rows(dropped, keep)
    assert np.isin(flagged, np.arange(FAULT.start, FAULT.stop)).sum() >= 0.5 * (
        FAULT.stop - FAULT.start
    )


@pytest.mark.parametrize("name", list(CADENCES))
def test_training_learns_the_cadence_and_keeps_every_window(tmp_path: Path, name: str) -> None:
    interval = CADENCES[name]
    series, channels = csv_series(
        [write_csv(tmp_path / "normal.csv", interval, 2, iso=name != "1 s")], rows=TRAIN_ROWS
    )
    trained = fit_detector(series, channels, Recipe(epochs=1), KEPT)
    assert abs(trained.spec.interval_ms - interval) <= 0.05 * interval
    # Jitter and dropped readings break no stretch: as many windows as a single stretch gives.
    assert trained.windows == int(TRAIN_ROWS * (1 - FAST.validation)) - FAST.window + 1


@pytest.mark.parametrize("name", list(CADENCES))
def test_the_service_windows_a_stream_at_its_model_cadence(service_settings, name: str) -> None:
    from helpers import fresh, run_until

    from sensorwatch.models.cadence import TimeSeries
    from sensorwatch.models.detector import Detector
    from sensorwatch.pipeline.dev.replay import send_readings
    from sensorwatch.pipeline.service.loop import Service
    from sensorwatch.schemas.records import Reading

    interval = CADENCES[name]
    ts, keep = stamps(interval)
    ts = ts - ts[-1] + int(time.time() * 1000) - 60_000  # all in the past
    values = signal(2)
    trained = fit_detector(
        [TimeSeries(ts[:TRAIN_ROWS], values[:TRAIN_ROWS])], ["a", "b"], Recipe(epochs=1), KEPT
    )
    settings = fresh(service_settings)
    stream = [
        Reading("asset-1", int(t), {"a": float(v[0]), "b": float(v[1])})
        for t, v, k in zip(ts[TRAIN_ROWS:], values[TRAIN_ROWS:], keep[TRAIN_ROWS:])
        if k
    ]
    sent = send_readings(settings, stream)
    service = Service.on_kafka(settings, Detector(trained.model, trained.spec, version="1"))
    run_until(service, sent)
    stats = service.stats
    assert stats.scored == sent and stats.rejected == 0 and stats.windowless == 0
    assert stats.windows == sent - (
        trained.spec.window - 1
    )  # one window per reading once the first is full
    assert service.metrics.value("sensorwatch_gaps_total") == 0
