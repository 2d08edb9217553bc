"""Any sampling cadence, one channel or several: detect, train on CSV, and serve on the broker.

The same signal is stamped at 10 Hz, 1 s, 1 min, 5 min and 1 h, with jittered clocks and a few
dropped readings. Every rule that involves time is relative to the learned interval, so each
cadence must train, form windows, and find the same injected fault.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import sensorwatch_cli

from sensorwatch.models.process import choose
from sensorwatch.models.recipe import Recipe
from sensorwatch.models.spec import fit_scaler
from sensorwatch.models.training import TrainOptions, fit_detector
from sensorwatch.pipeline.jobs.detect import detect_file
from sensorwatch.pipeline.jobs.train import csv_series

pytestmark = pytest.mark.integration

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


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return sensorwatch_cli(*args, cwd=cwd, timeout=300)


def local_csv(path: Path, interval_ms: int) -> Path:
    """``write_csv``'s one channel stamped as a logger on Berlin's clock writes it: naive local
    times through the end of summer time (the hour 02:00-03:00 twice, at row 500), with one row
    written twice and two rows swapped."""
    ts, keep = stamps(interval_ms)
    change_ms = 1_603_587_600_000  # 2020-10-25 01:00 UTC: 03:00 summer time becomes 02:00
    ts = ts - ts[500] + change_ms
    local = pd.to_datetime(ts, unit="ms", utc=True).tz_convert("Europe/Berlin")
    frame = pd.DataFrame(
        {"datetime": local.strftime("%Y-%m-%d %H:%M:%S"), "value": signal(1)[:, 0]}
    )
    frame = frame[keep].reset_index(drop=True)
    frame = pd.concat([frame[:301], frame[300:301].assign(value=99.0), frame[301:]])
    frame.iloc[[350, 351]] = frame.iloc[[351, 350]].to_numpy()
    frame.to_csv(path, index=False)
    return path


def test_detect_trains_a_short_file_on_its_first_half(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "short.csv", CADENCES["1 min"], 1)
    pd.read_csv(data)[:300].to_csv(data, index=False)
    done = cli(
        "detect", str(data), "--out", str(tmp_path / "out.csv"), "--epochs", "1", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert f"{data}: 300 rows: the first 150 train (--train-rows)" in done.stderr.splitlines()
    assert len(pd.read_csv(tmp_path / "out.csv")) == 150


def test_detect_and_train_on_a_two_column_csv_every_5_minutes(tmp_path: Path) -> None:
    data = local_csv(tmp_path / "plant.csv", 300_000)
    fixed = f"{data}: 1 row repeats an earlier time (kept the first of each), 1 row out of order (sorted)"
    done = cli(
        "detect",
        str(data),
        "--out",
        str(tmp_path / "out.csv"),
        "--epochs",
        "1",
        "--timezone",
        "Europe/Berlin",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert fixed in done.stderr.splitlines(), done.stderr
    assert done.stdout.startswith("wrote ")
    out = pd.read_csv(tmp_path / "out.csv")
    _, keep = stamps(300_000)
    assert len(out) == keep.sum() - TRAIN_ROWS  # the repeated row once, the swapped ones in place
    # The clock change repeats no time: times in UTC, rising, as far apart as the logger's.
    steps = pd.to_datetime(out["datetime"]).diff().dropna().dt.total_seconds()
    assert steps.min() > 0 and steps.max() < 2 * 300 * 1.4 + 1
    done = cli(
        "train",
        str(data),
        "--epochs",
        "1",
        "--timezone",
        "Europe/Berlin",
        "--tracking-uri",
        f"sqlite:///{tmp_path}/m.db",
        "--promote",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert fixed in done.stderr.splitlines(), done.stderr
    said = re.search(r"1 channel\(s\), one reading every ([0-9.]+) s", done.stdout)
    assert said and abs(float(said.group(1)) - 300) <= 15, (
        done.stdout
    )  # jitter and dropped readings
    # The process the training data chose is said, with the share it was chosen on.
    assert re.search(r"process (steady|moving): level share [01]\.[0-9]{2}\)", done.stdout), (
        done.stdout
    )


def test_a_file_from_which_no_window_can_form_says_why(tmp_path: Path) -> None:
    # Training rows every second, then one reading every ten minutes: each one resets the window.
    ts = np.r_[np.arange(400) * 1000, 400_000 + np.arange(1, 60) * 600_000]
    frame = pd.DataFrame({"ts": ts, "value": np.sin(np.arange(len(ts)) / 7)})
    frame.to_csv(tmp_path / "sparse.csv", index=False)
    done = cli(
        "detect",
        str(tmp_path / "sparse.csv"),
        "--out",
        str(tmp_path / "o.csv"),
        "--train-rows",
        "400",
        "--epochs",
        "1",
        "--time-unit",
        "ms",
        cwd=tmp_path,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "no window of 20 readings can form" in lines[0]
    assert "600 s apart (median), and a gap over 10 s resets the window" in lines[0]


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
