"""Property-based fuzz tests of the step and the service: no input gets past them as an exception.

Whole polls mix good readings with the hostile messages of ``fuzzing``. The step must account for
every record: dead-lettered, skipped as a replay, scored, or waiting for its grace period. On the
embedded broker the service must score or dead-letter every record, commit them all, and keep running.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
import zlib
from collections import Counter
from datetime import datetime, timedelta

import numpy as np
import pytest
from fuzzing import CHANNELS, LIMITS, NOW, TRIED, hostile_messages, keys
from helpers import RECIPE, committed, fresh, read_all, wait_for
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sensorwatch.models.autoencoder import build_autoencoder
from sensorwatch.models.detector import Detector
from sensorwatch.models.spec import DetectorSpec
from sensorwatch.pipeline.kafka import clients as kafka
from sensorwatch.pipeline.kafka.sinks import ChangelogSink, DeadLetterSink, EventSink
from sensorwatch.pipeline.service.loop import Service
from sensorwatch.pipeline.stream.processor import Processor
from sensorwatch.pipeline.stream.records import Polled
from sensorwatch.pipeline.stream.step import StepOutput, drain, step
from sensorwatch.schemas.events import decode_event, encode_event
from sensorwatch.schemas.readings import (
    FLOAT32_MAX,
    MAX_ASSET_ID,
    MAX_TS_MS,
    MIN_TS_MS,
    parse_reading,
)
from sensorwatch.schemas.records import REJECT_KINDS, Reading, Rejected, reject_kind

pytestmark = pytest.mark.usefixtures("fuzz_inputs")


# The step, in memory.


@pytest.fixture(scope="module")
def detector() -> Detector:
    """An untrained model with threshold 0: every window is anomalous, so alarms open and events are made."""
    spec = DetectorSpec(
        list(CHANNELS),
        [0.0, 0.0],
        [1.0, 1.0],
        [1.0, 1.0],
        {"method": "reference", "value": 0.0},
        recipe=RECIPE,
        interval_ms=1000,
    )
    return Detector(
        build_autoencoder(RECIPE.window, len(CHANNELS), units=4), spec, version="1"
    ).warm_up()


GOOD_IDS = ["p1", "pump-7", "\u202e\U0001f680-pump", "é" * MAX_ASSET_ID]
# Where a stream starts: now, the epoch, year 1 (below MIN_TS_MS, so only an ISO time with a
# positive offset can say it), the first and the last millisecond of the schema's range.
EARLY_MS = MIN_TS_MS - 20 * 3_600_000
STARTS = [NOW - 600_000, 0, EARLY_MS, MIN_TS_MS, MAX_TS_MS - 10_000]
GOOD_NUMBERS = st.floats(-1e6, 1e6) | st.sampled_from(
    [0.0, -0.0, 1e25, 3.0e38, -FLOAT32_MAX, 5e-324]
)


def iso(ms: int, minutes: int) -> str:
    """``ms`` as an ISO timestamp in local time at UTC offset ``minutes``."""
    local = datetime(1970, 1, 1) + timedelta(milliseconds=ms + minutes * 60_000)
    sign, (h, m) = "+" if minutes >= 0 else "-", divmod(abs(minutes), 60)
    return f"{local.isoformat(timespec='milliseconds')}{sign}{h:02d}:{m:02d}"


def ts_forms(ms: int) -> st.SearchStrategy:
    """The ways a message can say ``ms``: integer milliseconds where allowed, ISO with offsets that fit."""
    forms: list[object] = [
        iso(ms, m) for m in (0, 330, -720, 1439, -1439) if MIN_TS_MS <= ms + m * 60_000 <= MAX_TS_MS
    ]
    forms += [ms] if MIN_TS_MS <= ms <= MAX_TS_MS else []
    return st.sampled_from(forms)


@st.composite
def streams(draw) -> list[tuple[bytes | None, bytes]]:
    """One asset's readings, mostly a second apart, some repeated, late or after a gap; keyed by the
    asset, by nothing, or by another asset."""
    asset = draw(st.sampled_from(GOOD_IDS))
    t = draw(st.sampled_from(STARTS))
    out = []
    for _ in range(draw(st.integers(0, 10))):
        t += draw(st.sampled_from([1000, 1000, 1000, 0, 2500, -3000, 60_000]))
        doc = {
            "asset_id": asset,
            "ts": draw(ts_forms(t)),
            "values": {c: draw(GOOD_NUMBERS) for c in CHANNELS},
        }
        key = draw(st.sampled_from([asset.encode(), None, b"someone-else", b"\xff"]))
        out.append((key, json.dumps(doc).encode()))
    return out


@st.composite
def polls(draw) -> list[list[Polled]]:
    """Good streams and hostile records interleaved, on partitions chosen by key as Kafka does, cut
    into polls; sometimes the tail is delivered again, as after a crash before the commit."""
    records = [r for s in draw(st.lists(streams(), max_size=3)) for r in s]
    for hostile in draw(st.lists(st.tuples(keys, hostile_messages), max_size=12)):
        records.insert(draw(st.integers(0, len(records))), hostile)
    if draw(st.booleans()):
        records = [records[i] for i in draw(st.permutations(range(len(records))))]
    offsets: Counter[int] = Counter()
    polled = []
    for key, value in records:
        partition = zlib.crc32(key or b"") % 2
        polled.append(Polled("readings", partition, offsets[partition], key, value))
        offsets[partition] += 1
    cuts = sorted(draw(st.lists(st.integers(0, len(polled)), max_size=3)))
    bounds = [0, *cuts, len(polled)]
    out = [polled[a:b] for a, b in zip(bounds, bounds[1:])]
    if polled and draw(st.booleans()):
        out.append(polled[draw(st.integers(0, len(polled) - 1)) :])
    return out


class Capture:
    """A producer that keeps what it is asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def send(self, topic, key=None, value=None, headers=None, partition=None):
        self.sent.append((topic, key, value, headers, partition))


def check_step(
    out: StepOutput, poll: list[Polled], processor: Processor, waiting_before: int
) -> None:
    """Every record of the poll is accounted for exactly once, and everything the poll became can be sent."""
    parsed = [
        parse_reading(r.value, r.key, limits=LIMITS, channels=CHANNELS, now_ms=NOW) for r in poll
    ]
    misplaced = [d for d in out.dead_letters if d.kind in ("late", "duplicate")]
    assert [
        (d.record, d.reason) for d in out.dead_letters if d.kind not in ("late", "duplicate")
    ] == [(r, p.reason) for r, p in zip(poll, parsed) if isinstance(p, Rejected)]
    accepted = {id(r) for r, p in zip(poll, parsed) if isinstance(p, Reading)}
    assert all(id(d.record) in accepted for d in misplaced)
    assert len({id(d.record) for d in out.dead_letters}) == len(out.dead_letters)
    assert all(d.kind in REJECT_KINDS and d.kind == reject_kind(d.reason) for d in out.dead_letters)
    batch = out.decisions.windows
    waiting = processor.windower.waiting()
    assert out.polled == len(poll)
    assert (
        len(poll)
        == len(out.dead_letters) + out.replayed + batch.released + waiting - waiting_before
    )
    partitions = {(r.topic, r.partition) for r in poll}
    assert out.offsets == {
        tp: max(r.offset for r in poll if (r.topic, r.partition) == tp) + 1 for tp in partitions
    }
    ids = {p.asset_id for p in parsed if isinstance(p, Reading)}
    assert set(out.owners) <= ids
    for event in out.events:
        assert event.asset_id in processor.windower.assets()
        assert decode_event(encode_event(event)) == event


def send_all(out: StepOutput, processor: Processor, owners: dict) -> None:
    """Hand the output to the real sinks, over a producer that only records."""
    dlq, events, changelog = Capture(), Capture(), Capture()
    DeadLetterSink(dlq, "readings.dlq").write(out)
    EventSink(events, "anomalies").write(out)
    ChangelogSink(changelog, "changelog", processor, owners).write(out)
    assert len(dlq.sent) == len(out.dead_letters) and len(events.sent) == len(out.events)
    assert all(dict(headers)["kind"].decode() in REJECT_KINDS for *_, headers, _ in dlq.sent)


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(polled=polls())
def test_step_accounts_for_every_record(detector: Detector, polled: list[list[Polled]]) -> None:
    TRIED["step"] += sum(map(len, polled))
    processor = Processor(detector)
    owners: dict = {}
    delivered = dead = replayed = released = 0
    for i, poll in enumerate(polled):
        waiting = processor.windower.waiting()
        out = step(processor, poll, LIMITS, NOW, now=float(i))
        owners.update(out.owners)
        check_step(out, poll, processor, waiting)
        send_all(out, processor, owners)
        delivered += len(poll)
        dead, replayed, released = (
            dead + len(out.dead_letters),
            replayed + out.replayed,
            released + out.decisions.windows.released,
        )
    waiting = processor.windower.waiting()
    last = drain(processor)
    assert last.decisions.windows.released == waiting and processor.windower.waiting() == 0
    assert all(decode_event(encode_event(e)) == e for e in last.events)
    send_all(last, processor, owners)
    assert delivered == dead + replayed + released + last.decisions.windows.released


# The service on the embedded broker.


def sample(strategy: st.SearchStrategy, n: int) -> list:
    """Up to ``n`` values of ``strategy``, the same ones on every run (hypothesis' generator, derandomized)."""
    drawn: list = []

    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value) -> None:
        drawn.append(value)

    collect()
    return drawn


def good_stream(
    asset: str, start_ms: int, n: int, iso_offset: int | None = None
) -> list[tuple[bytes, bytes]]:
    """``n`` valid readings a second apart, keyed by their asset; ``iso_offset`` writes ts as ISO
    in that offset (minutes)."""
    docs = (
        {
            "asset_id": asset,
            "ts": t if iso_offset is None else iso(t, iso_offset),
            "values": {"a": 1.0 + (i % 7) * 0.1, "b": -1.0},
        }
        for i, t in enumerate(range(start_ms, start_ms + n * 1000, 1000))
    )
    return [(asset.encode(), json.dumps(doc).encode()) for doc in docs]


@pytest.mark.integration
def test_the_service_on_the_broker_scores_or_dead_letters_every_hostile_record(
    service_settings, detector
) -> None:
    settings_ = fresh(service_settings)
    now_ms = int(time.time() * 1000)
    good = [
        *good_stream("p1", now_ms - 3_600_000, 40),
        *good_stream("\u202e\U0001f680-pump", now_ms - 3_600_000, 30, iso_offset=330),
        *good_stream("epoch", 0, 20),
        *good_stream(
            "year-one", EARLY_MS, 12, iso_offset=1439
        ),  # valid ISO, before MIN_TS_MS in UTC
    ]
    hostile = [
        (key if key is not None or value is not None else b"k", value)  # Kafka needs one of the two
        for key, value in sample(st.tuples(keys, hostile_messages), 300)
    ]
    rng = np.random.default_rng(7)
    records = list(good)
    for rec in hostile:  # hostile records anywhere, the good ones kept in order
        records.insert(int(rng.integers(0, len(records) + 1)), rec)

    producer = kafka.producer(settings_, max_request_size=2_000_000)
    futures = [producer.send(settings_.readings_topic, key=k, value=v) for k, v in records]
    producer.flush()
    producer.close()
    where = [(f.get(timeout=10).partition, f.get(timeout=10).offset) for f in futures]
    TRIED["broker"] += len(records)
    rejected = {
        w
        for w, (k, v) in zip(where, records)
        if isinstance(
            parse_reading(v, k, limits=LIMITS, channels=CHANNELS, now_ms=now_ms), Rejected
        )
    }

    service = Service.on_kafka(settings_, detector)
    stop, failure = threading.Event(), []

    def serve() -> None:
        try:
            service.run(stop)
        except BaseException as exc:  # kept for the assertion below, which shows its traceback
            failure.append(exc)

    runner = threading.Thread(target=serve, daemon=True)
    runner.start()
    done = wait_for(lambda: failure or committed(settings_) >= len(records), 45)
    still_running = runner.is_alive()
    stop.set()
    runner.join(60)
    assert not failure, "".join(traceback.format_exception(failure[0]))
    assert done and still_running and not runner.is_alive()

    dead = read_all(settings_, settings_.dlq_topic, timeout_s=3)
    stats = service.stats
    assert committed(settings_) == len(records)  # nothing lost, nothing left behind
    assert stats.records == len(records) and stats.scored + stats.rejected == len(records)
    assert stats.rejected == len(dead)
    headers = [dict(r.headers) for r in dead]
    positions = [(int(h["source.partition"]), int(h["source.offset"])) for h in headers]
    assert len(set(positions)) == len(positions)  # each dead-lettered once
    assert all(h["kind"].decode() in REJECT_KINDS for h in headers)
    misplaced = {p for p, h in zip(positions, headers) if h["kind"] in (b"late", b"duplicate")}
    assert set(positions) - misplaced == rejected
    assert all(
        decode_event(r.value) for r in read_all(settings_, settings_.anomalies_topic, timeout_s=3)
    )
