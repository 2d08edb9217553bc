"""The checkpoint: outputs to their sinks, then the state changelog, then the commit.

Every poll's output is written to the sinks at once (events and dead letters are sent, an archive
keeps its rows); every ``every_s`` seconds (0: after every poll) the checkpoint proper runs: flush
every output sink, then write and flush the state, then commit the offsets of every poll since the
last one. The first poll with output is checkpointed at once: a replica that starts shows its
progress (and holds it) from its first poll, not ``every_s`` later. A crash in between replays
those polls from the last commit, on the state of that commit, to the same outputs.

At-least-once, with an exactly-once effect on state: offsets move only after every output of
the poll is durable (events, dead letters) and after the state that includes those readings is
durable (the changelog). A crash before the changelog flush replays the poll on the old state
and re-sends the same events (same ids); a crash after it restores the new state, which skips
the readings it already holds. A new output (an archive, a review log) is one more sink.

A broker outage is waited out: a flush or commit that fails is tried again with backoff for up
to ``retry_for_s`` (nothing is committed meanwhile and nothing is lost: the sinks keep what they
could not deliver), and then the error is raised so the service exits non-zero.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from kafka.errors import CommitFailedError, KafkaError

from sensorwatch.pipeline.errors import BrokerError
from sensorwatch.pipeline.stream.records import Partition
from sensorwatch.pipeline.stream.step import StepOutput

log = logging.getLogger("sensorwatch.pipeline")
T = TypeVar("T")


class Sink(Protocol):
    """Somewhere a step's output goes: ``write`` queues it, ``flush`` makes it durable or raises."""

    def write(self, out: StepOutput) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class Checkpoint:
    """Output sinks, then state sinks, each written then flushed, then the commit."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        commit: Callable[[dict[Partition, int]], None],
        state: Sequence[Sink] = (),
        retry_for_s: float = 0.0,
        sleep: Callable[[float], object] = time.sleep,
        every_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sinks, self.state, self.commit = list(sinks), list(state), commit
        self.retry_for_s, self.sleep, self.every_s, self.clock = retry_for_s, sleep, every_s, clock
        self._offsets: dict[Partition, int] = {}
        self._unflushed = False
        self._flushed_at = -float("inf")  # the first checkpoint is due at once

    def __call__(self, out: StepOutput, force: bool = False) -> None:
        """Write one poll's output; run the checkpoint when it is due (or ``force``)."""
        for sink in (*self.sinks, *self.state):
            sink.write(out)
        self._offsets.update(out.offsets)
        self._unflushed = True
        if force or self.clock() - self._flushed_at >= self.every_s:
            self.flush()

    def flush_if_due(self) -> None:
        """Run a checkpoint that came due while no poll brought anything."""
        if self._unflushed and self.clock() - self._flushed_at >= self.every_s:
            self.flush()

    def flush(self) -> None:
        """Outputs durable, then state durable, then the offsets of every poll written so far."""
        if not self._unflushed:
            return
        for group in (self.sinks, self.state):
            for sink in group:
                self.retry(sink.flush)
        offsets, self._offsets, self._unflushed = self._offsets, {}, False
        self._flushed_at = self.clock()
        if offsets:
            try:
                self.retry(lambda: self.commit(offsets))
            except CommitFailedError as exc:
                # The group moved these partitions on: their new owner restores the state of the
                # last checkpoint (with the offsets it holds) and carries on from there.
                log.info("commit skipped, partitions reassigned: %s", exc)

    def drop(self, partitions: set[Partition]) -> None:
        """Forget the offsets of partitions that moved to another replica: not ours to commit."""
        for tp in partitions:
            self._offsets.pop(tp, None)

    def retry(self, action: Callable[[], T]) -> T:
        """Run ``action``; on a broker error, again with backoff until ``retry_for_s`` has passed."""
        began, delay, said = time.monotonic(), 0.5, False
        while True:
            try:
                result = action()
            except CommitFailedError:
                raise
            except KafkaError as exc:
                waited = time.monotonic() - began
                if waited + delay > self.retry_for_s:
                    raise BrokerError(
                        f"the broker did not take this poll's output for {waited:.0f} s; nothing of it was committed "
                        f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                    ) from exc
                if not said:
                    log.warning(
                        "broker unreachable (%s): holding this poll's output, retrying for up to %.0f s",
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                        self.retry_for_s,
                    )
                    said = True
                self.sleep(delay)
                delay = min(delay * 2, 15.0)
                continue
            if said:
                log.warning("broker reachable again after %.1f s", time.monotonic() - began)
            return result

    def close(self) -> None:
        for sink in (*self.sinks, *self.state):
            sink.close()
