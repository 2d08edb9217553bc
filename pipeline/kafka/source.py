"""The readings topic as a source: a consumer in the service's group that polls ``Polled`` records.

Offsets move only when the service commits them (after its sinks flushed). The rebalance
callbacks stay cheap (no I/O: the group waits for them): partitions taken away are reported to
``on_revoke`` so their assets' state can be dropped; partitions given are paused and listed in
``assigned_new``, and the service restores their state from the changelog before it ``resume``s
them, so no reading of theirs is processed on a cold state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.structs import OffsetAndMetadata

from sensorwatch.pipeline.kafka import clients, reach
from sensorwatch.pipeline.settings import Settings
from sensorwatch.pipeline.stream.records import Partition, Polled

log = logging.getLogger("sensorwatch.pipeline")
QUIET_PROBE_S = 5.0  # seconds without records before the broker is looked at


def partition_lag(
    assigned: set[Partition], positions: dict[int, int], end: Callable[[str, int], int | None]
) -> dict[int, int]:
    """Records on each assigned partition after the last one polled (``positions``), by the end
    offset the client last fetched (``end``: None where it knows none; such partitions, and those
    not polled from yet, are left out).

    >>> partition_lag({("r", 0), ("r", 1), ("r", 2)}, {0: 10, 1: 5}, lambda t, p: {0: 12, 2: 7}.get(p))
    {0: 2}
    """
    lag = {}
    for topic, partition in assigned:
        last = end(topic, partition)
        if last is not None and partition in positions:
            lag[partition] = max(last - positions[partition], 0)
    return lag


class QuietProbe:
    """After ``QUIET_PROBE_S`` without records, look whether the broker is still there (at most
    that often), and if not, wait it out (``reach.wait_for_broker``: one line, backoff,
    ``BrokerError`` after ``broker_timeout_s``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._quiet_since = self._probed_at = time.monotonic()

    def polled(self, got_records: bool) -> None:
        now = time.monotonic()
        if got_records:
            self._quiet_since = now
        elif now - self._quiet_since >= QUIET_PROBE_S and now - self._probed_at >= QUIET_PROBE_S:
            self._probed_at = now
            if reach.unreachable(self.settings.bootstrap_servers) is not None:
                reach.wait_for_broker(
                    self.settings.bootstrap_servers, self.settings.broker_timeout_s
                )


class _Listener(ConsumerRebalanceListener):
    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in revoked}
        self.source.assigned -= gone
        for _, partition in gone:
            self.source.positions.pop(partition, None)
        self.source.on_revoke(gone)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        given = {(tp.topic, tp.partition) for tp in assigned}
        self.source.assignments += 1
        self.source.assigned |= given
        self.source.assigned_new |= given
        if assigned:
            self.source.consumer.pause(*assigned)
        log.info("assigned partitions=%s", sorted(tp.partition for tp in assigned))


class KafkaSource:
    """Polls the readings topic as one member of the consumer group."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.on_revoke: Callable[[set[Partition]], None] = lambda gone: None
        self.assigned: set[Partition] = set()  # this replica's share of the readings topic
        self.assigned_new: set[Partition] = set()  # given, paused until their state is restored
        self.max_records = settings.max_poll_records  # the service lowers it when scoring is slow
        self.assignments = 0  # rebalances that gave this replica partitions
        self.probe = QuietProbe(settings)
        self.positions: dict[int, int] = {}  # partition → the offset after the last record polled
        self.consumer = clients.consumer(settings)
        self.consumer.subscribe([settings.readings_topic], listener=_Listener(self))

    def poll(self, timeout_ms: int | None = None) -> list[Polled]:
        """The next batch (at most ``max_records``), each partition's records in offset order,
        waiting at most ``timeout_ms`` (default: the ``poll_timeout_ms`` setting) for one.

        After a few seconds without records it looks whether the broker is still there, and if
        not, waits it out (``reach.wait_for_broker``: one line, backoff, ``BrokerError`` after
        ``broker_timeout_s``)."""
        polled = self.consumer.poll(
            self.settings.poll_timeout_ms if timeout_ms is None else timeout_ms, self.max_records
        )
        self.probe.polled(bool(polled))
        for tp, records in polled.items():
            self.positions[tp.partition] = records[-1].offset + 1
        return [
            Polled(r.topic, r.partition, r.offset, r.key, r.value)
            for records in polled.values()
            for r in records
        ]

    def lag(self) -> dict[int, int]:
        """Records on each assigned partition after the last one polled (``partition_lag``)."""
        return partition_lag(
            self.assigned,
            self.positions,
            lambda t, p: self.consumer.highwater(TopicPartition(t, p)),
        )

    def resume(self, partitions: set[Partition]) -> None:
        """Start fetching partitions whose state is restored."""
        self.assigned_new -= partitions
        held = [TopicPartition(t, p) for t, p in partitions if (t, p) in self.assigned]
        if held:
            self.consumer.resume(*held)

    def commit(self, offsets: dict[Partition, int]) -> None:
        """Commit the next offset to read of each partition (synchronously)."""
        if offsets:
            self.consumer.commit(
                {
                    TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                    for (t, p), o in offsets.items()
                }
            )

    def close(self) -> None:
        self.consumer.close(autocommit=False)
