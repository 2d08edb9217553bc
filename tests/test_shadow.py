"""Shadow scoring on the embedded broker: a challenger scores the same stream in a group and state
of its own, its events go to the shadow topic only, and ``compare`` counts both sides' alarms."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from dataclasses import replace

import pytest
from helpers import fresh, read_all, wait_for

from sensorwatch.pipeline.dev.replay import produce_frame
from sensorwatch.pipeline.jobs.shadow import (
    alarms_of,
    compare_topics,
    format_comparison,
    shadow_settings,
    shadow_topic,
)
from sensorwatch.pipeline.service.loop import Service
from sensorwatch.pipeline.service.startup import start_service
from sensorwatch.schemas.events import decode_event, encode_event
from sensorwatch.schemas.records import AnomalyEvent

pytestmark = pytest.mark.integration


def test_an_alarm_is_its_opened_and_cleared_events_once() -> None:
    opened = AnomalyEvent(
        "p1", "2024-05-01T12:00:00.000Z", "2024-05-01T12:00:10.000Z", 3, 1, {}, "1"
    )
    cleared = replace(opened, window_end="2024-05-01T12:01:00.000Z", kind="cleared")
    other = replace(
        opened,
        window_start="2024-05-01T13:00:00.000Z",
        window_end="2024-05-01T13:00:10.000Z",
        event_id="",
    )
    values = [encode_event(e) for e in (opened, opened, cleared, other)] + [b"{}"]
    alarms, unreadable = alarms_of(values)
    assert unreadable == 1
    assert sorted((a.start_ms, a.end_ms) for a in alarms) == [
        (opened.start_ms, cleared.end_ms),
        (other.start_ms, other.end_ms),
    ]


def test_a_shadow_challenger_scores_the_same_stream_apart_and_is_compared(
    service_settings, champion, champion_detector, plant_after_training
) -> None:
    from sensorwatch.models.register import log_training

    # The champion's own model registered again under a name of this test, as version 2 with the
    # alias challenger: the same scores, so the shadow must raise exactly the champion's alarms.
    store = replace(champion.store, model_name=f"shadow-{uuid.uuid4().hex[:8]}")
    log_training(champion.trained, store, alias="champion")
    challenger = log_training(champion.trained, store, alias="challenger")
    assert challenger.version == "2"

    settings = fresh(service_settings).model_copy(
        update={
            "tracking_uri": store.tracking_uri,
            "artifact_root": store.artifact_root,
            "model_name": store.model_name,
        }
    )
    shadow = shadow_settings(settings)
    assert shadow.group_id != settings.group_id and shadow.anomalies_topic == shadow_topic(settings)

    sim, _ = plant_after_training()
    frame, faults = sim.with_faults(1000, faults_per_asset=2, kinds=("level_shift", "spike"))
    sent = produce_frame(settings, frame, progress=False)

    services = [
        Service.on_kafka(settings, champion_detector, champion.store),
        start_service(shadow),  # as `sensorwatch serve --shadow` starts it: by the alias
    ]
    assert services[1].processor.detector.version == challenger.version
    # The shadow archives nothing and logs nothing for review: the champion does both.
    assert [type(s).__name__ for s in services[1].checkpoint.sinks] == [
        "DeadLetterSink",
        "EventSink",
    ]
    stop = threading.Event()
    runners = [threading.Thread(target=s.run, args=(stop,)) for s in services]
    for runner in runners:
        runner.start()
    try:
        assert wait_for(lambda: all(s.stats.records >= sent for s in services), 120)
    finally:
        stop.set()
        for runner in runners:
            runner.join(60)
    # Each group scored every reading and window: neither took the other's state.
    assert [s.stats.scored for s in services] == [sent, sent]
    assert services[0].stats.windows == services[1].stats.windows > 0

    ours = [decode_event(r.value) for r in read_all(settings, settings.anomalies_topic)]
    theirs = [decode_event(r.value) for r in read_all(settings, shadow.anomalies_topic)]
    assert {e.model_version for e in ours} == {champion_detector.version}
    assert {e.model_version for e in theirs} == {challenger.version}  # nothing of it alerted
    opened = {e.event_id for e in ours}

    result = compare_topics(settings)
    assert result.shadow_versions == [challenger.version]
    assert {r.asset_id for r in result.rows} == {f.asset_id for f in faults}
    assert sum(r.champion for r in result.rows) == len(opened) > 0
    for row in result.rows:  # the same scores: the same alarms, each raised by both
        assert row.champion == row.shadow == row.both > 0
        assert row.only_champion == row.only_shadow == 0

    # A period before the first alarm holds none; one from it on holds them all.
    first = min(e.start_ms for e in ours)
    assert compare_topics(settings, until_ms=first).rows == []
    assert compare_topics(settings, since_ms=first).rows == result.rows

    # The command line says the same.
    env = {
        **os.environ,
        "SENSORWATCH_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "SENSORWATCH_ANOMALIES_TOPIC": settings.anomalies_topic,
    }
    command = [sys.executable, "-m", "sensorwatch.pipeline.cli", "compare"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == format_comparison(result)
    bad = subprocess.run(
        [*command, "--since", "yesterday"], env=env, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: since: not an ISO date or time: 'yesterday'"
    ]
