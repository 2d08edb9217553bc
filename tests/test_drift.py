"""The drift check on a real MLflow store and a real archive: quiet on the champion's own plant
running normally, firing on a level shift of 1.5 standard deviations on every channel, on a slow
drift and on a new operating regime; what it cannot tell it says (exit 2), and a misspelt archive
is an error. Training refuses a value no sensor reads before anything is registered.

The scores are archived through the service's own path (``Processor`` into ``ArchiveSink``),
every 30th window, as a service with ``stride=30`` would: the check's blocks are spans of time,
so a few hours of the plant are enough and quick to score.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sensorwatch.pipeline.settings import Settings

HOURS = 3
STRIDE = 30


def _archive(frame: pd.DataFrame, uri: Path, detector) -> None:
    from sensorwatch.pipeline.archive import ArchiveSink
    from sensorwatch.pipeline.dev.simulator import readings
    from sensorwatch.pipeline.stream.processor import Processor
    from sensorwatch.pipeline.stream.step import StepOutput

    processor = Processor(detector, {"stride": STRIDE})
    sink = ArchiveSink(str(uri), processor)
    processor.windower.keep_released = True  # as the service does when it archives
    batch = list(readings(frame))
    for lo in range(0, len(batch), 20_000):
        part = batch[lo : lo + 20_000]
        sink.write(StepOutput(len(part), processor.process(part)))
    sink.write(StepOutput(0, processor.flush()))
    sink.flush()


@pytest.fixture(scope="module")
def plant(champion, champion_detector, tmp_path_factory):
    """Settings of the champion's store, and an archive per case: ``HOURS`` of the plant after
    the champion's training data, as it is and shifted three ways."""
    from conftest import PLANT, TRAIN_READINGS

    from sensorwatch.pipeline.dev.simulator import CHANNELS, Simulator

    sim = Simulator(**PLANT)
    sim.normal(TRAIN_READINGS)
    normal = sim.normal(HOURS * 3600)
    std = pd.Series(champion.detector_spec.std, index=champion.detector_spec.channels)[CHANNELS]
    level = normal.copy()
    level[CHANNELS] += 1.5 * std.to_numpy()
    drifting = normal.copy()  # from nothing to 1.5 standard deviations over the hours
    share = normal.groupby("asset_id").cumcount().to_numpy() / (HOURS * 3600)
    drifting[CHANNELS] += np.outer(share, 1.5 * std.to_numpy())
    regime = normal.copy()  # throttled: less flow, more head at the same speed
    regime["flow"] *= 0.8
    regime["pressure"] *= 1.25
    root = tmp_path_factory.mktemp("drift")
    for name, frame in {
        "normal": normal,
        "level": level,
        "drift": drifting,
        "regime": regime,
    }.items():
        _archive(frame, root / name, champion_detector)
    settings = Settings(
        tracking_uri=champion.store.tracking_uri,
        artifact_root=champion.store.artifact_root,
        model_name=champion.store.model_name,
        archive_uri=str(root / "normal"),
        drift_window_hours=HOURS,
    )
    end_ms = int(normal["ts_ms"].max()) + 1
    return settings, root, end_ms


def test_quiet_on_the_plant_as_it_runs_and_fires_on_each_shift(plant) -> None:
    from sensorwatch.pipeline.jobs.drift import drift

    settings, root, end_ms = plant
    found = {
        name: drift(settings.model_copy(update={"archive_uri": str(root / name)}), end_ms)
        for name in ("normal", "level", "drift", "regime")
    }
    normal = found.pop("normal")
    assert normal.drifted is False and normal.exit_code == 0, normal.why
    assert normal.blocks >= 20 and normal.p_value >= settings.drift_alpha, normal.why
    for name, shifted in found.items():
        assert shifted.drifted is True and shifted.exit_code == 1, (name, shifted.why)
        assert shifted.p_value < settings.drift_alpha, (name, shifted.why)


def test_what_it_cannot_tell_it_says(plant, tmp_path) -> None:
    from sensorwatch.pipeline.errors import UserError
    from sensorwatch.pipeline.jobs.drift import drift

    settings, root, end_ms = plant
    before = drift(settings, end_ms - HOURS * 3_600_000)  # nothing archived before the hours
    assert before.drifted is None and before.exit_code == 2 and "too few" in before.why
    nowhere = tmp_path / "archvie"
    with pytest.raises(UserError, match="no archive at"):
        drift(settings.model_copy(update={"archive_uri": str(nowhere)}), end_ms)
    assert not nowhere.exists()  # looked for, not made
    other = drift(settings.model_copy(update={"model_alias": "nobody"}), end_ms)
    assert other.exit_code == 2 and "@nobody" in other.why


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sensorwatch.pipeline.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **{f"SENSORWATCH_{k.upper()}": v for k, v in env.items()}},
    )


@pytest.mark.integration
def test_the_command_exits_by_what_it_found(plant) -> None:
    settings, root, _ = plant
    env = {
        "tracking_uri": settings.tracking_uri,
        "artifact_root": str(settings.artifact_root),
        # the hours before now hold nothing: it cannot tell
        "archive_uri": str(root / "level"),
    }
    done = _cli("drift", **env)
    assert done.returncode == 2 and done.stderr.startswith("could not tell: "), done.stderr
    done = _cli("drift", **{**env, "archive_uri": str(root / "nosuch")})
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"error: no archive at {root / 'nosuch'}: fix SENSORWATCH_ARCHIVE_URI"
    ]
    assert not (root / "nosuch").exists()


@pytest.mark.integration
@pytest.mark.parametrize(
    "args",
    [
        ("drift",),
        ("retrain",),
        ("review", "list"),
        ("review", "show", "abc"),
        ("review", "label", "abc", "confirmed"),
        ("review", "tune"),
    ],
)
def test_mlflow_out_of_reach_is_one_line(args: tuple[str, ...]) -> None:
    done = _cli(*args, "--tracking-uri", "http://127.0.0.1:9", mlflow_retries="0")
    assert "Traceback" not in done.stderr and done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: MLflow at http://127.0.0.1:9 is out of reach (Connection refused): "
        "start it or fix SENSORWATCH_TRACKING_URI"
    ]


@pytest.mark.integration
def test_serve_with_mlflow_out_of_reach_logs_one_line(broker: str, tmp_path) -> None:
    """Each request is tried again (``mlflow_retries``); urllib3's warning at every retry stays out."""
    done = subprocess.run(
        [sys.executable, "-m", "sensorwatch.pipeline.cli", "serve", "-b", broker],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={
            **os.environ,
            "SENSORWATCH_TRACKING_URI": "http://127.0.0.1:9",
            "SENSORWATCH_MLFLOW_RETRIES": "1",
            "SENSORWATCH_GROUP_ID": f"no-mlflow-{tmp_path.name}",
        },
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: MLflow at http://127.0.0.1:9 cannot be asked"), done.stderr


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--day", "2026-13-40"), "error: day: not a day YYYY-MM-DD: '2026-13-40'"),
        (("--version", "abc"), "error: version: a model version number, got 'abc'"),
    ],
)
def test_a_review_filter_that_cannot_match_is_an_error(args, says) -> None:
    done = _cli("review", "list", *args, "--tracking-uri", "http://127.0.0.1:9")
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [says], done.stderr


def test_training_refuses_a_value_no_sensor_reads_before_registering(champion, tmp_path) -> None:
    from mlflow import MlflowClient

    from sensorwatch.models.cadence import TrainingDataError
    from sensorwatch.models.mlflow_store import mlflow_for
    from sensorwatch.pipeline.dev.simulator import CHANNELS, Simulator, series_by_asset
    from sensorwatch.pipeline.jobs.train import train_and_register

    frame = Simulator(assets=2, seed=5).normal(400)
    row = frame.index[(frame["asset_id"] == "pump-02")][123]
    frame.loc[row, "pressure"] = 1e30
    settings = Settings(
        tracking_uri=champion.store.tracking_uri,
        artifact_root=champion.store.artifact_root,
        model_name="poisoned",
    )
    with pytest.raises(TrainingDataError, match=r"series 2 row 124 \(.*\): pressure = 1e\+30"):
        train_and_register(settings, series_by_asset(frame), list(CHANNELS), "test", promote=True)
    mlflow_for(champion.store)
    assert MlflowClient().search_model_versions("name = 'poisoned'") == []


@pytest.mark.integration
def test_train_refuses_a_poisoned_csv_in_one_line(tmp_path) -> None:
    from sensorwatch.pipeline.dev.simulator import Simulator

    frame = Simulator(assets=1, seed=5).normal(300).drop(columns="asset_id")
    frame = frame.rename(columns={"ts_ms": "timestamp"})
    frame.loc[57, "flow"] = 1e30
    frame.to_csv(tmp_path / "pump.csv", index=False)
    done = _cli(
        "train",
        str(tmp_path / "pump.csv"),
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        artifact_root=str(tmp_path / "artifacts"),
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {tmp_path / 'pump.csv'} row 58 (") and "flow = 1e+30" in line
    assert not (tmp_path / "artifacts").exists()  # nothing registered
