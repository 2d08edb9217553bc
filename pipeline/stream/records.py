"""The records a source hands the stream and the ones the stream sets aside, whatever the source.

A source (the Kafka consumer, a list in a test, a file) gives ``Polled`` records: where each came
from, its key and its value. What the step cannot use becomes a ``DeadLetter`` that keeps the
record it came from, so a sink can say where it was. Stream processing needs nothing of Kafka's
own types: a partition is a ``(topic, number)`` pair.

>>> rec = Polled("sensor-readings", 2, 41, b"pump-01", b"not json")
>>> dead = DeadLetter(rec, "not JSON: unexpected character", "malformed")
>>> (dead.record.topic, dead.record.partition, dead.record.offset), dead.kind
(('sensor-readings', 2, 41), 'malformed')
"""

from __future__ import annotations

from dataclasses import dataclass

Partition = tuple[str, int]  # (topic, partition)


@dataclass(frozen=True, slots=True)
class Polled:
    """A record as a source handed it over: where it came from, its key and its value."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record the service cannot use, the reason it is set aside (one line), and the reason's
    kind: a label from a small fixed set, for metrics."""

    record: Polled
    reason: str
    kind: str
