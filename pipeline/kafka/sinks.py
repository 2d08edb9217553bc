"""Kafka sinks: the dead-letter topic and the anomalies topic, on one shared producer.

A sink takes a step's output with ``write`` (sends are queued, not awaited) and makes it durable
with ``flush``, which raises if anything was not delivered: the checkpoint then commits nothing,
so the poll is read again after a restart rather than lost.
"""

from __future__ import annotations

import logging

from kafka import KafkaProducer
from kafka.producer.future import FutureRecordMetadata

from sensorwatch.pipeline.stream.step import StepOutput
from sensorwatch.schemas.events import encode_event

log = logging.getLogger("sensorwatch.pipeline")


class _ProducerSink:
    def __init__(self, producer: KafkaProducer, topic: str, timeout_s: float = 30.0) -> None:
        self.producer, self.topic, self.timeout_s = producer, topic, timeout_s
        self._pending: list[FutureRecordMetadata] = []

    def flush(self) -> None:
        self.producer.flush(self.timeout_s)
        pending, self._pending = self._pending, []
        for future in pending:
            future.get(timeout=self.timeout_s)  # raises the send's error

    def close(self) -> None:
        self.producer.close()


class DeadLetterSink(_ProducerSink):
    """Each rejected record, unchanged, with headers ``reason``, ``source.topic``, ``source.partition``
    and ``source.offset``."""

    def write(self, out: StepOutput) -> None:
        for dead in out.dead_letters:
            rec = dead.record
            headers = [
                ("reason", dead.reason.encode()),
                ("source.topic", rec.topic.encode()),
                ("source.partition", str(rec.partition).encode()),
                ("source.offset", str(rec.offset).encode()),
            ]
            self._pending.append(self.producer.send(self.topic, key=rec.key, value=rec.value or b"", headers=headers))


class EventSink(_ProducerSink):
    """Each anomaly event as JSON, keyed by its asset id."""

    def write(self, out: StepOutput) -> None:
        for event in out.events:
            log.info(
                "anomaly asset=%s start=%s score=%.3f model=%s",
                event.asset_id, event.window_start, event.score, event.model_version,
            )
            self._pending.append(self.producer.send(self.topic, key=event.asset_id.encode(), value=encode_event(event)))
