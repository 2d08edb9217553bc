"""Start-up from the champion's local copy: ``serve`` scores from a checked copy without importing
MLflow on its way to ready, takes MLflow's champion when the local store's alias moved, and asks a
tracking server after start, swapping in its champion when it differs. On the embedded broker,
real SQLite stores and a real ``mlflow server``."""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import fresh, serve_and_say, wait_for

from sensorwatch.models.cache import ChampionCache, start_champion
from sensorwatch.models.integrity import IntegrityError
from sensorwatch.models.mlflow_store import Store, StoreError, mlflow_for
from sensorwatch.models.register import log_training
from sensorwatch.models.registry import SCALE_TAG, load_detector

pytestmark = pytest.mark.integration


def _store(champion, tmp_path: Path, **fields) -> Store:
    """The champion registered again (version 1, promoted) in a SQLite store of this test's own."""
    store = Store(
        f"sqlite:///{tmp_path}/mlflow.db",
        model_name="start",
        artifact_root=str(tmp_path / "artifacts"),
        runtime="onnx",
        **fields,
    )
    log_training(champion.trained, store, alias="champion")
    return store


def test_a_copy_the_local_store_names_is_started_from_and_one_it_does_not_is_replaced(
    champion, tmp_path, caplog
) -> None:
    store = _store(champion, tmp_path)
    cache = ChampionCache(tmp_path / "cache", store.model_name, "champion")
    detector, where = start_champion(store, "champion", cache)  # no copy yet: from MLflow, kept
    assert (where, detector.version, cache.version()) == ("mlflow", "1", "1")
    detector, where = start_champion(store, "champion", cache)
    assert (where, detector.version) == ("copy", "1")

    log_training(champion.trained, store, alias="champion")  # the alias moves on: version 2
    detector, where = start_champion(store, "champion", cache)
    assert (where, detector.version, cache.version()) == ("mlflow", "2", "2")

    # A threshold scale tagged on the version since the copy was kept: MLflow's version is served.
    from mlflow import MlflowClient

    mlflow_for(store)
    MlflowClient().set_model_version_tag(store.model_name, "2", SCALE_TAG, "1.5")
    detector, where = start_champion(store, "champion", cache)
    assert where == "mlflow" and detector.spec.recipe.threshold_scale == 1.5
    assert start_champion(store, "champion", cache)[1] == "copy"

    # A copy whose graph changed is refused, said in one line, and replaced by MLflow's champion.
    graph = cache.path / "scoring.onnx"
    graph.write_bytes(graph.read_bytes()[:-1] + b"\0")
    with caplog.at_level(logging.WARNING, logger="sensorwatch.models"):
        detector, where = start_champion(store, "champion", cache)
    assert (where, detector.version) == ("mlflow", "2")
    [said] = [r.getMessage() for r in caplog.records if r.name == "sensorwatch.models"]
    assert "does not match its recorded digest" in said and "from MLflow instead" in said
    assert start_champion(store, "champion", cache)[1] == "copy"

    # A copy kept for the other runtime is not started from: the store loads the runtime asked for.
    assert start_champion(replace(store, runtime="keras"), "champion", cache)[1] == "mlflow"
    assert cache.runtime() == "keras"


def test_a_store_that_points_nowhere_or_was_moved_is_refused_though_a_copy_is_there(
    champion, champion_detector, tmp_path
) -> None:
    cache = ChampionCache(tmp_path / "cache", "sensorwatch-lstm-ae", "champion")
    cache.save(champion_detector)
    gone = Store(f"sqlite:///{tmp_path}/no/such/mlflow.db", runtime="onnx")
    with pytest.raises(StoreError, match="which does not exist"):
        start_champion(gone, "champion", cache)

    # The embedded store made in one folder and named from another (a copied project): refused
    # from its file, before the copy is served and without MLflow.
    state = tmp_path / "project" / ".sensorwatch"
    state.mkdir(parents=True)
    made = Store(
        f"sqlite:///{state}/mlflow.db",
        artifact_root=str(state / "artifacts"),
        create=True,
        runtime="onnx",
    )
    log_training(champion.trained, made, alias="champion")
    moved = replace(made, artifact_root=str(tmp_path / "elsewhere" / "artifacts"))
    with pytest.raises(StoreError, match="copied or moved from where it was made"):
        start_champion(moved, "champion", cache)
    assert start_champion(made, "champion", cache)[0].version == "1"


def test_a_changed_copy_with_mlflow_out_of_reach_is_refused(champion, tmp_path) -> None:
    store = _store(champion, tmp_path)
    cache = ChampionCache(tmp_path / "cache", store.model_name, "champion")
    start_champion(store, "champion", cache)
    graph = cache.path / "scoring.onnx"
    graph.write_bytes(graph.read_bytes()[:-1] + b"\0")
    from sensorwatch.pipeline.dev.tansu import free_port

    unreachable = replace(
        store, tracking_uri=f"http://127.0.0.1:{free_port()}", timeout_s=1, retries=0
    )
    with pytest.raises(IntegrityError, match="does not match its recorded digest"):
        start_champion(unreachable, "champion", cache)


def test_serve_starts_from_its_local_copy_without_importing_mlflow(
    service_settings, champion, champion_detector, tmp_path
) -> None:
    """The service as ``serve`` starts it, with the champion's checked copy in its cache folder
    and a local store whose alias names that version: ready (a model, partitions, a broker)
    before anything imports MLflow, then it scores the stream."""
    settings = fresh(service_settings)
    ChampionCache(settings.cache_dir, champion.store.model_name, "champion").save(champion_detector)
    said = serve_and_say(
        settings,
        tmp_path,
        SENSORWATCH_TRACKING_URI=champion.store.tracking_uri,
        SENSORWATCH_MODEL_NAME=champion.store.model_name,
        SENSORWATCH_RELOAD_INTERVAL_S="0",
    )
    at_ready = said["at_ready"]
    assert at_ready["ready"], at_ready["why"]
    assert at_ready["version"] == champion.version.version
    assert at_ready["mlflow"] == [], at_ready["mlflow"]
    assert not at_ready["tensorflow"]
    assert said["sent"] > 0 and said["scored"] == said["sent"], said


def test_a_copy_started_from_is_checked_with_the_tracking_server_and_its_champion_swapped_in(
    mlflow_server, service_settings, champion, tmp_path
) -> None:
    """With a tracking server, ``serve`` starts from its copy without asking, asks right after
    start (whatever the reload interval), and swaps in the champion promoted meanwhile."""
    from sensorwatch.pipeline.service.startup import in_background, start_service

    store = Store(
        mlflow_server.uri,
        model_name=f"confirm-{uuid.uuid4().hex[:8]}",
        timeout_s=30,
        retries=3,
        runtime="onnx",
    )
    log_training(champion.trained, store, alias="champion")
    settings = fresh(service_settings).model_copy(
        update={
            "tracking_uri": store.tracking_uri,
            "model_name": store.model_name,
            "review_buffer": 0,
            "reload_interval_s": 0,  # never checked again: the check at start is what swaps
        }
    )
    cache = ChampionCache(settings.cache_dir, store.model_name, "champion")
    cache.save(load_detector(store))
    log_training(champion.trained, store, alias="champion")  # version 2 while the service is down

    service = start_service(settings)
    assert service.processor.detector.version == "1"  # the copy, MLflow not asked yet
    stop = threading.Event()
    done = in_background(service.run, stop)
    try:
        assert wait_for(lambda: service.processor.detector.version == "2", 120)
    finally:
        stop.set()
        done.result(60)
    assert cache.version() == "2"  # the next start starts from the champion
