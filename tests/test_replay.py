"""Sending readings: pacing, CSV replay and simulator frames, read back from the embedded broker."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from sensorwatch.pipeline.data.csvfiles import SourceError
from sensorwatch.pipeline.dev.replay import (
    Pacer,
    SendError,
    asset_for,
    csv_readings,
    produce_frame,
    replay_csv,
    send_readings,
)
from sensorwatch.pipeline.dev.simulator import CHANNELS, Simulator, readings
from sensorwatch.pipeline.settings import Settings

SKAB = """datetime;Accelerometer1RMS;Pressure;Temperature;anomaly;changepoint
2020-03-09 10:14:33;0.0265;0.054;89.5;0.0;0.0
2020-03-09 10:14:34;0.0264;0.382;89.3;0.0;0.0
2020-03-09 10:14:36;0.0270;0.710;89.6;1.0;1.0
"""
PLAIN = """timestamp,flow,current
2020-03-09T10:14:35Z,12.5,3.1
2020-03-09T10:14:37Z,12.75,3.0
"""


def _settings(broker: str) -> Settings:
    return Settings(bootstrap_servers=broker, readings_topic=f"readings-{uuid.uuid4().hex[:10]}")


def _read_back(broker: str, topic: str, want: int, timeout_s: float = 15.0) -> list:
    reader = KafkaConsumer(bootstrap_servers=broker, group_id=None, enable_auto_commit=False)
    reader.assign([TopicPartition(topic, p) for p in reader.partitions_for_topic(topic) or {0}])
    reader.seek_to_beginning()
    got: list = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        for records in reader.poll(timeout_ms=500).values():
            got.extend(records)
    got.extend(
        r for records in reader.poll(timeout_ms=300).values() for r in records
    )  # nothing extra
    reader.close()
    return got


def _files(tmp_path: Path) -> list[Path]:
    (tmp_path / "valve1").mkdir(parents=True)
    skab, plain = tmp_path / "valve1" / "0.csv", tmp_path / "pump-a.csv"
    skab.write_text(SKAB)
    plain.write_text(PLAIN)
    return [skab, plain]


def test_pacer_spaces_messages_by_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(10.0, clock=lambda: now[0], sleep=sleep)
    for sent in range(5):
        pacer.wait(sent)
    assert now[0] == pytest.approx(0.4) and len(slept) == 4
    Pacer(None, clock=lambda: 1 / 0).wait(3)  # no rate: never looks at the clock
    with pytest.raises(ValueError):
        Pacer(0)


def test_csv_readings_merge_files_in_event_time_with_asset_ids(tmp_path: Path) -> None:
    items = csv_readings(_files(tmp_path))
    assert [(r.asset_id, r.ts_ms % 100_000) for r in items] == [
        ("valve1-0", 73_000),
        ("valve1-0", 74_000),
        ("pump-a", 75_000),
        ("valve1-0", 76_000),
        ("pump-a", 77_000),
    ]
    assert items[0].values == {"Accelerometer1RMS": 0.0265, "Pressure": 0.054, "Temperature": 89.5}
    assert items[2].values == {"flow": 12.5, "current": 3.1}
    assert {r.asset_id for r in csv_readings(_files(tmp_path / "x"), asset_id="rig")} == {"rig"}
    assert asset_for("SKAB/data/other/13.csv") == "other-13"


def test_a_bad_file_is_a_one_line_source_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,flow\n2020-03-09T10:14:35Z,high\n")
    with pytest.raises(SourceError, match="bad.csv") as caught:
        csv_readings([bad])
    assert "\n" not in str(caught.value)
    with pytest.raises(SourceError, match="no such file"):
        csv_readings([tmp_path / "missing.csv"])


@pytest.mark.integration
def test_replay_csv_sends_keyed_json_readings(broker: str, tmp_path: Path) -> None:
    settings = _settings(broker)
    sent = replay_csv(settings, _files(tmp_path), rate=None, progress=False)
    got = _read_back(broker, settings.readings_topic, sent)

    assert sent == 5 and len(got) == 5
    docs = [orjson.loads(r.value) for r in got]
    assert all(r.key.decode() == doc["asset_id"] for r, doc in zip(got, docs))
    assert sorted(doc["ts"] for doc in docs) == [1583748873000 + 1000 * i for i in range(5)]
    first = min(docs, key=lambda doc: doc["ts"])
    assert first == {
        "asset_id": "valve1-0",
        "ts": 1583748873000,
        "values": {"Accelerometer1RMS": 0.0265, "Pressure": 0.054, "Temperature": 89.5},
    }
    # one asset's readings stay on one partition, in event-time order
    for asset in ("valve1-0", "pump-a"):
        mine = sorted(
            (r for r, d in zip(got, docs) if d["asset_id"] == asset), key=lambda r: r.offset
        )
        assert len({r.partition for r in mine}) == 1
        stamps = [orjson.loads(r.value)["ts"] for r in mine]
        assert stamps == sorted(stamps)


@pytest.mark.integration
def test_produce_frame_sends_every_row_and_keeps_the_rate(broker: str) -> None:
    settings = _settings(broker)
    frame = Simulator(assets=3, seed=1).normal(20)
    began = time.monotonic()
    sent = produce_frame(settings, frame, rate=200.0, progress=False)
    took = time.monotonic() - began
    got = _read_back(broker, settings.readings_topic, sent)

    assert sent == len(frame) == len(got) == 60
    assert took >= 59 / 200
    docs = sorted((orjson.loads(r.value) for r in got), key=lambda d: (d["ts"], d["asset_id"]))
    assert [d["asset_id"] for d in docs] == list(frame["asset_id"])
    assert [d["values"] for d in docs] == frame[CHANNELS].to_dict("records")


def test_produce_frame_needs_asset_and_time_columns() -> None:
    with pytest.raises(ValueError, match="ts_ms"):
        produce_frame(
            Settings(bootstrap_servers="127.0.0.1:1"),
            Simulator(assets=1).normal(2).drop(columns="ts_ms"),
        )


class _RefusingProducer:
    """A producer whose every send fails, as when the broker rejects the records."""

    def send(self, topic: str, key: bytes, value: bytes) -> _RefusingProducer:
        return self

    def add_errback(self, callback) -> None:  # type: ignore[no-untyped-def]
        callback(RuntimeError("record too large"))

    def flush(self) -> None:
        pass


@pytest.mark.integration
def test_refused_readings_raise_a_send_error(broker: str) -> None:
    items = list(readings(Simulator(assets=1).normal(3)))
    with pytest.raises(SendError, match="3 of 3 readings .* not delivered: record too large"):
        send_readings(_settings(broker), items, client=_RefusingProducer())  # type: ignore[arg-type]
