"""The Kafka side of one replica, made before the service: the broker reached, the changelog
topic there, the consumer in its group (optionally joined already) and the producer."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sensorwatch.pipeline.settings import Settings

if TYPE_CHECKING:
    from kafka import KafkaProducer

    from sensorwatch.pipeline.service.loop import Source


@dataclass
class Connection:
    """The Kafka side of one replica: its consumer in the group, its producer, the changelog topic."""

    source: Source
    producer: KafkaProducer
    changelog_topic: str

    def close(self) -> None:
        self.source.close()
        self.producer.close()


def connect(settings: Settings, join_s: float = 0.0) -> Connection:
    """Reach the broker, make sure of the changelog topic, make the consumer and the producer.

    With ``join_s``, poll until the group has given this consumer its partitions (or ``join_s``
    has passed): partitions given are paused until the service restores their state, so no
    reading is fetched before there is a model to score it. ``serve`` does this on a thread while
    the model loads and compiles, so the group's join wait is not added to start-up.
    """
    from sensorwatch.pipeline.kafka import changelog, clients, reach
    from sensorwatch.pipeline.kafka.source import KafkaSource

    reach.wait_for_broker(settings.bootstrap_servers, settings.broker_timeout_s)
    topic = changelog.ensure_changelog(settings)
    if settings.kafka_client == "confluent-kafka":
        from sensorwatch.pipeline.kafka.confluent import ConfluentSource

        source: Source = ConfluentSource(settings)
    else:
        source = KafkaSource(settings)
    try:
        producer = clients.producer(settings)
        deadline = time.monotonic() + join_s
        while not source.assigned and time.monotonic() < deadline:
            if source.poll(100):  # cannot happen: what is given is paused
                raise RuntimeError("records fetched before the service was ready")
    except BaseException:
        source.close()
        raise
    return Connection(source, producer, topic)
