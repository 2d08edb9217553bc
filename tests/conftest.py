"""Fixtures shared by the tests: one embedded broker, one trained champion model and one warmed
detector of it per session (per worker, with ``-n``).

Nothing here imports Keras: the compiled-forward cache that every test process shares (this one,
the xdist workers and each ``sensorwatch serve`` they start) is set before TensorFlow is imported,
and TensorFlow reads it only then. Tests run in a temp folder, never in the repository: the
settings' relative defaults (``.sensorwatch/...``) land there, and the session fails if the
repository's ``.sensorwatch`` changed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sensorwatch.models.mlflow_store import Store
from sensorwatch.models.registry import RegisteredVersion
from sensorwatch.models.spec import DetectorSpec
from sensorwatch.pipeline.dev.broker import EmbeddedBroker
from sensorwatch.pipeline.kafka.clients import service_topics
from sensorwatch.pipeline.settings import STATE_DIR, Settings

if TYPE_CHECKING:
    from sensorwatch.models.detector import Detector
    from sensorwatch.models.training import TrainedDetector

REPOSITORY = Path(__file__).resolve().parent.parent
# What tests must never write into the repository (the settings' relative defaults and MLflow's).
KEEP_OUT = (STATE_DIR, Path("mlruns"), Path("mlartifacts"))


_COMPILED = pytest.StashKey[Path]()
_REPOSITORY_BEFORE = pytest.StashKey[dict[str, tuple[int, int]]]()


def _snapshot() -> dict[str, tuple[int, int]]:
    """(mtime, size) of every file and folder in the repository's ``KEEP_OUT`` folders (0 for a
    folder: one made, even empty, is new)."""
    seen = {}
    for folder in KEEP_OUT:
        for path in [REPOSITORY / folder, *(REPOSITORY / folder).rglob("*")]:
            if path.is_file():
                seen[str(path.relative_to(REPOSITORY))] = (
                    path.stat().st_mtime_ns,
                    path.stat().st_size,
                )
            elif path.is_dir():
                seen[str(path.relative_to(REPOSITORY))] = (0, 0)
    return seen


def pytest_configure(config: pytest.Config) -> None:
    """One folder of compiled forward passes for the whole run, handed down through the
    environment (``TF_XLA_FLAGS``, ``JAX_COMPILATION_CACHE_DIR``) to the xdist workers and every
    process they start: a model that one of them compiled, the others load. Set in the first
    process only, before any test module (or this file) imports Keras."""
    config.stash[_REPOSITORY_BEFORE] = _snapshot()
    if hasattr(config, "workerinput"):  # an xdist worker: its controller set it for the run
        return
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if "tf_xla_persistent_cache_directory" not in flags:  # a cache the user set is theirs
        folder = Path(tempfile.mkdtemp(prefix="sensorwatch-tests-compiled-"))
        config.stash[_COMPILED] = folder
        os.environ["TF_XLA_FLAGS"] = f"{flags} --tf_xla_persistent_cache_directory={folder}".strip()
        os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(folder))


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_COMPILED, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The suite fails if it wrote into the repository's ``.sensorwatch`` (or MLflow's folders)."""
    before = session.config.stash.get(_REPOSITORY_BEFORE, {})
    written = sorted(path for path, seen in _snapshot().items() if before.get(path) != seen)
    if written:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "tests wrote into the repository: " + ", ".join(written[:10])
        if reporter is not None:
            reporter.write("\n")
            reporter.write_sep("!", message, red=True, bold=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session", autouse=True)
def away_from_the_repository(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test runs in a temp folder: settings left at their relative defaults
    (``.sensorwatch/champion``, ``.sensorwatch/archive``, ``.sensorwatch/mlflow.db``) and any
    ``.env`` are looked for there, not in the repository."""
    here = Path.cwd()
    work = tmp_path_factory.mktemp("cwd")
    os.chdir(work)
    try:
        yield work
    finally:
        os.chdir(here)


@pytest.fixture(scope="session")
def skab_dir() -> Path:
    """The SKAB data of the ``skab_dir`` setting; its relative default is beside the project (the
    tests run in a temp folder)."""
    path = Settings().skab_dir
    if not path.is_absolute():
        path = Path(__file__).resolve().parent.parent / path
    assert (path / "valve1").is_dir(), (
        f"SKAB data not found at {path.resolve()}: put the benchmark at ../shared/datasets/skab "
        "or point SENSORWATCH_SKAB_DIR at it"
    )
    return path


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of an embedded broker with the service's topics; its log is in a temp dir."""
    topics = service_topics(Settings())
    with EmbeddedBroker(topics, log_dir=tmp_path_factory.mktemp("broker")) as embedded:
        yield embedded.bootstrap_servers


@pytest.fixture(scope="session")
def service_settings(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for the service against the embedded broker, with short group timeouts, a
    checkpoint after every poll, and an archive and a champion copy in temp dirs (``helpers.fresh``
    gives each test folders of its own in them).

    The session timeout is Kafka's least default, 6 s (a group join waits about half of it): at
    2 s, a heartbeat held up by two busy workers on two cores has evicted a consumer, and a test
    that counts its assignments then failed."""
    return Settings(
        bootstrap_servers=broker,
        commit_interval_s=0,
        archive_uri=str(tmp_path_factory.mktemp("archive")),
        cache_dir=tmp_path_factory.mktemp("champion-copy"),
        session_timeout_ms=6000,
        max_poll_interval_ms=6000,
        poll_timeout_ms=200,
        reload_interval_s=0,
    )


@pytest.fixture(scope="session")
def champion_detector(champion: Champion) -> Detector:
    """The champion as the service loads it (``load_detector``), its forward pass compiled for
    every batch size: for the tests of what a service does with a model, not of loading one. Never
    changed by a test; a service swaps in a new version by replacing its processor's detector."""
    from sensorwatch.models.registry import load_detector

    detector = load_detector(champion.store, "champion").warm_up()
    assert detector.version == champion.version.version
    return detector


@dataclass
class Champion:
    store: Store
    version: RegisteredVersion
    detector_spec: DetectorSpec
    trained: TrainedDetector


# The simulated plant the champion learns, and how much of it: the service tests continue it.
PLANT = {"assets": 4, "seed": 3, "start_ms": 0}
TRAIN_READINGS = 6000


@pytest.fixture(scope="session")
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
    MLflow store (SQLite), registered and promoted to ``champion``: what the service tests load.
    Trained once per run: with xdist, the first worker trains it and every worker registers it in
    a store of its own."""
    from sensorwatch.pipeline.dev.simulator import CHANNELS, Simulator, series_by_asset
    from sensorwatch.pipeline.jobs.train import register, train_and_register
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
    shared = _run_folder(tmp_path_factory)
    if shared is None:
        trained, version = train_and_register(
            settings, series, list(CHANNELS), "simulator", promote=True, progress=False
        )
    else:  # trained by the first worker that asks, registered by each in its own store
        trained = _trained_once(shared / "champion", settings, series, list(CHANNELS))
        params = {
            "source": "simulator",
            "series": len(series),
            "readings": sum(len(s) for s in series),
        }
        version = register(settings, trained, params, promote=True)
    return Champion(store_of(settings), version, trained.spec, trained)


def _run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """The folder all xdist workers of this run share (their own temp folders' parent); None
    without workers."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return None
    return tmp_path_factory.getbasetemp().parent


def _trained_once(folder: Path, settings: Settings, series, channels: list[str]) -> TrainedDetector:
    """The champion's training, done once per run under a lock: the first worker trains and saves
    it (the Keras file and the rest pickled), the others load what it saved."""
    import dataclasses
    import fcntl
    import pickle

    from sensorwatch.models.backend import keras
    from sensorwatch.models.training import fit_detector

    folder.mkdir(exist_ok=True)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "trained.pickle").exists():
            options = settings.train_options(progress=False)
            trained = fit_detector(series, channels, settings.recipe(), options)
            trained.model.save(folder / "model.keras")
            rest = dataclasses.replace(trained, model=None)
            (folder / "trained.pickle").write_bytes(pickle.dumps(rest))
            return trained
    rest = pickle.loads((folder / "trained.pickle").read_bytes())
    model = keras.saving.load_model(folder / "model.keras", compile=False)
    return dataclasses.replace(rest, model=model)


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
