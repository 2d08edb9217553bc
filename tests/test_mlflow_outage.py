"""MLflow out of reach, a tracking URI that points nowhere, and model files changed after
registration: on a real ``mlflow server`` and real SQLite stores."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import committed, fresh, metric, read_all, serve_process, wait_for
from mlflow_server import MlflowServer

from sensorwatch.models.cache import ChampionCache, RegistryUnreachable, load_champion
from sensorwatch.models.integrity import IntegrityError
from sensorwatch.models.mlflow_store import Store, StoreError
from sensorwatch.models.register import log_training
from sensorwatch.models.registry import load_detector
from sensorwatch.pipeline.dev.replay import produce_frame
from sensorwatch.pipeline.dev.tansu import free_port
from sensorwatch.pipeline.service.reload import Reloader
from sensorwatch.pipeline.stream.processor import Processor

pytestmark = pytest.mark.integration


@pytest.fixture
def server(mlflow_server: MlflowServer):
    """The session's MLflow server, which this module's outage test kills and starts again: up
    again after the test whatever happened (the session's other tests need it)."""
    yield mlflow_server
    mlflow_server.ensure_up()


def test_mlflow_down_the_service_serves_its_local_copy_and_takes_the_next_version_when_back(
    server, service_settings, champion, plant_after_training, tmp_path
) -> None:
    # The test's own client waits for a server just started again on a busy machine; the service's
    # short timeout and no retries are its settings below.
    store = Store(server.uri, model_name="outage", timeout_s=30, retries=3)
    log_training(champion.trained, store, alias="champion")
    sim, _ = plant_after_training()
    frame = sim.normal(600)
    frame["ts_ms"] += int(time.time() * 1000) - 3_600_000 - int(frame["ts_ms"].min())
    first, second = frame.iloc[:300], frame.iloc[300:]
    settings = fresh(service_settings)
    extra = {
        "model_name": "outage",
        "mlflow_timeout_s": "2",
        "mlflow_retries": "0",
        "reload_interval_s": "1",
        "review_experiment": "outage-anomalies",  # the shared server's other experiments stay apart
    }

    up = serve_process(settings, server.uri, tmp_path, "up.log", **extra)
    try:
        produce_frame(settings, first, progress=False)
        assert wait_for(lambda: committed(settings) >= len(first), 120), (
            tmp_path / "up.log"
        ).read_text()
        up.send_signal(signal.SIGTERM)
        assert up.wait(60) == 0
    finally:
        up.kill()
    assert ChampionCache(tmp_path / ".sensorwatch/champion", "outage", "champion").version() == "1"

    server.stop()
    port = free_port()  # its /metrics counts the failed checks
    down = serve_process(
        settings, server.uri, tmp_path, "down.log", **extra, metrics_port=str(port)
    )
    log = tmp_path / "down.log"
    try:
        produce_frame(settings, second, progress=False)
        assert wait_for(lambda: committed(settings) >= len(frame), 120), log.read_text()
        assert "serving the local copy of version=1" in log.read_text()
        failed = "sensorwatch_model_check_failed_total"
        assert wait_for(lambda: metric(port, failed) >= 3, 60), log.read_text()
        assert log.read_text().count("model check failed") == 1  # said once, not at every check
        server.start()
        log_training(champion.trained, store, alias="champion")
        assert wait_for(lambda: "model reloaded version=2" in log.read_text(), 60), log.read_text()
        down.send_signal(signal.SIGTERM)
        assert down.wait(60) == 0, log.read_text()
    finally:
        down.kill()
    assert "model registry answers again" in log.read_text()
    assert "Traceback" not in log.read_text()
    assert read_all(settings, settings.dlq_topic, timeout_s=3) == []
    assert committed(settings) == len(frame)


def test_mlflow_down_and_no_local_copy_is_one_line_and_exit_2(broker, tmp_path) -> None:
    port = free_port()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sensorwatch.pipeline.cli",
            "serve",
            "--bootstrap-servers",
            broker,  # reached first: the model is loaded only once the broker is known to be there
            "--group-id",
            f"no-model-{tmp_path.name}",
            "--tracking-uri",
            f"http://127.0.0.1:{port}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **__import__("os").environ,
            "SENSORWATCH_MLFLOW_TIMEOUT_S": "2",
            "SENSORWATCH_MLFLOW_RETRIES": "0",
        },
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and "cannot be asked for the champion" in lines[0]
        and "no local copy" in lines[0]
    ), done.stderr


def _copy(champion, tmp_path: Path) -> Store:
    """The champion registered again in a store of this test's own (version 1, promoted)."""
    store = Store(
        f"sqlite:///{tmp_path}/mlflow.db",
        model_name="copy",
        artifact_root=str(tmp_path / "artifacts"),
    )
    log_training(champion.trained, store, alias="champion")
    return store


def _tamper(path: Path, champion) -> None:
    """Replace a saved model with one of the same shape and other weights."""
    from sensorwatch.models.backend import keras

    model = keras.models.clone_model(champion.trained.model)  # fresh weights, same architecture
    model.save(path)


def test_a_version_changed_after_registration_is_refused_and_the_old_one_keeps_serving(
    champion, broker, tmp_path
) -> None:
    store = _copy(champion, tmp_path)
    processor = Processor(load_detector(store, "champion"))
    log_training(champion.trained, store, alias="champion")  # version 2, then its files are changed
    files = sorted((tmp_path / "artifacts").rglob("model.keras"), key=lambda p: p.stat().st_mtime)
    _tamper(files[-1], champion)
    graphs = sorted((tmp_path / "artifacts").rglob("scoring.onnx"), key=lambda p: p.stat().st_mtime)
    changed = bytearray(graphs[-1].read_bytes())  # and its scoring graph, which serve loads
    changed[-1] ^= 1
    graphs[-1].write_bytes(bytes(changed))

    with pytest.raises(IntegrityError, match="does not match the digest recorded"):
        load_detector(store, "champion")
    reloader = Reloader(store, "champion", every_s=1)
    assert reloader.maybe_swap(processor, force=True) is None
    assert processor.detector.version == "1"

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sensorwatch.pipeline.cli",
            "serve",
            "--bootstrap-servers",
            broker,
            "--group-id",
            f"changed-{tmp_path.name}",
            "--tracking-uri",
            store.tracking_uri,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "SENSORWATCH_MODEL_NAME": "copy"},
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "refusing it" in done.stderr


def test_the_local_copy_is_checked_before_it_is_served(champion, tmp_path) -> None:
    store = _copy(champion, tmp_path)
    cache = ChampionCache(tmp_path / "cache", "copy", "champion")
    assert load_champion(store, "champion", cache).version == "1" and cache.exists()
    unreachable = replace(
        store, tracking_uri=f"http://127.0.0.1:{free_port()}", timeout_s=1, retries=0
    )
    assert load_champion(unreachable, "champion", cache).version == "1"

    _tamper(cache.path / "model.keras", champion)
    with pytest.raises(IntegrityError, match="does not match its recorded digest"):
        load_champion(unreachable, "champion", cache)
    with pytest.raises(RegistryUnreachable, match="no local copy"):
        load_champion(
            unreachable, "champion", ChampionCache(tmp_path / "empty", "copy", "champion")
        )


def test_a_model_that_does_not_fit_its_spec_is_refused(champion) -> None:
    from sensorwatch.models.integrity import check_fit

    spec = champion.detector_spec
    longer = replace(spec, recipe=spec.recipe.updated(window=spec.window + 5))
    with pytest.raises(IntegrityError, match="does not fit its spec"):
        check_fit(champion.trained.model, longer, "this model")
    check_fit(champion.trained.model, spec, "this model")


@pytest.mark.parametrize(
    "uri, says",
    [
        ("sqlite:///{tmp}/no/such/folder/mlflow.db", "which does not exist"),
        ("sqlight:///{tmp}/mlflow.db", "unknown MLflow tracking URI scheme"),
        ("{tmp}/missing/mlruns", "which does not exist"),
    ],
)
def test_a_tracking_uri_that_points_nowhere_is_an_error_not_a_new_store(
    uri, says, tmp_path
) -> None:
    uri = uri.format(tmp=tmp_path)
    for store in (Store(uri), Store(uri, create=False)):
        with pytest.raises(StoreError, match=says):
            load_detector(store)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sensorwatch.pipeline.cli",
            "train",
            "--readings",
            "100",
            "--assets",
            "1",
            "--tracking-uri",
            uri,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and says in done.stderr
    ), done.stderr
    assert not (tmp_path / "no").exists() and not (tmp_path / "missing").exists()
    assert list(tmp_path.iterdir()) == [], "nothing may be created"


def test_serving_from_a_store_that_does_not_exist_says_so(tmp_path) -> None:
    with pytest.raises(StoreError, match="no MLflow store at"):
        load_detector(Store(f"sqlite:///{tmp_path}/mlflow.db"))
    assert not (tmp_path / "mlflow.db").exists()


def test_a_version_with_another_window_is_refused_by_the_hot_swap_and_counted(
    champion, tmp_path
) -> None:
    from sensorwatch.models.autoencoder import build_autoencoder
    from sensorwatch.models.training import TrainedDetector, TrainOptions

    store = _copy(champion, tmp_path)
    spec = champion.detector_spec
    longer = replace(spec, recipe=spec.recipe.updated(window=spec.window + 5))
    model = build_autoencoder(
        longer.window, len(spec.channels), spec.recipe.units, spec.recipe.latent
    )
    processor = Processor(load_detector(store, "champion"))
    log_training(
        TrainedDetector(model, longer, {"loss": [1.0]}, TrainOptions(progress=False)),
        store,
        alias="champion",
    )
    refused: list[int] = []
    reloader = Reloader(store, "champion", every_s=1, on_refused=lambda: refused.append(1))
    assert reloader.maybe_swap(processor, force=True) is None
    assert processor.detector.version == "1" and refused == [1]
    assert reloader.maybe_swap(processor, force=True) is None and refused == [
        1
    ]  # refused once, not at every check
