"""The two runtimes of a model version: the exported ONNX scoring graph (what ``serve`` runs, with
no TensorFlow in the process) and the Keras model. Same scores, same alarms, checked exports."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from alarmstream import alarms_of, decide
from helpers import fresh, serve_and_say

from sensorwatch.models.integrity import ONNX_DIGEST_TAG, IntegrityError
from sensorwatch.models.mlflow_store import mlflow_for
from sensorwatch.models.registry import load_detector

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def keras_detector(champion):
    return load_detector(replace(champion.store, runtime="keras"))


def test_both_runtimes_score_the_same_windows(champion, champion_detector, keras_detector) -> None:
    assert (champion_detector.runtime, keras_detector.runtime) == ("onnx", "keras")
    normal = champion.trained.validation
    rng = np.random.default_rng(5)
    # Far-off windows too: a level shift, spikes, and readings beyond the clipping limit.
    shifted = normal[:50] + 3 * np.asarray(champion.detector_spec.std, np.float32)
    spiky = normal[:50] * (1 + 5 * (rng.random(normal[:50].shape) > 0.97))
    extreme = normal[:4].copy()
    extreme[:, 5, 0] = 1e25
    windows = np.concatenate([normal, shifted, spiky, extreme]).astype(np.float32)
    (s_onnx, e_onnx), (s_keras, e_keras) = (
        d.score(windows) for d in (champion_detector, keras_detector)
    )
    assert s_onnx.shape == s_keras.shape == (len(windows),)
    assert np.all(np.isfinite(s_onnx))
    np.testing.assert_allclose(s_onnx, s_keras, rtol=1e-4)
    np.testing.assert_allclose(e_onnx, e_keras, rtol=1e-4, atol=1e-6 * float(e_keras.mean()))
    a, b = (d.reconstruct(windows[:8]) for d in (champion_detector, keras_detector))
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.abs(b).mean()))
    assert np.array_equal(champion_detector.change(windows), keras_detector.change(windows))
    empty = windows[:0]
    assert [x.shape for x in champion_detector.score(empty)] == [
        x.shape for x in keras_detector.score(empty)
    ]


def test_both_runtimes_raise_the_same_alarms(stream, keras_detector) -> None:
    assert stream.detector.runtime == "onnx"
    alarms = alarms_of(decide(keras_detector, stream.readings), keras_detector)
    key = [(a.event_id, a.start_ms, a.end_ms, a.cleared) for a in stream.alarms]
    assert [(a.event_id, a.start_ms, a.end_ms, a.cleared) for a in alarms] == key
    np.testing.assert_allclose(
        [a.margin for a in alarms], [a.margin for a in stream.alarms], rtol=1e-4
    )


def test_registration_refuses_a_graph_that_scores_otherwise(champion, monkeypatch) -> None:
    from sensorwatch.models import compiled
    from sensorwatch.models.register import scoring_graph

    export = compiled.export_onnx

    def off_by_a_percent(model, mean, std, scale, reduce="mean"):
        return export(model, mean, std, np.asarray(scale) * 1.01, reduce)

    monkeypatch.setattr(compiled, "export_onnx", off_by_a_percent)
    with pytest.raises(IntegrityError, match="differ from the Keras model's by up to 0.0099"):
        scoring_graph(champion.trained)


def test_a_version_without_a_graph_or_with_another_one_is_refused(champion) -> None:
    from mlflow import MlflowClient

    mlflow_for(champion.store)
    client, name = MlflowClient(), champion.store.model_name
    version = champion.version.version
    recorded = client.get_model_version(name, version).tags[ONNX_DIGEST_TAG]
    try:
        client.delete_model_version_tag(name, version, ONNX_DIGEST_TAG)
        with pytest.raises(IntegrityError, match="has no ONNX scoring graph .*RUNTIME=keras"):
            load_detector(champion.store)
        client.set_model_version_tag(name, version, ONNX_DIGEST_TAG, "0" * 64)
        with pytest.raises(IntegrityError, match="does not match the digest recorded"):
            load_detector(champion.store)
    finally:
        client.set_model_version_tag(name, version, ONNX_DIGEST_TAG, recorded)
    assert load_detector(champion.store).model.digest == recorded


def test_the_local_copy_keeps_the_graph_and_checks_it(champion_detector, tmp_path) -> None:
    from sensorwatch.models.cache import GRAPH, ChampionCache

    cache = ChampionCache(tmp_path, "m", "champion")
    cache.save(champion_detector)
    kept = cache.load("onnx")
    assert (kept.runtime, kept.version) == ("onnx", champion_detector.version)
    windows = np.zeros((3, kept.spec.window, len(kept.spec.channels)), np.float32)
    assert np.array_equal(kept.score(windows)[0], champion_detector.score(windows)[0])
    with pytest.raises(IntegrityError, match="kept for the onnx runtime, not keras"):
        cache.load("keras")
    graph = cache.path / GRAPH
    graph.write_bytes(graph.read_bytes()[:-1] + b"\0")
    with pytest.raises(IntegrityError, match="does not match its recorded digest"):
        cache.load("onnx")


def test_serve_scores_without_importing_tensorflow(service_settings, champion, tmp_path) -> None:
    """The service as ``serve`` starts it (champion from MLflow, broker, group, sinks) scores a
    stream in a process that never imports TensorFlow or Keras."""
    settings = fresh(service_settings)
    said = serve_and_say(
        settings,
        tmp_path,
        SENSORWATCH_TRACKING_URI=champion.store.tracking_uri,
        SENSORWATCH_RELOAD_INTERVAL_S="0",
    )
    assert said["sent"] > 0 and said["scored"] == said["sent"], said
    assert said["runtime"] == "onnx"
    assert said["heavy"] == [], said["heavy"][:10]
