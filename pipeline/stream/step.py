"""The batch step: one poll's records in, everything the poll became out; no I/O.

``step`` parses and validates each record, windows and scores the readings through the
``Processor`` (one forward pass for every window ready in the poll), and returns the dead
letters (each with its source record and reason), the anomaly events, the decisions, the
offsets to commit and which partition each asset lives on. Sending, flushing and committing are
the checkpoint's job (``sensorwatch.pipeline.service.checkpoint``), so this step runs the same
on Kafka, in a test with a list of records, or on a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sensorwatch.pipeline.stream.batch import WindowBatch
from sensorwatch.pipeline.stream.processor import Decisions, Processor
from sensorwatch.pipeline.stream.records import DeadLetter, Partition, Polled
from sensorwatch.schemas.readings import Limits, parse_reading
from sensorwatch.schemas.records import AnomalyEvent, Reading, Rejected


@dataclass
class StepOutput:
    """What one poll became."""

    polled: int
    decisions: Decisions
    dead_letters: list[DeadLetter] = field(default_factory=list)
    offsets: dict[Partition, int] = field(
        default_factory=dict
    )  # next offset to read, per partition
    owners: dict[str, Partition] = field(default_factory=dict)  # asset id → its partition
    replayed: int = 0  # readings skipped because the restored state already holds them

    @property
    def touched(self) -> set[str]:
        """Assets whose state this step changed."""
        return self.decisions.windows.touched

    @property
    def events(self) -> list[AnomalyEvent]:
        return self.decisions.events


@dataclass
class Parsed:
    """A poll's records parsed, before anything touched the processor's state: the readings (each
    with the record it came from), the dead letters, and the next offset of each partition."""

    records: Sequence[Polled]
    channels: frozenset[str]  # the channel set the readings were checked against
    readings: list[tuple[Reading, Polled]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    offsets: dict[Partition, int] = field(default_factory=dict)


@dataclass
class Windowed:
    """A poll windowed: what ``decide`` needs besides the windows' scores."""

    polled: int
    batch: WindowBatch
    origin: dict[int, Polled]
    dead_letters: list[DeadLetter]
    offsets: dict[Partition, int]
    owners: dict[str, Partition]
    replayed: int


def step(
    processor: Processor,
    records: Sequence[Polled],
    limits: Limits,
    now_ms: int,
    now: float = 0.0,
) -> StepOutput:
    """Parse, window, score and decide one poll's ``records`` (in partition order), arriving at
    clock time ``now``. Readings that a restored state already holds are skipped, not re-applied.
    The service runs the same four stages, with the next poll fetched while a forward pass runs."""
    windowed = window(
        processor, parse(records, limits, processor.channels, now_ms), limits, now_ms, now
    )
    return decide(processor, windowed, processor.score(windowed.batch))


def parse(
    records: Sequence[Polled], limits: Limits, channels: frozenset[str], now_ms: int
) -> Parsed:
    """Parse and validate each record against ``channels`` within ``limits`` (``Settings.limits()``);
    touches no state, so it may run while the poll before is still being scored."""
    out = Parsed(records, channels)
    for rec in records:
        out.offsets[(rec.topic, rec.partition)] = rec.offset + 1
        parsed = parse_reading(rec.value, rec.key, limits=limits, channels=channels, now_ms=now_ms)
        if isinstance(parsed, Rejected):
            out.dead_letters.append(DeadLetter(rec, parsed.reason, parsed.kind))
        else:
            out.readings.append((parsed, rec))
    return out


def window(
    processor: Processor, parsed: Parsed, limits: Limits, now_ms: int, now: float = 0.0
) -> Windowed:
    """Put the parsed readings into their assets' windows (skipping what a restored state already
    holds); the windows that became ready are in ``batch``, to be scored."""
    if parsed.channels != processor.channels:  # a new model version came with other channels
        parsed = parse(parsed.records, limits, processor.channels, now_ms)
    readings: list[Reading] = []
    origin: dict[int, Polled] = {}
    owners: dict[str, Partition] = {}
    replayed = 0
    applied_of = processor.applied
    for reading, rec in parsed.readings:
        tp = (rec.topic, rec.partition)
        applied = applied_of.get(reading.asset_id)
        if applied is None:
            applied = applied_of[reading.asset_id] = {}
        if rec.offset < applied.get(tp, 0):
            replayed += 1
            continue
        applied[tp] = rec.offset + 1
        readings.append(reading)
        origin[id(reading)] = rec
        owners[reading.asset_id] = tp
    batch = processor.window(readings, now)
    return Windowed(
        len(parsed.records), batch, origin, parsed.dead_letters, parsed.offsets, owners, replayed
    )


def decide(processor: Processor, windowed: Windowed, scored: tuple[np.ndarray, ...]) -> StepOutput:
    """Thresholds and alarms over the scored windows, in order; the misplaced readings become dead letters."""
    w = windowed
    out = StepOutput(
        w.polled, processor.decide(w.batch, scored), w.dead_letters, w.offsets, w.owners, w.replayed
    )
    for kind, misplaced in (("late", w.batch.late), ("duplicate", w.batch.duplicates)):
        out.dead_letters.extend(
            DeadLetter(w.origin[id(r)], f"{kind}: {_misplaced_reason(kind, r)}", kind)
            for r in misplaced
        )
    return out


def drain(processor: Processor) -> StepOutput:
    """Score every reading still waiting for its grace period (at shutdown)."""
    return StepOutput(0, processor.flush())


def release_quiet(processor: Processor, now: float) -> StepOutput:
    """Score the readings of assets that received nothing for one grace period of clock time:
    with no newer reading to push them out, they would otherwise wait until shutdown."""
    return StepOutput(0, processor.flush(quiet_since=now - processor.windower.grace_ms / 1000))


def _misplaced_reason(kind: str, r: Reading) -> str:
    what = (
        "event time already seen" if kind == "duplicate" else "older than the asset's window allows"
    )
    return f"asset {r.asset_id} ts={r.ts_ms} {what}"
