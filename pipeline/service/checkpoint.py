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

The checkpoint proper does not hold up scoring: on the poll thread it only takes what each sink
holds so far (``Sink.detach``: the records sent, the archive's rows, the state of the touched
assets encoded as it is at that poll), and a worker thread makes those durable in the same order
(outputs, then state); the offsets of those polls are committed by the poll thread (the consumer
is not thread-safe) once that worker is done. One checkpoint is in flight at a time: when the
next comes due before the last is durable, the poll thread waits for it, so what is held
unflushed stays within about two commit intervals. A sink without ``detach`` is flushed on the
poll thread first; a state sink without it makes the whole checkpoint run on the poll thread.

A broker outage is waited out: a flush or commit that fails is tried again with backoff for up
to ``retry_for_s`` (nothing is committed meanwhile and nothing is lost: the sinks keep what they
could not deliver), and then the error is raised so the service exits non-zero.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

from kafka.errors import CommitFailedError, KafkaError

from sensorwatch.pipeline.errors import BrokerError
from sensorwatch.pipeline.stream.records import Partition
from sensorwatch.pipeline.stream.step import StepOutput

log = logging.getLogger("sensorwatch.pipeline")
T = TypeVar("T")


class Sink(Protocol):
    """Somewhere a step's output goes: ``write`` queues it, ``flush`` makes it durable or raises.

    A sink may also have ``detach() -> Callable[[], None]``: it hands over what it holds so far
    and starts afresh; the call returned makes that durable from another thread (or raises, and
    may then be called again), while ``write`` goes on taking new output on the poll thread."""

    def write(self, out: StepOutput) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class _InFlight:
    """A checkpoint being made durable on the worker thread, and the offsets it will commit."""

    done: Future
    offsets: dict[Partition, int]


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
        self._in_flight: _InFlight | None = None
        self._worker: ThreadPoolExecutor | None = None  # made with the first checkpoint it runs
        self._closing = threading.Event()

    def __call__(self, out: StepOutput, force: bool = False) -> None:
        """Write one poll's output; start the checkpoint when it is due (``force``: run it to the
        commit now)."""
        for sink in (*self.sinks, *self.state):
            sink.write(out)
        self._offsets.update(out.offsets)
        self._unflushed = True
        if force:
            self.flush()
        else:
            self.flush_if_due()

    def flush_if_due(self) -> None:
        """Commit a checkpoint the worker has made durable; start one that came due."""
        self._collect(wait=False)
        if self._unflushed and self.clock() - self._flushed_at >= self.every_s:
            self._start(background=True)

    def flush(self) -> None:
        """Outputs durable, then state durable, then the offsets of every poll written so far: the
        checkpoint in flight first, then one of everything since, all before this returns."""
        self._collect(wait=True)
        if self._unflushed:
            self._start(background=False)

    def _start(self, background: bool) -> None:
        """Take what every sink holds (on this, the poll thread) and make it durable, on the worker
        thread when ``background`` and every state sink can detach, else here, then commit."""
        self._collect(wait=True)  # one checkpoint in flight at a time, in order
        parts = []
        for sink in self.sinks:
            detach = getattr(sink, "detach", None)
            if detach is None:
                self.retry(sink.flush)
            else:
                parts.append(detach())
        detachable = all(hasattr(sink, "detach") for sink in self.state)
        if not detachable:  # outputs durable before any state is written
            self._durable(parts)
            parts = []
        for sink in self.state:
            if detachable:
                parts.append(sink.detach())  # type: ignore[attr-defined]
            else:
                self.retry(sink.flush)
        offsets, self._offsets, self._unflushed = self._offsets, {}, False
        self._flushed_at = self.clock()
        if background and parts:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(1, thread_name_prefix="sensorwatch-checkpoint")
            self._in_flight = _InFlight(self._worker.submit(self._durable, parts), offsets)
        else:
            self._durable(parts)
            self._commit(offsets)

    def _durable(self, parts: list[Callable[[], None]]) -> None:
        for part in parts:
            self.retry(part)

    def _collect(self, wait: bool) -> None:
        """The checkpoint in flight, once durable (``wait``: wait for it): its offsets committed,
        or its failure raised here."""
        job = self._in_flight
        if job is None or not (wait or job.done.done()):
            return
        self._in_flight = None
        job.done.result()
        self._commit(job.offsets)

    def _commit(self, offsets: dict[Partition, int]) -> None:
        if offsets:
            try:
                self.retry(lambda: self.commit(offsets))
            except CommitFailedError as exc:
                # The group moved these partitions on: their new owner restores the state of the
                # last checkpoint (with the offsets it holds) and carries on from there.
                log.info("commit skipped, partitions reassigned: %s", exc)

    def drop(self, partitions: set[Partition]) -> None:
        """Forget the offsets of partitions that moved to another replica: not ours to commit. A
        checkpoint in flight is finished first, as when it ran on the poll thread: its outputs and
        state durable and its offsets committed while the partitions are still ours (the group
        calls this before it hands them on), so the next owner's state and offsets agree. One that
        failed is raised where it is collected, with only the partitions kept."""
        job = self._in_flight
        if job is not None and job.done.exception() is None:  # waits for it
            self._in_flight = None
            self._commit(job.offsets)
        for tp in partitions:
            self._offsets.pop(tp, None)
            if self._in_flight is not None:
                self._in_flight.offsets.pop(tp, None)

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
                if waited + delay > self.retry_for_s or self._closing.is_set():
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
        """Close every sink; a checkpoint still in flight (the service stopped on an error) is
        let finish or fail first, and is not committed."""
        self._closing.set()
        if self._worker is not None:
            self._worker.shutdown(wait=True)
        self._in_flight = None
        for sink in (*self.sinks, *self.state):
            sink.close()
