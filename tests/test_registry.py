"""Training → MLflow run → registered version → alias → loaded detector, on a real SQLite store."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow import MlflowClient

from sensorwatch.models.cadence import TimeSeries, TrainingDataError
from sensorwatch.models.presets import PRESETS
from sensorwatch.models.recipe import Recipe
from sensorwatch.models.registry import NoChampionError, alias_version, load_detector, set_alias
from sensorwatch.models.training import TrainOptions, _mean_loss, _split, fit_detector, make_windows
from sensorwatch.pipeline.dev.simulator import CHANNELS, Simulator, series_by_asset

pytestmark = pytest.mark.integration


def test_run_holds_params_losses_model_and_artifacts(champion) -> None:
    client = MlflowClient(champion.store.tracking_uri)
    run = client.get_run(champion.version.run_id)
    plant = PRESETS["plant"]
    assert (
        run.data.params["window"] == str(plant.window) and run.data.params["source"] == "simulator"
    )
    assert run.data.params["interval_ms"] == "1000" and run.data.params["min_windows"] == str(
        plant.min_windows
    )
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert len(losses) == int(run.data.metrics["epochs_trained"]) >= 1
    assert [m.step for m in losses] == list(range(len(losses)))
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"detector.json", "loss.png"} <= names
    version = client.get_model_version(champion.store.model_name, champion.version.version)
    assert version.run_id == run.info.run_id


def test_champion_alias_loads_the_same_detector(champion) -> None:
    assert alias_version(champion.store, "champion") == champion.version.version
    detector = load_detector(champion.store, "champion")
    assert detector.spec == champion.detector_spec
    frame = Simulator(assets=1, seed=5).normal(80)
    windows = make_windows(frame[CHANNELS].to_numpy(np.float32), detector.spec.window)
    scores, errors = detector.score(windows)
    assert scores.shape == (len(windows),) and errors.shape == (len(windows), len(CHANNELS))
    assert np.isfinite(scores).all()


def test_missing_alias_is_a_clear_error(champion) -> None:
    with pytest.raises(NoChampionError, match="no model version .* has alias 'nobody'"):
        load_detector(champion.store, "nobody")


def test_alias_moves_by_hand(champion) -> None:
    set_alias(champion.store, champion.version.version, "candidate")
    assert alias_version(champion.store, "candidate") == champion.version.version


def test_training_learns_normal_data() -> None:
    """A trained model reconstructs normal windows far better than an untrained one would."""
    frame = Simulator(assets=2, seed=9).normal(900)
    series = series_by_asset(frame)
    trained = fit_detector(series, CHANNELS, Recipe(epochs=8), TrainOptions(progress=False))
    losses = trained.history["loss"]
    assert losses[-1] < losses[0] / 2
    assert trained.spec.threshold["method"] == "reference" and trained.spec.threshold["value"] > 0


def test_training_keeps_the_weights_of_its_best_epoch() -> None:
    """Early stopping hands back the epoch with the lowest validation loss, not the last one, and
    the validation loss it recorded is what the returned model scores on those windows."""
    frame = Simulator(assets=1, seed=3).normal(700)
    series = series_by_asset(frame)
    recipe = Recipe(epochs=30, patience=2, learning_rate=0.05)
    trained = fit_detector(series, CHANNELS, recipe, TrainOptions(progress=False))
    val = trained.history["val_loss"]
    assert (
        len(val) == len(trained.history["loss"]) and np.argmin(val) < len(val) - 1
    )  # it went past its best
    mean, std, _ = trained.spec.arrays()
    _, x_val = _split([(series[0].values - mean) / std], trained.recipe)  # as the data chose
    assert _mean_loss(trained.model, x_val) == pytest.approx(min(val), rel=1e-3)
    assert _mean_loss(trained.model, x_val) < val[-1]


def test_too_little_data_is_refused() -> None:
    with pytest.raises(TrainingDataError, match="too little data: no stretch of 20 readings"):
        fit_detector([TimeSeries(np.arange(10) * 1000, np.zeros((10, 5), np.float32))], CHANNELS)


def test_an_unreachable_registry_is_not_taken_for_a_missing_alias(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow.exceptions import MlflowException

    from sensorwatch.models.mlflow_store import Store

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with pytest.raises(MlflowException):
        alias_version(Store("http://127.0.0.1:9"), "champion")


def test_a_missing_model_is_no_alias(champion) -> None:
    from dataclasses import replace

    assert alias_version(replace(champion.store, model_name="nobody"), "champion") is None
