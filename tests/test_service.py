"""The service end to end on the embedded broker and a real MLflow store: champion model loaded
from the registry, anomalies on the topic, bad records dead-lettered, offsets committed."""

from __future__ import annotations

import signal
import threading
import time

import orjson
import pytest
from helpers import fresh, read_all, run_until, serve_process, wait_for
from kafka import TopicPartition

from sensorwatch.models.registry import load_detector
from sensorwatch.pipeline.dev.replay import produce_frame
from sensorwatch.pipeline.dev.simulator import Simulator
from sensorwatch.pipeline.kafka import clients as kafka
from sensorwatch.pipeline.service.loop import Service
from sensorwatch.schemas.events import decode_event

pytestmark = pytest.mark.integration


def test_champion_flags_injected_faults_on_the_anomalies_topic(
    service_settings, champion, champion_detector, plant_after_training
) -> None:
    settings = fresh(service_settings)
    # The plant the champion learned, going on after its training data, with faults on two pumps;
    # the other two stay healthy: their rows come from a twin simulator's fault-free run.
    sim, twin = plant_after_training()
    frame, faults = sim.with_faults(
        1200, faults_per_asset=2, kinds=("level_shift", "broken_correlation")
    )
    healthy = {"pump-03", "pump-04"}
    frame = frame.where(~frame["asset_id"].isin(healthy), twin.normal(1200))
    faults = [f for f in faults if f.asset_id not in healthy]
    sent = produce_frame(settings, frame, progress=False)
    assert champion_detector.version == champion.version.version
    service = Service.on_kafka(settings, champion_detector, champion.store)
    run_until(service, sent)

    assert service.stats.scored == sent and service.stats.rejected == 0
    events = [decode_event(r.value) for r in read_all(settings, settings.anomalies_topic)]
    assert {e.model_version for e in events} == {champion.version.version}
    assert {e.asset_id for e in events} == {f.asset_id for f in faults}  # every faulty pump alarms
    assert not {e.asset_id for e in events} & healthy  # and no healthy one
    assert all(abs(sum(e.contributions.values()) - 1) < 1e-2 for e in events)
    # Everything polled was committed: the group's offsets are at the end of each partition.
    probe = kafka.consumer(settings)
    parts = [
        TopicPartition(settings.readings_topic, p)
        for p in probe.partitions_for_topic(settings.readings_topic)
    ]
    committed = sum(probe.committed(tp) or 0 for tp in parts)
    probe.close()
    assert committed == sent


BAD = {
    b"{not json": "malformed JSON",
    b"[1, 2]": "not an object",
    b'{"asset_id": "p", "values": {}}': "missing field 'ts'",
    b'{"asset_id": "p", "ts": 1, "values": {}, "x": 1}': "unexpected field 'x'",
    b'{"asset_id": 5, "ts": 1, "values": {}}': "asset_id",
    b'{"asset_id": "p", "ts": "yesterday", "values": {}}': "ts: unparsable",
    b'{"asset_id": "p", "ts": 99999999999999, "values": {}}': "in the future",
    b"": "empty message",
}


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
def test_every_record_is_scored_or_dead_lettered(
    service_settings, champion, champion_detector, client: str
) -> None:
    settings = fresh(service_settings).model_copy(update={"kafka_client": client})
    channels = champion.detector_spec.channels
    t0 = int(time.time() * 1000) - 600_000
    good = [
        {"asset_id": "p1", "ts": t0 + i * 1000, "values": {c: 1.0 + 0.01 * i for c in channels}}
        for i in range(40)
    ]
    wrong = {c: 1.0 for c in channels}
    bad_values = [
        (
            {"asset_id": "p1", "ts": t0 + 50_000, "values": {**wrong, channels[0]: "x"}},
            "must be a number",
        ),
        (
            {"asset_id": "p1", "ts": t0 + 51_000, "values": {**wrong, "bogus": 1.0}},
            "unknown channel",
        ),
        (
            {"asset_id": "p1", "ts": t0 + 52_000, "values": {c: 1.0 for c in channels[1:]}},
            "missing channel",
        ),
        ({"asset_id": "p1", "ts": t0 + 5_000, "values": wrong}, "duplicate"),  # already seen
        ({"asset_id": "p1", "ts": t0 - 60_000, "values": wrong}, "late"),  # before the window
    ]
    nan = b'{"asset_id": "p1", "ts": %d, "values": {%s}}' % (
        t0 + 53_000,
        b", ".join(
            b'"%s": %s' % (c.encode(), b"NaN" if i == 0 else b"1.0") for i, c in enumerate(channels)
        ),
    )
    oversized = orjson.dumps({"asset_id": "p1", "ts": t0, "values": {"pad" * 30_000: 1.0}})
    send = kafka.producer(settings)
    for doc in good:
        send.send(settings.readings_topic, key=b"p1", value=orjson.dumps(doc))
    send.flush()
    payloads = list(BAD) + [orjson.dumps(d) for d, _ in bad_values] + [nan, oversized]
    for raw in payloads:
        send.send(settings.readings_topic, key=b"p1", value=raw)
    send.close()
    total = len(good) + len(payloads)

    service = Service.on_kafka(settings.model_copy(update={"grace_s": 0.0}), champion_detector)
    run_until(service, total)

    dead = read_all(settings, settings.dlq_topic, expect=total - service.stats.scored)
    reasons = [dict(r.headers)["reason"].decode() for r in dead]
    assert service.stats.scored + len(dead) == total  # none lost
    assert service.stats.scored == len(good)
    expected = list(BAD.values()) + [why for _, why in bad_values] + ["NaN", "oversized"]
    for why in expected:
        assert any(why in r for r in reasons), f"no dead letter says {why!r}: {reasons}"
    assert all(dict(r.headers)["source.topic"].decode() == settings.readings_topic for r in dead)


def test_serve_stops_cleanly_on_sigterm(service_settings, champion, tmp_path) -> None:
    settings = fresh(service_settings)
    proc = serve_process(settings, champion.store.tracking_uri, tmp_path)
    log = tmp_path / "serve.log"
    try:
        assert wait_for(lambda: "assigned partitions" in log.read_text(), 60), log.read_text()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        proc.kill()
    out = log.read_text()
    assert proc.returncode == 0, out
    assert "stopped: 0 records" in out


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
def test_replicas_in_one_group_share_the_partitions(
    service_settings, champion_detector, client: str
) -> None:
    """Two scorers in one consumer group split the readings: each is scored once, none lost."""
    settings = fresh(service_settings).model_copy(update={"kafka_client": client})
    replicas = [Service.on_kafka(settings, champion_detector) for _ in range(2)]
    stop = threading.Event()
    runners = [threading.Thread(target=r.run, args=(stop,)) for r in replicas]
    for t in runners:
        t.start()
    wait_for(lambda: all(r.assigned for r in replicas), 60, every_s=0.05)
    shares = [set(r.assigned) for r in replicas]
    sim = Simulator(assets=6, seed=4, start_ms=int(time.time() * 1000) - 3_600_000)
    sent = produce_frame(settings, sim.normal(300), progress=False)
    wait_for(lambda: sum(r.stats.records for r in replicas) >= sent, 90, every_s=0.05)
    stop.set()
    for t in runners:
        t.join(timeout=60)
    assert all(shares) and not shares[0] & shares[1]  # the partitions are split between them
    assert sum(r.stats.scored for r in replicas) == sent  # each reading scored once, none lost
    assert all(r.stats.scored for r in replicas)  # and both did their share


def test_a_new_champion_is_picked_up_without_restart(
    service_settings, champion, champion_detector
) -> None:
    from sensorwatch.models.register import log_training
    from sensorwatch.models.registry import set_alias

    settings = fresh(service_settings).model_copy(update={"reload_interval_s": 0.01})
    service = Service.on_kafka(settings, champion_detector, champion.store)
    try:
        newer = log_training(champion.trained, champion.store, {"source": "retrain"})
        assert service.processor.detector.version == champion.version.version
        set_alias(champion.store, newer.version, "champion")
        # The 0.01 s between checks passed while the version was logged (seconds): the next
        # look at the alias finds it moved.
        assert service.reloader.clock() - service.reloader._checked_at > settings.reload_interval_s
        assert (
            service.reloader.maybe_swap(service.processor) is None
        )  # loading, off the poll thread
        assert wait_for(
            lambda: service.reloader.maybe_swap(service.processor) == newer.version,
            60,
            every_s=0.05,
        )
        assert service.processor.detector.version == newer.version
    finally:
        set_alias(champion.store, champion.version.version, "champion")
        service.reloader.close()
        service.source.close()
        service.checkpoint.close()


def test_a_running_service_switches_champion_mid_stream_without_losing_or_repeating_a_reading(
    service_settings, champion, plant_after_training, tmp_path
) -> None:
    """The alias moves while readings stream: the new version is loaded off the poll loop and takes
    over between two polls; a version with another window is refused and counted; every reading is
    scored exactly once, by one version or the other."""
    from dataclasses import replace

    import pyarrow.dataset as ds
    from helpers import committed

    from sensorwatch.models.autoencoder import build_autoencoder
    from sensorwatch.models.mlflow_store import Store
    from sensorwatch.models.register import log_training
    from sensorwatch.models.training import TrainedDetector, TrainOptions
    from sensorwatch.pipeline.archive import read_archive

    store = Store(
        f"sqlite:///{tmp_path}/mlflow.db",
        model_name="swap",
        artifact_root=str(tmp_path / "artifacts"),
    )
    log_training(champion.trained, store, alias="champion")
    settings = fresh(service_settings).model_copy(
        update={
            "reload_interval_s": 0.5,
            "archive_uri": str(tmp_path / "archive"),
            "cache_dir": tmp_path / "cache",
        }
    )
    sim, _ = plant_after_training()
    frame = sim.normal(600)
    frame["ts_ms"] += int(time.time() * 1000) - 3_600_000 - int(frame["ts_ms"].min())
    first, second = frame.iloc[: len(frame) // 2], frame.iloc[len(frame) // 2 :]
    service = Service.on_kafka(settings, load_detector(store, "champion"), store)
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,))
    runner.start()
    try:
        produce_frame(settings, first, progress=False)
        assert wait_for(lambda: committed(settings) >= len(first), 90)
        log_training(champion.trained, store, alias="champion")  # version 2
        assert wait_for(lambda: service.processor.detector.version == "2", 90)

        spec = champion.detector_spec
        longer = replace(spec, recipe=spec.recipe.updated(window=spec.window + 5))
        model = build_autoencoder(
            longer.window, len(spec.channels), spec.recipe.units, spec.recipe.latent
        )
        log_training(
            TrainedDetector(model, longer, {"loss": [1.0]}, TrainOptions(progress=False)),
            store,
            alias="champion",
        )
        assert wait_for(lambda: service.metrics.model_refused._value.get() == 1, 90)

        produce_frame(settings, second, progress=False)
        assert wait_for(lambda: committed(settings) >= len(frame), 90)
    finally:
        stop.set()
        runner.join(60)
    assert service.processor.detector.version == "2"  # the refused version 3 never served
    assert service.stats.scored == len(frame) and committed(settings) == len(frame)
    scores = (
        ds.dataset(str(tmp_path / "archive" / "scores"), format="parquet").to_table().to_pandas()
    )
    assert not scores.duplicated(["asset_id", "ts_ms"]).any()  # no window scored twice
    assert set(scores["model_version"]) == {"1", "2"} and len(scores) == service.stats.windows
    assert sum(len(f) for f in read_archive(str(tmp_path / "archive")).values()) == len(frame)
