"""Kafka sinks: the dead-letter topic, the anomalies topic and the state changelog, on one producer.

A sink takes a step's output with ``write`` (sends are queued, not awaited) and makes it durable
with ``flush``. A flush that fails keeps what was not delivered and raises; ``flush`` again sends
exactly that once more, so the checkpoint can wait out a broker outage without losing or
repeating a record, and commits nothing until every sink has flushed.
"""

from __future__ import annotations

import base64
import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata

from sensorwatch.pipeline.stream import state
from sensorwatch.pipeline.stream.processor import Processor
from sensorwatch.pipeline.stream.records import DeadLetter, Partition
from sensorwatch.pipeline.stream.step import StepOutput
from sensorwatch.schemas.events import encode_event

log = logging.getLogger("sensorwatch.pipeline")

# A record larger than this is dead-lettered as a reference (where it is, its size, its first
# bytes) rather than whole: a copy could exceed what the broker accepts and fail the checkpoint
# on every restart, the poison pill this avoids.
MAX_DEAD_LETTER_BYTES = 256 * 1024
PREFIX_BYTES = 1024
# How long a flush waits for the broker before the checkpoint calls it an outage and retries.
FLUSH_WAIT_S = 5.0


@dataclass
class _Send:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    partition: int | None = None
    future: FutureRecordMetadata | None = None


class SinkError(KafkaError):
    """Records a sink could not deliver (they are kept and sent again by the next flush)."""


class _ProducerSink:
    def __init__(
        self, producer: KafkaProducer, topic: str, timeout_s: float = FLUSH_WAIT_S
    ) -> None:
        self.producer, self.topic, self.timeout_s = producer, topic, timeout_s
        self._pending: list[_Send] = []

    def _send(self, item: _Send) -> None:
        item.future = self.producer.send(
            item.topic,
            key=item.key,
            value=item.value,
            headers=item.headers,
            partition=item.partition,
        )
        self._pending.append(item)

    def detach(self) -> Callable[[], None]:
        """What was sent so far, handed over: the call returned waits for it (``flush``, from any
        thread: the producer is thread-safe) while this sink takes new records."""
        part = copy.copy(self)
        part._pending, self._pending = self._pending, []
        return part.flush

    def flush(self) -> None:
        """Wait (at most ``timeout_s``) until every queued record is delivered; raise ``SinkError``
        keeping the rest, which the next flush sends again (a consumer may see such a record twice:
        events carry ids for that, and a state record is the same state twice)."""
        retry = [item for item in self._pending if item.future is None]
        for item in retry:  # what the last flush could not deliver
            self._pending.remove(item)
            self._send(item)
        try:
            self.producer.flush(self.timeout_s)
        except KafkaError as exc:
            log.debug("flush topic=%s failed: %s", self.topic, exc)
        failed: list[_Send] = []
        first: Exception | None = None
        for item in self._pending:
            future = item.future
            if future is None or not future.is_done or future.failed():
                first = first or (
                    future.exception if future is not None and future.is_done else None
                )
                item.future = None
                failed.append(item)
        self._pending = failed
        if failed:
            raise SinkError(
                f"{len(failed)} record(s) to {self.topic!r} not delivered: {first or 'timed out'}"
            )

    def close(self) -> None:
        self.producer.close()


class DeadLetterSink(_ProducerSink):
    """Each rejected record with headers ``reason``, ``kind``, ``source.topic``, ``source.partition``
    and ``source.offset``: unchanged, or as a reference when it is too big to copy."""

    def write(self, out: StepOutput) -> None:
        for dead in out.dead_letters:
            rec = dead.record
            headers = [
                ("reason", dead.reason.encode()),
                ("kind", dead.kind.encode()),
                ("source.topic", rec.topic.encode()),
                ("source.partition", str(rec.partition).encode()),
                ("source.offset", str(rec.offset).encode()),
            ]
            key, value = rec.key, rec.value or b""
            if len(value) + len(key or b"") > MAX_DEAD_LETTER_BYTES:
                key, value = _prefix(key), reference(dead)
                headers.append(("truncated", b"true"))
            self._send(_Send(self.topic, key, value, headers))


def reference(dead: DeadLetter) -> bytes:
    """What stands in for a record too big to copy: where it is, its size, and its first bytes.

    >>> from sensorwatch.pipeline.stream.records import Polled
    >>> doc = orjson.loads(reference(DeadLetter(Polled("r", 2, 9, b"k", b"x" * 2000), "oversized", "oversized")))
    >>> doc["source"], doc["size"], len(base64.b64decode(doc["prefix"]))
    ({'topic': 'r', 'partition': 2, 'offset': 9}, 2000, 1024)
    """
    rec = dead.record
    value = rec.value or b""
    return orjson.dumps(
        {
            "source": {"topic": rec.topic, "partition": rec.partition, "offset": rec.offset},
            "size": len(value),
            "key_size": len(rec.key or b""),
            "prefix": base64.b64encode(value[:PREFIX_BYTES]).decode(),
        }
    )


def _prefix(key: bytes | None) -> bytes | None:
    return None if key is None else key[:PREFIX_BYTES]


class EventSink(_ProducerSink):
    """Each anomaly event as JSON, keyed by its asset id, with headers ``event_id`` and ``kind``."""

    def write(self, out: StepOutput) -> None:
        for event in out.events:
            log.info(
                "anomaly %s asset=%s start=%s score=%.3f model=%s id=%s",
                event.kind,
                event.asset_id,
                event.window_start,
                event.score,
                event.model_version,
                event.event_id,
            )
            headers = [("event_id", event.event_id.encode()), ("kind", event.kind.encode())]
            self._send(_Send(self.topic, event.asset_id.encode(), encode_event(event), headers))


class ChangelogSink(_ProducerSink):
    """Each touched asset's state, keyed by its asset id, into the changelog partition numbered like
    the readings partition the asset lives on, so a replica that takes that partition over finds it.

    ``write`` only notes which assets changed; ``flush`` writes their state as it is then, after the
    checkpoint has flushed every output, so no state ever gets ahead of the outputs it implies."""

    def __init__(
        self,
        producer: KafkaProducer,
        topic: str,
        processor: Processor,
        owners: dict[str, Partition],
    ) -> None:
        super().__init__(producer, topic)
        self.processor, self.owners = processor, owners
        self._touched: set[str] = set()

    def write(self, out: StepOutput) -> None:
        self._touched |= out.touched

    def flush(self) -> None:
        self._pending += self._states()
        super().flush()

    def detach(self) -> Callable[[], None]:
        """The touched assets' state encoded as it is now (on the poll thread), handed over with
        what the last flush could not deliver: the call returned sends it and waits for it, so the
        checkpoint sends it only after every output is durable, on any thread."""
        part = _ProducerSink(self.producer, self.topic, self.timeout_s)
        part._pending, self._pending = self._pending + self._states(), []
        return part.flush

    def _states(self) -> list[_Send]:
        """The touched assets' state records, unsent (the flush sends them), as the state is now."""
        sends = []
        for asset_id in sorted(self._touched):
            # an asset whose partition moved on is not ours to write
            where = self.owners.get(asset_id)
            if where is not None:
                value = state.encode(self.processor.export_state(asset_id))
                sends.append(_Send(self.topic, asset_id.encode(), value, [], where[1]))
        self._touched.clear()
        return sends
