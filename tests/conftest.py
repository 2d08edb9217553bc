"""Fixtures shared by the tests: one embedded broker and one trained champion model per session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from sensorwatch.models.registry import RegisteredVersion, Store
from sensorwatch.models.spec import DetectorSpec
from sensorwatch.models.training import TrainedDetector
from sensorwatch.pipeline.dev.broker import EmbeddedBroker
from sensorwatch.pipeline.kafka.clients import service_topics
from sensorwatch.pipeline.settings import Settings


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of an embedded broker with the service's topics; its log is in a temp dir."""
    topics = service_topics(Settings())
    with EmbeddedBroker(topics, log_dir=tmp_path_factory.mktemp("broker")) as embedded:
        yield embedded.bootstrap_servers


@pytest.fixture(scope="session")
def service_settings(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for the service against the embedded broker, with short group timeouts, a
    checkpoint after every poll, and an archive in a temp dir."""
    return Settings(
        bootstrap_servers=broker,
        commit_interval_s=0,
        archive_uri=str(tmp_path_factory.mktemp("archive")),
        session_timeout_ms=6000,
        max_poll_interval_ms=6000,
        poll_timeout_ms=200,
        reload_interval_s=0,
    )


@dataclass
class Champion:
    store: Store
    version: RegisteredVersion
    detector_spec: DetectorSpec
    trained: TrainedDetector


# The simulated plant the champion learns, and how much of it: the service tests continue it.
PLANT = {"assets": 4, "seed": 3, "start_ms": 0}
TRAIN_READINGS = 6000


@pytest.fixture
def plant_after_training():
    """A simulator (and its twin) of the champion's plant, set at the end of its training data."""
    from sensorwatch.pipeline.dev.simulator import Simulator

    def make():
        sims = Simulator(**PLANT), Simulator(**PLANT)
        for sim in sims:
            sim.normal(TRAIN_READINGS)
        return sims

    return make


@pytest.fixture(scope="session")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Champion:
    """A small model trained on simulated normal data with the ``plant`` preset, logged to a real
    MLflow store (SQLite), registered and promoted to ``champion``: what the service tests load."""
    from sensorwatch.pipeline.dev.simulator import CHANNELS, Simulator, series_by_asset
    from sensorwatch.pipeline.jobs.train import train_and_register
    from sensorwatch.pipeline.stores import store_of

    root = tmp_path_factory.mktemp("mlflow")
    settings = Settings(
        tracking_uri=f"sqlite:///{root}/mlflow.db",
        artifact_root=str(root / "artifacts"),
        preset="plant",
        epochs=10,
        train_stride=5,
        seed=3,
    )
    frame = Simulator(**PLANT).normal(TRAIN_READINGS)
    series = series_by_asset(frame)
    trained, version = train_and_register(
        settings, series, list(CHANNELS), "simulator", promote=True, progress=False
    )
    return Champion(store_of(settings), version, trained.spec, trained)


@pytest.fixture(scope="module")
def fuzz_inputs() -> Iterator[None]:
    """Print how many inputs each fuzz test of a module tried (``fuzzing.TRIED``), when it ends."""
    from fuzzing import TRIED

    yield
    print(
        f"\nfuzz inputs tried: {sum(TRIED.values())} "
        + " ".join(f"{k}={v}" for k, v in sorted(TRIED.items()))
    )
    TRIED.clear()


@pytest.fixture(scope="session")
def stream(champion):
    """The champion's plant after its training data with injected faults, decided at scale 1
    (``alarmstream.fault_stream``): the alarms the feedback tests tune and review."""
    from alarmstream import fault_stream

    return fault_stream(champion)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """One real ``mlflow server`` for the session (SQLite store, artifacts in a temp dir): tests
    keep apart by model and experiment names. The outage tests kill it and start it again on the
    same port and store (and ``ensure_up`` after each of them, should one fail midway)."""
    from mlflow_server import MlflowServer

    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory):
    """Airflow's home for the session, its database migrated in the background from the first
    request on (``airflow_run.AirflowHome``): ``ready()`` waits for it, so a model can train
    meanwhile."""
    from airflow_run import AirflowHome

    home = AirflowHome(tmp_path_factory.mktemp("airflow")).migrate()
    yield home
    home.close()
