"""The checkpoint: send one step's output to every sink, flush them all, then commit.

At-least-once: offsets move only after every sink that must be durable has flushed what came
from them, so a crash in between replays the poll instead of losing it. A sink that cannot flush
raises, and nothing is committed; the service then stops (a broker or store outage is not a bad
record). A new output (an archive, a review log) is one more sink, not a new branch in the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from sensorwatch.pipeline.stream.step import Partition, StepOutput


class Sink(Protocol):
    """Somewhere a step's output goes: ``write`` queues it, ``flush`` makes it durable or raises."""

    def write(self, out: StepOutput) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class Checkpoint:
    """Sinks, flushed in order, and the commit that follows them."""

    def __init__(self, sinks: Sequence[Sink], commit: Callable[[dict[Partition, int]], None]) -> None:
        self.sinks, self.commit = list(sinks), commit

    def __call__(self, out: StepOutput) -> None:
        for sink in self.sinks:
            sink.write(out)
        for sink in self.sinks:
            sink.flush()
        if out.offsets:
            self.commit(out.offsets)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
