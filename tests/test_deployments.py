"""Several deployments on one cluster, and reprocessing on purpose, on the embedded broker.

Each consumer group keeps its state in a changelog of its own (``<group>.<readings>.state``), so a
second group on the same readings topic scores every window of it, and ``sensorwatch reset``
moves a group's offsets and clears its state together, so the group scores every window again.
Windows are counted against what the readings make: per asset, ``(n - window) // stride + 1``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest
from helpers import committed, fresh, wait_for

from sensorwatch.pipeline.dev.replay import produce_frame
from sensorwatch.pipeline.dev.simulator import Simulator
from sensorwatch.pipeline.errors import UserError
from sensorwatch.pipeline.jobs.reset import reset
from sensorwatch.pipeline.kafka import changelog
from sensorwatch.pipeline.kafka import clients as kafka
from sensorwatch.pipeline.service.loop import Service
from sensorwatch.pipeline.settings import Settings

READINGS = 300  # per asset


def score_all(settings: Settings, detector, readings_per_asset: Counter) -> tuple[Service, int]:
    """One replica of ``settings``' group run until it has scored as many windows as the readings
    make (or 90 s passed), then stopped; and that many."""
    service = Service.on_kafka(settings, detector)
    windower = service.processor.windower
    expected = sum(
        (n - windower.window) // windower.stride + 1
        for n in readings_per_asset.values()
        if n >= windower.window
    )
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,))
    runner.start()
    wait_for(lambda: service.stats.windows >= expected, 90, every_s=0.1)
    stop.set()
    runner.join(60)
    assert not runner.is_alive()
    return service, expected


@pytest.fixture(scope="module")
def scored(service_settings, champion_detector):
    """A stream on a topic of its own, scored to the end by a first group: its settings, the
    readings per asset and how many were sent."""
    settings = fresh(service_settings)
    sim = Simulator(assets=4, seed=5, start_ms=int(time.time() * 1000) - 3_600_000)
    frame = sim.normal(READINGS)
    sent = produce_frame(settings, frame, progress=False)
    per_asset = Counter(frame["asset_id"])
    first, expected = score_all(settings, champion_detector, per_asset)
    assert first.stats.windows == expected > 0
    assert wait_for(lambda: committed(settings) == sent, 30)
    return settings, per_asset, sent


@pytest.mark.integration
def test_two_groups_on_one_topic_each_score_every_window(scored, champion_detector) -> None:
    first, per_asset, sent = scored
    second = first.model_copy(update={"group_id": f"{first.group_id}-second"})
    assert changelog.changelog_topic(second) != changelog.changelog_topic(first)

    service, expected = score_all(second, champion_detector, per_asset)
    # With one changelog per readings topic, the second group restored the first's state and
    # skipped every reading as one it held: 0 windows.
    assert service.stats.windows == expected
    assert service.stats.scored == sent
    assert wait_for(lambda: committed(second) == sent, 30)


@pytest.mark.integration
def test_reset_to_earliest_scores_every_window_again(scored, champion_detector) -> None:
    settings, per_asset, sent = scored
    done = reset(settings, settings.group_id)
    assert sum(b or 0 for b in done.before.values()) == sent
    assert done.after == {0: 0, 1: 0} and committed(settings) == 0
    assert done.cleared == len(per_asset)  # every asset's state dropped
    assert not [v for _, v in changelog.read_back(settings).values() if v is not None]

    again, expected = score_all(settings, champion_detector, per_asset)
    assert again.stats.windows == expected
    assert again.stats.scored == sent
    assert wait_for(lambda: committed(settings) == sent, 30)


@pytest.mark.integration
def test_reset_is_refused_while_the_group_has_a_member(scored) -> None:
    settings, per_asset, sent = scored
    member = kafka.consumer(settings, settings.readings_topic)
    try:
        joined_by = time.monotonic() + 30
        while not member.assignment() and time.monotonic() < joined_by:
            member.poll(100)
        assert member.assignment()
        command = subprocess.Popen(
            [sys.executable, "-m", "sensorwatch.pipeline.cli", "reset", "--group"]
            + [settings.group_id, "--to-earliest", "-b", settings.bootstrap_servers],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("SENSORWATCH_")},
                "SENSORWATCH_READINGS_TOPIC": settings.readings_topic,
            },
        )
        deadline = time.monotonic() + 120
        while command.poll() is None and time.monotonic() < deadline:
            member.poll(100)  # the member stays in the group: it keeps polling
        if command.poll() is None:
            command.kill()
        stderr = command.stderr.read()
    finally:
        member.close()
    assert command.returncode == 2 and "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: group '{settings.group_id}' has 1 active member(s)"
    ), stderr
    # Nothing moved: the offsets stand at the end and every asset keeps its state.
    assert committed(settings) == sent
    held = [v for _, v in changelog.read_back(settings).values() if v is not None]
    assert len(held) == len(per_asset)


@pytest.mark.integration
def test_reset_to_a_time_moves_to_the_first_reading_produced_then(service_settings) -> None:
    settings = fresh(service_settings)
    base = int(time.time() * 1000) - 3_600_000
    producer = kafka.producer(settings)
    sends = []
    for i in range(200):  # one produced per second, in the hour before now
        value = {"asset_id": f"pump-{i % 5}", "ts": base + i * 1000, "values": {"flow": 1.0}}
        sends.append(
            producer.send(
                settings.readings_topic,
                key=value["asset_id"].encode(),
                value=orjson.dumps(value),
                timestamp_ms=base + i * 1000,
            )
        )
    producer.flush()
    partition_of = [s.get(10).partition for s in sends]
    producer.close()

    def at(when_ms: int) -> dict[int, int]:
        done = reset(settings, settings.group_id, datetime.fromtimestamp(when_ms / 1000, UTC))
        assert done.cleared == 0  # a group that never ran holds no state
        return done.after

    # Offsets count from 0 on a fresh topic: the first record at or after the time is the one
    # after those produced before it in its partition.
    cut = base + 120_500
    assert at(cut) == {
        p: sum(1 for i, q in enumerate(partition_of) if q == p and base + i * 1000 < cut)
        for p in (0, 1)
    }
    assert committed(settings) == 121  # the 121 produced before the time: 0 s to 120 s
    assert at(base - 1) == {0: 0, 1: 0}
    everything = Counter(partition_of)
    assert at(base + 10_000_000) == {p: everything[p] for p in (0, 1)}  # after all: the end


def test_a_group_that_makes_no_topic_name_is_refused() -> None:
    with pytest.raises(UserError, match="no legal Kafka topic name"):
        changelog.changelog_topic(Settings(group_id="scorers of plant 2"))
    with pytest.raises(UserError, match="no legal Kafka topic name"):
        changelog.changelog_topic(Settings(group_id="g" * 240))
    assert (
        changelog.changelog_topic(Settings(group_id="plant-2")) == "plant-2.sensor-readings.state"
    )
