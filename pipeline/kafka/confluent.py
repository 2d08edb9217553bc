"""The readings topic through librdkafka (confluent-kafka): the same ``Source`` as ``KafkaSource``,
for a replica that kafka-python's pure-Python record decoding would hold back.

Optional (``pip install 'sensorwatch[fast]'``, then ``KAFKA_CLIENT=confluent-kafka``); everything
else — producers, the changelog restore, the admin client — stays on kafka-python. Semantics are
``KafkaSource``'s: offsets move only when the service commits them; partitions given are paused
and listed in ``assigned_new`` until their state is restored; partitions taken away are reported to
``on_revoke`` (from inside a poll, as the group calls it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sensorwatch.pipeline.errors import UserError
from sensorwatch.pipeline.kafka import clients
from sensorwatch.pipeline.kafka.source import QuietProbe, partition_lag
from sensorwatch.pipeline.settings import Settings
from sensorwatch.pipeline.stream.records import Partition, Polled

log = logging.getLogger("sensorwatch.pipeline")


def config(settings: Settings) -> dict[str, object]:
    """The consumer's librdkafka configuration, from the same settings as kafka-python's."""
    conf: dict[str, object] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": settings.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "max.poll.interval.ms": settings.max_poll_interval_ms,
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": max(settings.session_timeout_ms // 3 - 100, 100),
        "fetch.wait.max.ms": clients.FETCH_MAX_WAIT_MS,
        "check.crcs": True,
        "logger": logging.getLogger("sensorwatch.librdkafka"),
        **settings.kafka_security("librdkafka"),
    }
    return conf


class ConfluentSource:
    """Polls the readings topic as one member of the consumer group, through librdkafka."""

    def __init__(self, settings: Settings) -> None:
        try:
            import confluent_kafka
        except ImportError:
            raise UserError(
                "kafka_client confluent-kafka: the package is not installed (pip install 'sensorwatch[fast]')"
            ) from None
        self._kafka = confluent_kafka
        self.settings = settings
        self.on_revoke: Callable[[set[Partition]], None] = lambda gone: None
        self.assigned: set[Partition] = set()
        self.assigned_new: set[Partition] = set()
        self.max_records = settings.max_poll_records
        self.assignments = 0
        self.probe = QuietProbe(settings)
        self.positions: dict[int, int] = {}  # partition → the offset after the last record polled
        self.consumer = confluent_kafka.Consumer(config(settings))
        self.consumer.subscribe(
            [settings.readings_topic], on_assign=self._assigned, on_revoke=self._revoked
        )

    def _assigned(self, consumer, partitions) -> None:
        given = {(tp.topic, tp.partition) for tp in partitions}
        self.assignments += 1
        self.assigned |= given
        self.assigned_new |= given
        if partitions:  # assigned here (not after the callback) so that the pause holds
            consumer.assign(partitions)
            consumer.pause(partitions)
        log.info("assigned partitions=%s", sorted(p for _, p in given))

    def _revoked(self, consumer, partitions) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self.assigned -= gone
        for _, partition in gone:
            self.positions.pop(partition, None)
        self.on_revoke(gone)

    def poll(self, timeout_ms: int | None = None) -> list[Polled]:
        """The next batch (at most ``max_records``), each partition's records in offset order; waits
        out an unreachable broker as ``KafkaSource`` does."""
        timeout = (self.settings.poll_timeout_ms if timeout_ms is None else timeout_ms) / 1000
        messages = self.consumer.consume(self.max_records, timeout)
        out: list[Polled] = []
        for m in messages:
            error = m.error()
            if error is None:
                out.append(Polled(m.topic(), m.partition(), m.offset(), m.key(), m.value()))
                self.positions[m.partition()] = m.offset() + 1
            elif error.fatal():
                raise RuntimeError(f"Kafka consumer: {error.str()}")
            else:  # transient (a broker going away, a partition end): librdkafka retries itself
                log.debug("Kafka consumer: %s", error.str())
        self.probe.polled(bool(out))
        return out

    def lag(self) -> dict[int, int]:
        """Records on each assigned partition after the last one polled (``partition_lag``), by the
        end librdkafka last fetched (negative while it knows none)."""
        return partition_lag(self.assigned, self.positions, self._end)

    def _end(self, topic: str, partition: int) -> int | None:
        _, end = self.consumer.get_watermark_offsets(
            self._kafka.TopicPartition(topic, partition), cached=True
        )
        return end if end >= 0 else None

    def resume(self, partitions: set[Partition]) -> None:
        """Start fetching partitions whose state is restored."""
        self.assigned_new -= partitions
        held = [self._kafka.TopicPartition(t, p) for t, p in partitions if (t, p) in self.assigned]
        if held:
            self.consumer.resume(held)

    def commit(self, offsets: dict[Partition, int]) -> None:
        """Commit the next offset to read of each partition (synchronously)."""
        if offsets:
            self.consumer.commit(
                offsets=[self._kafka.TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                asynchronous=False,
            )

    def close(self) -> None:
        self.consumer.close()
