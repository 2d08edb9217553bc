"""Scheduled retraining end to end: a real service archives two days of a simulated plant from the
embedded broker; Airflow's ``dag.test()`` validates (Great Expectations), trains, evaluates and
promotes, in manual and managed mode (a challenger that must be promoted, and one that must not);
corrupted data stops it at validate; the drift check fires on a drifted stream and not on a normal
one. Every DAG run goes to one Airflow process (``airflow_run.DagRunner``), on the session's
Airflow database, migrated while the champion trains."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow_run import DagRunner
from helpers import committed, fresh, wait_for

from sensorwatch.pipeline.settings import Settings

pytestmark = pytest.mark.integration

INTERVAL_S = 120  # one reading every 2 minutes: 720 a day per pump
PER_DAY = 86_400 // INTERVAL_S
ASSETS = 3


@dataclass
class Plant:
    root: Path
    day: str  # the logical date: the held-out day
    env: dict[str, str]
    settings: Settings
    dags: DagRunner


def _env(root: Path, **more: str) -> dict[str, str]:
    env = {
        **os.environ,
        "SENSORWATCH_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
        "SENSORWATCH_ARTIFACT_ROOT": str(root / "artifacts"),
        "SENSORWATCH_MODEL_NAME": "plant",
        "SENSORWATCH_PRESET": "plant",
        "SENSORWATCH_EPOCHS": "4",
        "SENSORWATCH_TRAIN_STRIDE": "1",
        "SENSORWATCH_RETRAIN_LOOKBACK_DAYS": "2",
        "SENSORWATCH_LABELS_PATH": str(root / "labels.csv"),
    }
    env.update({f"SENSORWATCH_{k.upper()}": v for k, v in more.items()})
    return env


def _settings(env: dict[str, str]) -> Settings:
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k.startswith("SENSORWATCH_")})
    try:
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def dags(airflow_home) -> DagRunner:
    """The Airflow process that parsed ``dags/`` and runs ``dag.test()`` for these tests."""
    runner = DagRunner(airflow_home)
    yield runner
    runner.close()


def dag_test(plant: Plant, dag_id: str, day: str, env: dict[str, str]) -> dict:
    """``dag.test()`` of one DAG for a logical date with the settings of ``env``: its state, its
    tasks' states, and its log."""
    return plant.dags.test(dag_id, day, env)


def _archive_through_the_service(settings: Settings, frame: pd.DataFrame, detector) -> int:
    from sensorwatch.pipeline.dev.replay import produce_frame
    from sensorwatch.pipeline.service.loop import Service

    service = Service.on_kafka(settings, detector)
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,))
    runner.start()
    try:
        sent = produce_frame(settings, frame, progress=False)
        assert wait_for(lambda: committed(settings) >= sent, 180)
    finally:
        stop.set()
        runner.join(60)
    return sent


@pytest.fixture(scope="module")
def plant(tmp_path_factory, service_settings, dags: DagRunner) -> Plant:
    """Two archived days of three pumps (faults, labelled, on the second), and a champion trained
    on the days before, at the same cadence (while Airflow's database is migrated)."""
    from sensorwatch.models.registry import load_detector
    from sensorwatch.pipeline.dev.simulator import CHANNELS, Simulator, series_by_asset
    from sensorwatch.pipeline.jobs.train import train_and_register
    from sensorwatch.pipeline.stores import store_of

    root = tmp_path_factory.mktemp("retraining")
    held_out = (datetime.now(UTC) - timedelta(days=2)).date()
    start_ms = int(
        datetime.combine(held_out - timedelta(days=4), datetime.min.time(), UTC).timestamp() * 1000
    )
    sim = Simulator(assets=ASSETS, seed=11, interval_s=INTERVAL_S, start_ms=start_ms)
    history = sim.normal(3 * PER_DAY)  # three days before the archive: the champion's training data
    env = _env(root, archive_uri=str(root / "archive"))
    settings = _settings(env)
    train_and_register(
        settings, series_by_asset(history), list(CHANNELS), "history", promote=True, progress=False
    )

    first = sim.normal(PER_DAY)
    second, faults = sim.with_faults(PER_DAY, faults_per_asset=1, kinds=("level_shift", "spike"))
    pd.DataFrame(
        [{"asset_id": f.asset_id, "start_ms": f.start_ms, "end_ms": f.end_ms} for f in faults]
    ).to_csv(root / "labels.csv", index=False)
    live = fresh(service_settings).model_copy(update={"archive_uri": str(root / "archive")})
    champion = load_detector(store_of(settings), "champion")
    sent = _archive_through_the_service(live, pd.concat([first, second]), champion)
    assert sent == 2 * PER_DAY * ASSETS
    return Plant(root, held_out.isoformat(), env, settings, dags)


def _client(plant: Plant):
    from mlflow import MlflowClient

    from sensorwatch.models.mlflow_store import mlflow_for
    from sensorwatch.pipeline.stores import store_of

    mlflow_for(store_of(plant.settings))
    return MlflowClient()


def test_the_dags_parse_fast_and_without_errors(dags: DagRunner) -> None:
    # The runner parses the DAG folder first thing, in a fresh process, and says what it imported.
    found = dags.parsed
    assert found["errors"] == {} and found["dags"] == [
        "retrain_lstm_autoencoder",
        "sensorwatch_drift_check",
    ]
    assert all(seconds < 2 for seconds in found["seconds"].values()), found["seconds"]
    assert found["heavy"] == [], "parsing a DAG file must not import Keras, TensorFlow or MLflow"


def test_manual_mode_registers_a_challenger_and_managed_mode_promotes_it_when_better(
    plant: Plant,
) -> None:
    from sensorwatch.models.registry import SCALE_TAG

    client = _client(plant)
    manual = dag_test(
        plant,
        "retrain_lstm_autoencoder",
        plant.day,
        {**plant.env, "SENSORWATCH_PROMOTION_MODE": "manual"},
    )
    assert manual["state"] == "success", manual["log"][-5000:]
    assert set(manual["tasks"].values()) == {"success"}
    versions = client.search_model_versions("name = 'plant'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    challenger = client.get_model_version("plant", "2")
    assert (
        challenger.tags["sensorwatch.logical_date"] == plant.day
        and challenger.tags["sensorwatch.role"] == "challenger"
    )
    assert challenger.tags["sensorwatch.recipe_from"] == "the recipe of champion version 1"
    assert (
        str(client.get_model_version_by_alias("plant", "champion").version) == "1"
    )  # manual: nothing moved
    metrics = client.get_run(challenger.run_id).data.metrics
    assert {
        "gate.challenger.false_alarms_per_10k",
        "gate.champion.false_alarms_per_10k",
        "gate.challenger.recall",
    } <= set(metrics)
    assert (
        metrics["gate.challenger.labelled"] == ASSETS
    )  # one labelled fault per pump on the held-out day

    # Managed reruns, pinned both ways. A label spanning the whole held-out day on every pump makes
    # any alarm there a find and none a false alarm. A version whose threshold is scaled far up (a
    # registry tag that every load applies) alarms nowhere and finds nothing; one whose threshold
    # is scaled far down alarms on every pump and finds them all. So a blind challenger must not be
    # promoted over a keen champion, and a keen challenger must be promoted over a blind champion.
    day_ms = int(datetime.fromisoformat(plant.day).replace(tzinfo=UTC).timestamp() * 1000)
    whole_day = plant.root / "labels-whole-day.csv"
    pd.DataFrame(
        {
            "asset_id": sorted(pd.read_csv(plant.root / "labels.csv")["asset_id"].unique()),
            "start_ms": day_ms,
            "end_ms": day_ms + 86_400_000 - 1,
        }
    ).to_csv(whole_day, index=False)
    managed_env = {
        **plant.env,
        "SENSORWATCH_PROMOTION_MODE": "managed",
        "SENSORWATCH_LABELS_PATH": str(whole_day),
    }

    def managed_with_blind(blind: str, keen: str) -> tuple[dict, dict[str, float], str]:
        """A managed rerun while version ``blind`` alarms nowhere and ``keen`` everywhere: the run,
        the gate's figures, its verdict."""
        client.set_model_version_tag("plant", blind, SCALE_TAG, "1e9")
        client.set_model_version_tag("plant", keen, SCALE_TAG, "0.01")
        try:
            run = dag_test(plant, "retrain_lstm_autoencoder", plant.day, managed_env)
        finally:
            for version in (blind, keen):
                client.delete_model_version_tag("plant", version, SCALE_TAG)
        assert run["state"] == "success", run["log"][-5000:]
        assert sorted(int(v.version) for v in client.search_model_versions("name = 'plant'")) == [
            1,
            2,
        ]  # a rerun registers nothing
        data = client.get_run(challenger.run_id).data
        print(f"\nmanaged rerun, version {blind} blind: {data.tags['sensorwatch.gate_why']}")
        return run, data.metrics, data.tags["sensorwatch.gate"]

    # Unlabelled, as most plants are: the champion's finds of the held-out day's real faults count
    # as its false alarms, and a blind challenger has none. The faults the gate injects into the
    # day refuse it, with their figures, list and plot on its run.
    unlabelled = {k: v for k, v in managed_env.items() if k != "SENSORWATCH_LABELS_PATH"}
    client.set_model_version_tag("plant", "2", SCALE_TAG, "1e9")
    try:
        run = dag_test(plant, "retrain_lstm_autoencoder", plant.day, unlabelled)
    finally:
        client.delete_model_version_tag("plant", "2", SCALE_TAG)
    assert run["state"] == "success", run["log"][-5000:]
    data = client.get_run(challenger.run_id).data
    print(f"\nunlabelled managed rerun, version 2 blind: {data.tags['sensorwatch.gate_why']}")
    assert data.tags["sensorwatch.gate"] == "not better"
    assert data.tags["sensorwatch.gate_why"].startswith("misses injected faults the champion finds")
    m = data.metrics
    assert m["gate.injected_faults"] >= ASSETS and m["gate.challenger.injected_found"] == 0
    assert m["gate.champion.injected_found"] > 0
    artifacts = {a.path for a in client.list_artifacts(challenger.run_id)}
    assert {"gate.json", "gate_injected_faults.png"} <= artifacts
    assert str(client.get_model_version_by_alias("plant", "champion").version) == "1"

    kept, figures, verdict = managed_with_blind("2", keen="1")
    assert figures["gate.challenger.recall"] == 0 and figures["gate.champion.recall"] == 1, figures
    assert figures["gate.challenger.false_alarms"] == figures["gate.champion.false_alarms"] == 0
    assert verdict == "not better"
    assert str(client.get_model_version_by_alias("plant", "champion").version) == "1"
    assert client.get_model_version("plant", "2").tags["sensorwatch.role"] == "challenger"

    promoted, figures, verdict = managed_with_blind("1", keen="2")
    assert figures["gate.champion.recall"] == 0 and figures["gate.challenger.recall"] == 1, figures
    assert figures["gate.challenger.false_alarms"] == figures["gate.champion.false_alarms"] == 0
    assert verdict == "better"
    assert str(client.get_model_version_by_alias("plant", "champion").version) == "2"
    tags = client.get_model_version("plant", "2").tags
    assert (
        tags["sensorwatch.promoted_by"] == "retraining gate"
        and "false alarms/10k" in tags["sensorwatch.promoted_why"]
    )
    print(
        f"retrain DAG: manual {manual['seconds']} s, managed reruns {kept['seconds']} s and "
        f"{promoted['seconds']} s"
    )

    # A person promotes (or rolls back) by hand, and it is recorded on the version.
    done = subprocess.run(
        [sys.executable, "-m", "sensorwatch.pipeline.cli", "promote", "1", "--reason", "roll back"],
        env=plant.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert str(client.get_model_version_by_alias("plant", "champion").version) == "1"
    assert client.get_model_version("plant", "1").tags["sensorwatch.promoted_why"] == "roll back"


def test_corrupted_archive_data_stops_the_dag_at_validate_and_registers_nothing(
    plant: Plant, tmp_path
) -> None:
    archive = tmp_path / "archive"
    shutil.copytree(plant.root / "archive", archive)
    day = (datetime.fromisoformat(plant.day) - timedelta(days=1)).date().isoformat()
    folder = archive / "readings" / f"day={day}"
    good = pq.read_table(next(folder.glob("*.parquet"))).to_pandas()
    bad = good[good["asset_id"] == good["asset_id"].iloc[0]].head(20).copy()
    bad["asset_id"] = "pump-corrupt"
    bad["ts_ms"] = bad["ts_ms"].to_numpy()[::-1]  # time going backwards
    bad.loc[bad.index[3], "flow"] = np.nan  # a missing value
    bad.loc[bad.index[5], "pressure"] = 1e6  # far out of range
    pq.write_table(pa.Table.from_pandas(bad, preserve_index=False), folder / "part-corrupt.parquet")
    client = _client(plant)
    before = sorted(int(v.version) for v in client.search_model_versions("name = 'plant'"))

    run = dag_test(
        plant,
        "retrain_lstm_autoencoder",
        plant.day,
        {**plant.env, "SENSORWATCH_ARCHIVE_URI": str(archive)},
    )
    assert run["state"] == "failed"
    assert run["tasks"]["validate"] == "failed" and run["tasks"]["train"] == "upstream_failed"
    for expectation in (
        "expect_column_values_to_not_be_null(column=flow)",
        "expect_column_values_to_be_between(column=pressure",
        "expect_column_values_to_be_between(column=ts_step_ms",
        "expect_column_min_to_be_between(column=asset_rows",
    ):
        assert expectation in run["log"], expectation
    assert sorted(int(v.version) for v in client.search_model_versions("name = 'plant'")) == before
    failed = client.search_runs(
        [client.get_experiment_by_name(plant.settings.experiment).experiment_id],
        "tags.`sensorwatch.step` = 'validate' and attributes.status = 'FAILED'",
    )
    assert failed
    said = Path(client.download_artifacts(failed[0].info.run_id, "validation.txt")).read_text()
    assert "expect_column_values_to_not_be_null(column=flow)" in said
    docs = {a.path for a in client.list_artifacts(failed[0].info.run_id, "data_docs")}
    assert "data_docs/index.html" in docs  # Great Expectations' Data Docs, beside the result


def test_the_drift_check_fires_on_a_drifted_stream_and_not_on_a_normal_one(
    plant: Plant, service_settings, tmp_path
) -> None:
    from sensorwatch.models.registry import load_detector, set_alias
    from sensorwatch.pipeline.dev.simulator import CHANNELS, Simulator
    from sensorwatch.pipeline.jobs.drift import drift
    from sensorwatch.pipeline.stores import store_of

    set_alias(store_of(plant.settings), "1")  # the champion that scored the archive
    end_ms = int(
        datetime.combine(
            datetime.fromisoformat(plant.day) + timedelta(days=1), datetime.min.time(), UTC
        ).timestamp()
        * 1000
    )
    # Three pumps at a reading every two minutes give some 30 blocks a day (pipeline/jobs/drift.py):
    # a day of the worn plant below reaches p = 0.007, so these checks run at a false-alarm rate
    # of 1 % per check instead of the default 0.1 %.
    settings = plant.settings.model_copy(update={"drift_alpha": 0.01})
    env = {**plant.env, "SENSORWATCH_DRIFT_ALPHA": "0.01"}
    normal = drift(settings, now_ms=end_ms)
    assert normal.windows >= 500 and normal.drifted is False, normal.why

    # The same pumps, worn: every channel a standard deviation and a half off, all day.
    worn = Simulator(assets=ASSETS, seed=12, interval_s=INTERVAL_S, start_ms=end_ms).normal(PER_DAY)
    champion = load_detector(store_of(plant.settings), "champion")
    for channel, std in zip(champion.spec.channels, champion.spec.std):
        if channel in CHANNELS:
            worn[channel] += 1.5 * std
    worn_archive = tmp_path / "worn"
    live = fresh(service_settings).model_copy(update={"archive_uri": str(worn_archive)})
    _archive_through_the_service(live, worn, champion)
    worn_settings = settings.model_copy(update={"archive_uri": str(worn_archive)})
    drifted = drift(worn_settings, now_ms=end_ms + 86_400_000)
    assert drifted.drifted is True, drifted.why

    worn_day = (
        (datetime.fromisoformat(plant.day) + timedelta(days=2)).date().isoformat()
    )  # its window: the worn day
    quiet = dag_test(plant, "sensorwatch_drift_check", plant.day, env)
    assert quiet["tasks"] == {"drifted": "success", "retrain": "skipped"}, quiet["log"][-3000:]
    fired = dag_test(
        plant,
        "sensorwatch_drift_check",
        worn_day,
        {**env, "SENSORWATCH_ARCHIVE_URI": str(worn_archive)},
    )
    assert fired["tasks"] == {"drifted": "success", "retrain": "success"}, fired["log"][
        -3000:
    ]  # the retraining DAG is triggered


def test_a_retrain_starts_from_the_champion_recipe_and_another_is_an_explicit_recorded_choice(
    champion, tmp_path, caplog
) -> None:
    """Not the preset the settings name: the champion's own recipe (its window, score, threshold
    and alarm rules), with only the training effort set on purpose on top; a preset only when
    chosen for the retrain, recorded with what it changes."""
    import json

    from sensorwatch.models.presets import preset
    from sensorwatch.models.register import log_training
    from sensorwatch.pipeline.jobs.champion import retrain_recipe
    from sensorwatch.pipeline.stores import store_of

    settings = Settings(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        artifact_root=str(tmp_path / "a"),
        model_name="recipes",
        preset="default",  # what SENSORWATCH_PRESET says: not the champion's (plant)
        epochs=2,
        window=40,
    )
    log_training(champion.trained, store_of(settings), alias="champion")
    kept = champion.trained.spec.recipe
    with caplog.at_level("WARNING", logger="sensorwatch.pipeline"):
        recipe, record, spec = retrain_recipe(settings)
    assert recipe == kept.updated(epochs=2) and recipe.window == kept.window != 20
    assert record["sensorwatch.recipe_from"] == "the recipe of champion version 1"
    assert json.loads(record["sensorwatch.recipe_changes"]) == {"epochs": [kept.epochs, 2]}
    assert "ignoring window set in the settings" in caplog.text and spec.channels

    recipe, record, _ = retrain_recipe(settings, "default")
    assert recipe == preset("default").updated(epochs=2, window=40)
    assert record["sensorwatch.recipe_from"] == "preset default, chosen for this retrain"
    changes = json.loads(record["sensorwatch.recipe_changes"])
    assert changes["window"] == [kept.window, 40] and changes["score"] == [kept.score, "max+level"]
