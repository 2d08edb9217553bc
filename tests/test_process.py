"""The training data decides steady or moving (``sensorwatch.models.process``), and the version
records it: on the simulator's plant and on steady noise, with real training."""

from __future__ import annotations

import numpy as np
import pytest

from sensorwatch.models.cadence import TimeSeries
from sensorwatch.models.process import MOVING, MOVING_SHARE, choose
from sensorwatch.models.recipe import Recipe
from sensorwatch.models.spec import DetectorSpec
from sensorwatch.models.training import fit_detector
from sensorwatch.pipeline.dev.simulator import CHANNELS, Simulator, series_by_asset

QUICK = {"epochs": 1, "train_stride": 10}


def _steady(n: int = 3000, channels: int = 5) -> list[TimeSeries]:
    """One level with AR(1) noise on every channel: what a test bed holding one operating point gives."""
    rng = np.random.default_rng(3)
    x = np.zeros((n, channels))
    for t in range(1, n):
        x[t] = 0.5 * x[t - 1] + rng.normal(size=channels)
    return [TimeSeries(np.arange(n, dtype=np.int64) * 1000, (10 + x).astype(np.float32))]


@pytest.fixture(scope="module")
def plant_version() -> DetectorSpec:
    series = series_by_asset(Simulator(assets=2, seed=5).normal(3000))
    return fit_detector(series, list(CHANNELS), Recipe(**QUICK)).spec


def test_the_plant_trains_the_moving_recipe_and_the_version_says_so(plant_version):
    spec = plant_version
    assert spec.level_share is not None and spec.level_share >= MOVING_SHARE
    assert spec.recipe.process == "moving"
    assert {f: getattr(spec.recipe, f) for f in MOVING} == MOVING
    assert (spec.recipe.epochs, spec.recipe.train_stride) == (1, 10)  # what was asked stays
    back = DetectorSpec.from_dict(spec.to_dict())
    assert (back.recipe, back.level_share) == (spec.recipe, spec.level_share)


def test_steady_data_keeps_the_default_fields():
    spec = fit_detector(_steady(), [f"c{i}" for i in range(5)], Recipe(**QUICK)).spec
    assert spec.level_share is not None and spec.level_share < MOVING_SHARE
    assert spec.recipe == Recipe(**QUICK, process="steady")


def test_a_chosen_process_is_kept_whatever_the_data(plant_version):
    """A retrain starts from its champion's recipe, whose process is already chosen: a new
    training set never flips it, so the champion and its challengers stay comparable."""
    steady = [np.random.default_rng(0).normal(size=(500, 5))]
    assert choose(plant_version.recipe, steady) == (plant_version.recipe, None)
    pinned = Recipe(process="steady")
    scaled = [np.repeat(np.random.default_rng(1).normal(size=(20, 5)), 50, axis=0)]
    assert choose(pinned, scaled) == (pinned, None)
    assert choose(Recipe(), scaled)[0].process == "moving"


def test_no_channel_that_varies_means_steady():
    flat = [np.zeros((100, 3))]
    assert choose(Recipe(), flat)[0].process == "steady"


def test_too_few_validation_windows_for_the_quantile_fit_the_threshold_on_every_window(
    tmp_path,
) -> None:
    """A slow cycle in a short file: the last fifth of 400 training rows holds a third of one
    cycle, whose top would be the threshold, and every other phase of the cycle would raise an
    alarm. With fewer validation windows than its 99.9th percentile needs (1,000), the moving
    recipe's threshold is fitted on every training window, and the version says so."""
    from pathlib import Path

    import pandas as pd

    from sensorwatch.models.detector import Detector
    from sensorwatch.models.training import TrainOptions
    from sensorwatch.pipeline.data.csvfiles import SensorFrame
    from sensorwatch.pipeline.jobs.detect import decide, train_on

    n, fault = 2500, slice(2000, 2010)
    rng = np.random.default_rng(0)
    values = np.sin(np.arange(n) / 40) + rng.normal(0, 0.1, n)
    values[fault] += 3.0
    frame = SensorFrame(
        Path("cycle.csv"),
        np.arange(n, dtype=np.int64) * 300_000,
        ["value"],
        values.astype(np.float32)[:, None],
        pd.DataFrame(index=range(n)),
    )
    trained = train_on(frame, 400, Recipe(), TrainOptions(progress=False))
    assert trained.spec.recipe.process == "moving"
    assert trained.spec.recipe.threshold_on == "all"
    out = decide(frame, 400, Detector(trained.model, trained.spec))
    flagged = np.flatnonzero(out["anomaly"].to_numpy()) + 400
    assert flagged.size and flagged.min() >= fault.start, flagged[:10]
    assert (
        flagged.max()
        <= fault.stop + 2 * trained.spec.recipe.window + trained.spec.recipe.merge_windows
    )
