"""Faults injected for real on the embedded broker: ``kill -9`` mid-stream, replicas joining and
leaving. The run that suffered them must end with the same events (same ids), the same final
per-asset state and every reading committed, as an uninterrupted run of the same readings."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter

import orjson
import pytest
from helpers import committed, fresh, metric, read_all, serve_process, wait_for

from sensorwatch.pipeline.dev.replay import produce_frame
from sensorwatch.pipeline.dev.tansu import free_port
from sensorwatch.pipeline.kafka import clients as kafka
from sensorwatch.pipeline.kafka.changelog import changelog_topic
from sensorwatch.pipeline.service.loop import Service
from sensorwatch.pipeline.stream import state
from sensorwatch.schemas.events import decode_event

pytestmark = pytest.mark.integration

GARBAGE = [
    b"{oops",
    b"",
    b'{"asset_id": "pump-01", "ts": 0, "values": {"flow": 1e39}}',
    b"[]" * 40_000,
]


def stream(plant_after_training, readings: int = 700):
    """The champion's plant going on, with faults on two of its four pumps."""
    sim, _ = plant_after_training()
    frame, _ = sim.with_faults(readings, faults_per_asset=1, kinds=("level_shift", "spike"))
    now_ms = int(time.time() * 1000)
    frame["ts_ms"] += now_ms - 3_600_000 - int(frame["ts_ms"].min())  # an hour ago, all in the past
    half = frame[frame["ts_ms"] < frame["ts_ms"].quantile(0.5)]
    return half, frame.drop(half.index)


def send_garbage(settings) -> None:
    producer = kafka.producer(settings, max_request_size=2_000_000)
    for raw in GARBAGE:
        producer.send(settings.readings_topic, key=b"pump-01", value=raw)
    producer.flush()
    producer.close()


def outcome(settings) -> tuple[Counter, dict[str, dict], list]:
    """Events by (id, kind), each asset's final state, and the dead letters' source offsets."""
    events = Counter(
        (e.event_id, e.kind)
        for e in (decode_event(r.value) for r in read_all(settings, settings.anomalies_topic))
    )
    final: dict[str, bytes] = {}
    for rec in read_all(settings, changelog_topic(settings)):
        final[rec.key.decode()] = rec.value
    states = {a: _comparable(state.decode(v)) for a, v in final.items()}
    dead = sorted(
        (dict(r.headers)["source.partition"], dict(r.headers)["source.offset"])
        for r in read_all(settings, settings.dlq_topic)
    )
    return events, states, dead


def _comparable(saved: dict) -> dict:
    """A state snapshot as plain, comparable values (arrays as lists; each run has its own topics)."""
    saved["applied"] = [[partition, offset] for _, partition, offset in saved["applied"]]
    return orjson.loads(state.encode(saved))


def run_in_process(settings, champion, detector, produce) -> Service:
    service = Service.on_kafka(settings, detector, champion.store)
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,))
    runner.start()
    total = produce()
    assert wait_for(lambda: committed(settings) >= total, 120), "the reference run did not finish"
    stop.set()
    runner.join(60)
    return service


@pytest.fixture(scope="module")
def uninterrupted(service_settings, champion, champion_detector, plant_after_training):
    """The stream with garbage between its halves, and what one replica that is never interrupted
    makes of it: the reference every kill is compared with."""
    first, second = stream(plant_after_training)
    reference = fresh(service_settings)
    run_in_process(
        reference,
        champion,
        champion_detector,
        lambda: (
            produce_frame(reference, first, progress=False)
            + (send_garbage(reference) or len(GARBAGE))
            + produce_frame(reference, second, progress=False)
        ),
    )
    return first, second, outcome(reference)


@pytest.mark.parametrize("commit_interval_s", [0.0, 3.0])
def test_kill_9_mid_stream_loses_nothing_and_repeats_only_known_events(
    service_settings, champion, uninterrupted, tmp_path, commit_interval_s
) -> None:
    first, second, (expected_events, expected_states, expected_dead) = uninterrupted
    total = len(first) + len(second) + len(GARBAGE)
    assert expected_events, "the faults must raise alarms, or this test shows nothing"

    # Small polls, so the second half takes many checkpoints and the kill lands between two.
    settings = fresh(service_settings).model_copy(
        update={
            "max_poll_records": 40,
            "commit_interval_s": commit_interval_s,
            "archive_uri": str(tmp_path / "archive"),
        }
    )
    produce_frame(settings, first, progress=False)
    send_garbage(settings)
    port = free_port()
    proc = serve_process(
        settings, champion.store.tracking_uri, tmp_path, "first.log", metrics_port=str(port)
    )
    try:
        assert wait_for(lambda: committed(settings) >= len(first) + len(GARBAGE), 120), (
            tmp_path / "first.log"
        ).read_text()
        if commit_interval_s:
            # Checkpoints 3 s apart: the second half is read and scored (events sent, archive
            # written) well before the next one, and the kill lands in between.
            produce_frame(settings, second, progress=False)
            assert wait_for(lambda: metric(port, "sensorwatch_records_total") >= total, 60)
        else:
            # A checkpoint after every poll: killed once a third of the second half is committed,
            # with its last third not sent yet, so the kill lands mid-stream however fast the
            # service reads (it comes after the kill, in the same order as in the reference).
            second = second.sort_values("ts_ms", kind="stable")
            later = second.iloc[2 * len(second) // 3 :]
            produce_frame(settings, second.iloc[: len(second) - len(later)], progress=False)
            mid = len(first) + len(GARBAGE) + len(second) // 3
            assert wait_for(lambda: committed(settings) >= mid, 60, every_s=0.02)
        proc.send_signal(signal.SIGKILL)  # mid-stream, between or inside checkpoints
        proc.wait(30)
    finally:
        proc.kill()
    assert committed(settings) < total, "the kill came too late to test anything"
    if not commit_interval_s:
        produce_frame(settings, later, progress=False)
    proc = serve_process(settings, champion.store.tracking_uri, tmp_path, "second.log")
    try:
        assert wait_for(lambda: committed(settings) >= total, 120), (
            tmp_path / "second.log"
        ).read_text()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        proc.kill()
    assert proc.returncode == 0, (tmp_path / "second.log").read_text()

    events, states, dead = outcome(settings)
    assert set(events) == set(expected_events)  # the same alarms, opened and cleared, same ids
    assert states == expected_states  # every asset ends exactly where the uninterrupted run ended
    assert sorted(set(dead)) == sorted(set(expected_dead)) and len(set(dead)) == len(GARBAGE)
    assert committed(settings) == total
    from sensorwatch.pipeline.archive import read_archive

    archived = read_archive(
        str(tmp_path / "archive")
    )  # every reading, read once however often written
    assert sum(len(f) for f in archived.values()) == len(first) + len(second)


def test_a_replica_joining_and_leaving_mid_stream_changes_nothing(
    service_settings, champion_detector, uninterrupted
) -> None:
    first, second, (expected_events, expected_states, expected_dead) = uninterrupted
    readings = len(first) + len(second)
    total = readings + len(GARBAGE)  # records: the garbage between the halves is dead-lettered

    settings = fresh(service_settings)
    replicas = [Service.on_kafka(settings, champion_detector) for _ in range(2)]
    stops = [threading.Event(), threading.Event()]
    runners = [threading.Thread(target=r.run, args=(s,)) for r, s in zip(replicas, stops)]
    runners[0].start()
    assert wait_for(lambda: replicas[0].assigned, 60)
    produce_frame(settings, first, progress=False)
    send_garbage(settings)
    assert wait_for(lambda: committed(settings) >= len(first) // 2, 60)
    runners[1].start()  # joins mid-stream: the partitions are split, the state moves with them
    assert wait_for(lambda: replicas[1].assigned and replicas[0].assigned, 60)
    produce_frame(settings, second, progress=False)
    assert wait_for(lambda: committed(settings) >= len(first) + len(GARBAGE) + len(second) // 3, 60)
    stops[1].set()  # leaves mid-stream: its partitions go back, with their state
    runners[1].join(60)
    assert not runners[1].is_alive()
    # The replica left standing holds every partition again, their state restored, before it
    # stops: readings still in their grace period at the hand-over are in the restored state and
    # are scored by its last checkpoint. (Stopped during its rejoin, it would hold none, and the
    # changelog would keep them waiting, as it should, for whichever replica comes next.)
    everything = {(settings.readings_topic, p) for p in (0, 1)}
    assert wait_for(
        lambda: replicas[0].assigned == everything and not replicas[0].source.assigned_new, 60
    )
    assert wait_for(lambda: committed(settings) >= total, 120)
    stops[0].set()
    runners[0].join(60)

    events, states, dead = outcome(settings)
    assert set(events) == set(expected_events)
    assert states == expected_states
    assert sorted(set(dead)) == sorted(set(expected_dead))  # each bad record, by where it was read
    assert (
        sum(r.stats.scored for r in replicas) == readings
    )  # each reading scored once: the state moved, not the work


class SlowDetector:
    """The champion, scoring each window 5 ms slower: a poll of 2,000 readings would take 10 s."""

    def __init__(self, detector) -> None:
        self._detector = detector

    def __getattr__(self, name):
        return getattr(self._detector, name)

    def warm_up(self):
        self._detector.warm_up()
        return self

    def score(self, windows):
        time.sleep(0.005 * len(windows))
        return self._detector.score(windows)


def test_a_slow_model_shrinks_the_polls_instead_of_getting_evicted(
    service_settings, champion_detector, plant_after_training
) -> None:
    first, second = stream(plant_after_training, readings=500)
    settings = fresh(service_settings).model_copy(
        update={"max_poll_interval_ms": 3000, "max_poll_records": 2000}
    )
    total = produce_frame(settings, first, progress=False) + produce_frame(
        settings, second, progress=False
    )
    service = Service.on_kafka(settings, SlowDetector(champion_detector))
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,))
    runner.start()
    try:
        assert wait_for(lambda: committed(settings) >= total, 180)
    finally:
        stop.set()
        runner.join(60)
    assert service.source.assignments == 1  # never evicted, never re-joined
    assert service.stats.scored == total and service.stats.rejected == 0
    assert service.source.max_records < 2000  # the polls were sized to the slow model


def test_poison_pills_are_dead_lettered_and_the_service_stays_up(
    service_settings, champion, champion_detector, plant_after_training
) -> None:
    """A record over a megabyte (too big to copy into the dead-letter topic), numbers beyond float32,
    a reading whose huge value overflows the model: each is set aside or scored, the service goes on."""
    settings = fresh(service_settings)
    sim, _ = plant_after_training()
    frame = sim.normal(60)
    frame["ts_ms"] += int(time.time() * 1000) - 3_600_000 - int(frame["ts_ms"].min())
    producer = kafka.producer(settings, max_request_size=4_000_000)
    big = orjson.dumps(
        {"asset_id": "pump-01", "ts": 0, "values": {"flow": 1.0}, "pad": "x" * 1_500_000}
    )
    channels = ["vibration", "current", "pressure", "temperature", "flow"]
    t = int(frame["ts_ms"].max()) + 1000
    pills = [
        big,
        orjson.dumps(
            {
                "asset_id": "pump-02",
                "ts": t,
                "values": {c: 1e39 if c == "flow" else 1.0 for c in channels},
            }
        ),
        orjson.dumps({"asset_id": "pump-03", "ts": t, "values": {c: 1e25 for c in channels}}),
    ]
    total = len(pills) + produce_frame(settings, frame, progress=False)
    # After each pump's readings, on its own partition: order within a partition is kept.
    for raw, key in zip(pills, (b"pump-01", b"pump-02", b"pump-03")):
        producer.send(settings.readings_topic, key=key, value=raw)
    producer.flush()
    producer.close()
    service = run_in_process(settings, champion, champion_detector, lambda: total)
    dead = read_all(settings, settings.dlq_topic, expect=2)
    assert (
        service.stats.scored + service.stats.rejected == total
        and service.stats.rejected == len(dead) == 2
    )
    truncated = [r for r in dead if dict(r.headers).get("truncated") == b"true"]
    assert len(truncated) == 1 and orjson.loads(truncated[0].value)["size"] == len(big)
