"""The embedded broker: it starts, creates topics, carries keyed records, runs consumer groups."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from pathlib import Path

import pytest
from helpers import wait_for
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from sensorwatch.pipeline.dev import tansu
from sensorwatch.pipeline.dev.broker import BrokerError, EmbeddedBroker, serve_broker
from sensorwatch.pipeline.kafka.clients import consumer, ensure_topics, producer, service_topics
from sensorwatch.pipeline.settings import Settings

# A group join on the embedded broker waits about half the session timeout: keep it short.
GROUP = dict(session_timeout_ms=2000, heartbeat_interval_ms=500, max_poll_interval_ms=6000)


def _settings(bootstrap: str) -> Settings:
    return Settings(bootstrap_servers=bootstrap)


def _topic(settings: Settings, partitions: int = 4) -> str:
    name = f"test-{uuid.uuid4().hex[:10]}"
    ensure_topics(settings, [name], partitions=partitions)
    return name


def _drain(source: KafkaConsumer, want: int, timeout_s: float = 20.0) -> list:
    got: list = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        for records in source.poll(timeout_ms=500).values():
            got.extend(records)
    return got


@pytest.mark.integration
def test_fixture_broker_has_the_service_topics(broker: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=broker)
    try:
        assert set(service_topics(Settings())) <= set(admin.list_topics())
    finally:
        admin.close()
    check = KafkaConsumer(bootstrap_servers=broker)
    try:
        assert check.partitions_for_topic(Settings().readings_topic) == {0, 1, 2, 3}
    finally:
        check.close()


@pytest.mark.integration
def test_keyed_round_trip_keeps_each_key_on_one_partition_in_order(broker: str) -> None:
    settings = _settings(broker)
    topic = _topic(settings)
    sender = producer(settings)
    sent = [(f"pump-{i % 5}".encode(), f'{{"n": {i}}}'.encode()) for i in range(100)]
    for key, value in sent:
        sender.send(topic, key=key, value=value)
    sender.flush()
    sender.close()

    reader = KafkaConsumer(bootstrap_servers=broker, group_id=None, enable_auto_commit=False)
    reader.assign([TopicPartition(topic, p) for p in range(4)])
    reader.seek_to_beginning()
    got = _drain(reader, len(sent))
    reader.close()

    assert sorted((r.key, r.value) for r in got) == sorted(sent)
    partitions: dict[bytes, set[int]] = {}
    for r in got:
        partitions.setdefault(r.key, set()).add(r.partition)
    assert all(len(p) == 1 for p in partitions.values())
    for key in partitions:
        numbers = [int(r.value[6:-1]) for r in sorted(got, key=lambda r: r.offset) if r.key == key]
        assert numbers == sorted(numbers)


@pytest.mark.integration
def test_group_resumes_from_the_committed_offsets(broker: str) -> None:
    settings = _settings(broker)
    topic = _topic(settings, partitions=2)
    sender = producer(settings)
    for i in range(60):
        sender.send(topic, key=f"k{i % 3}".encode(), value=str(i).encode())
    sender.flush()
    sender.close()
    group = f"group-{uuid.uuid4().hex[:8]}"

    first = consumer(settings, topic, group_id=group, max_poll_records=25, **GROUP)
    batch = _drain(first, 1)
    first.commit()  # the positions after exactly the records handed out
    first.close()
    second = consumer(settings, topic, group_id=group, **GROUP)
    rest = _drain(second, 60 - len(batch))
    parts = [TopicPartition(topic, p) for p in (0, 1)]
    # The broker's end offset is its last batch's first offset + 1: reached, that batch was
    # fetched whole, and one more poll hands out whatever of it is left.
    end = second.end_offsets(parts)
    at_end = {tp.partition: second.position(tp) >= end[tp] for tp in parts}
    rest += [r for records in second.poll(timeout_ms=100).values() for r in records]
    second.close()

    first_values = {r.value for r in batch}
    rest_values = {r.value for r in rest}
    assert 0 < len(batch) <= 25
    assert all(at_end.values()), at_end
    assert not first_values & rest_values
    assert len(rest) == 60 - len(batch)
    assert first_values | rest_values == {str(i).encode() for i in range(60)}


@pytest.mark.integration
def test_stop_ends_the_process_and_frees_the_port(tmp_path: Path) -> None:
    embedded = EmbeddedBroker(["a"], log_dir=tmp_path)
    with embedded, EmbeddedBroker(log_dir=tmp_path) as beside:
        port = embedded.port
        assert embedded.running()
        assert (
            embedded.log_path == tmp_path / f"broker-{port}.log" != beside.log_path
        )  # each its own log
        assert embedded.log_path.read_text().startswith("tansu")
    assert not embedded.running()
    with pytest.raises(BrokerError):
        embedded.bootstrap_servers  # noqa: B018 (the property raises once stopped)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    embedded.stop()  # a second stop is harmless


@pytest.mark.integration
def test_a_port_held_by_someone_else_is_a_one_line_error(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))  # bound, not listening: only tansu's own bind can notice
    try:
        with pytest.raises(BrokerError, match=r"broker-\d+\.log") as caught:
            EmbeddedBroker(port=holder.getsockname()[1], log_dir=tmp_path, timeout_s=10).start()
    finally:
        holder.close()
    assert "\n" not in str(caught.value)
    assert "in use" in str(caught.value).lower(), caught.value  # why, not only where the log is


@pytest.mark.parametrize("port", [0, 70000])
def test_a_port_that_is_no_port_says_so(port: int, tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="not a TCP port"):
        EmbeddedBroker(port=port, log_dir=tmp_path).start()


def test_a_missing_binary_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tansu.importlib.resources, "files", lambda package: tmp_path)
    with pytest.raises(BrokerError, match="no tansu binary") as caught:
        EmbeddedBroker(log_dir=tmp_path).start()
    assert "\n" not in str(caught.value)


@pytest.mark.integration
def test_serve_broker_prints_the_address_and_stops_on_request(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            serve_broker(Settings(), None, stop, log_dir=tmp_path)
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    worker = threading.Thread(target=serve)
    worker.start()
    printed: list[str] = []

    def ready() -> bool:
        printed.append(capsys.readouterr().out)
        return "127.0.0.1:" in "".join(printed) or not worker.is_alive()

    wait_for(ready, 20, every_s=0.05)
    address = "".join(printed).split("broker ready: ")[1].split()[0]
    admin = KafkaAdminClient(bootstrap_servers=address)
    topics = set(admin.list_topics())
    admin.close()
    stop.set()
    worker.join(10)

    assert not worker.is_alive() and not errors
    assert set(service_topics(Settings())) <= topics
