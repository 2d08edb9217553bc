"""The review sink: every anomaly event to MLflow, off the scoring path.

``write`` runs on the poll thread and only queues: the event, the model version that flagged it,
the alarm's worst window so far (a copy of its readings and per-channel errors) and the asset's
readings around the alarm (``context``: a cleared alarm waits there for what follows it). A worker
thread logs the queue in batches: a run per alarm (made when it opens, completed when it clears,
so MLflow's Duration column is the alarm's), its plot and event, the day's table on the parent
run, and a link on the model version. While MLflow is slow or down the worker retries with
backoff (0.5 s doubling to 30 s); the queue holds at most ``review_buffer`` events, and when it is
full the oldest is dropped, logged and counted (``sensorwatch_review_dropped``). Every event is
also on the anomalies topic, which is where a dropped one can be found again.

A re-sent event (after a restart the service may send one again) finds its run by the event id
and updates it: one run per alarm, whatever happened in between.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from sensorwatch.models.mlflow_store import Store
from sensorwatch.pipeline.review.context import Flagged, Flagger
from sensorwatch.pipeline.review.mlflow_log import AnomalyLog

if TYPE_CHECKING:
    from sensorwatch.pipeline.service.metrics import ServiceMetrics
    from sensorwatch.pipeline.stream.processor import Processor
    from sensorwatch.pipeline.stream.step import StepOutput

log = logging.getLogger("sensorwatch.pipeline")

BATCH = 64  # events per round of the worker
MAX_DELAY_S = 30.0
WARN_EVERY_S = 60.0


class ReviewSink:
    """Anomaly events → MLflow experiment ``experiment``, through a bounded queue and one worker."""

    def __init__(
        self,
        store: Store,
        processor: Processor,
        *,
        experiment: str = "sensorwatch-anomalies",
        buffer: int = 10_000,
        drain_s: float = 15.0,
        ui_url: str = "",
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.store, self.processor, self.experiment = store, processor, experiment
        self.buffer, self.drain_s, self.metrics = max(1, buffer), drain_s, metrics
        self.mlflow = AnomalyLog(store, experiment, ui_url)
        self.logged = self.dropped = 0
        self._queue: deque[Flagged] = deque()
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stopping = False
        self._deadline = float("inf")
        self._inflight = 0  # events the worker holds in its current round
        self._flagger = Flagger()
        self._failing_since: float | None = None
        self._warned = {"fail": float("-inf"), "drop": float("-inf")}
        self._thread = threading.Thread(target=self._work, name="review-log", daemon=True)
        self._thread.start()

    # --- the poll thread ---------------------------------------------------------------------

    def write(self, out: StepOutput) -> None:
        """Queue the poll's events (never waits for MLflow), each with its alarm's worst window so far."""
        for item in self._flagger(out, self.processor.detector):
            self._put(item)

    def _put(self, item: Flagged) -> None:
        with self._cond:
            if len(self._queue) + self._inflight >= self.buffer:
                self._dropped(1, "the review buffer is full")
                if not self._queue:  # all held by the worker: the newest goes
                    return
                self._queue.popleft()
            self._queue.append(item)
            self._gauge()
            self._cond.notify()

    def flush(self) -> None:
        """Nothing to wait for: review logging is best effort and never holds up a checkpoint."""

    def close(self) -> None:
        """Give the worker up to ``drain_s`` to log what is queued (cleared alarms still waiting
        for what follows them too); count the rest as dropped."""
        for item in self._flagger.release():
            self._put(item)
        with self._cond:
            self._stopping = True
            self._deadline = time.monotonic() + self.drain_s
            self._cond.notify()
        self._wake.set()
        self._thread.join(self.drain_s + 10)
        with self._cond:
            left = len(self._queue) + self._inflight
            self._queue.clear()
        if left:
            self._dropped(
                left, f"MLflow did not take them within {self.drain_s:g} s of shutdown", force=True
            )

    @property
    def pending(self) -> int:
        """Events waiting for MLflow: queued, or in the worker's hands."""
        return len(self._queue) + self._inflight

    # --- the worker ----------------------------------------------------------------------------

    def _work(self) -> None:
        delay = 0.5
        while True:
            with self._cond:
                while not self._queue and not self._stopping and not self.mlflow.dirty:
                    self._cond.wait(1.0)
                if self._stopping and (not self._queue or time.monotonic() >= self._deadline):
                    return
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), BATCH))]
                self._inflight = len(batch)
            done, failure = self._log_round(batch)
            self._requeue([item for i, item in enumerate(batch) if i not in done])
            self.logged += len(done)
            if self.metrics is not None:
                self.metrics.review_logged.inc(len(done))
            if failure is not None:
                self._failed(failure)
                self._wake.wait(min(delay, 1.0) if self._stopping else delay)
                delay = min(delay * 2, MAX_DELAY_S)
                continue
            delay = 0.5
            if self._failing_since is not None:
                log.warning(
                    "review: MLflow takes anomalies again after %.0f s; %d queued",
                    time.monotonic() - self._failing_since,
                    len(self._queue),
                )
                self._failing_since = None

    def _log_round(self, batch: list[Flagged]) -> tuple[set[int], Exception | None]:
        """Log one round; the positions logged, and the error that stopped it, if one did.

        An alarm opened and cleared within one round is logged once, as cleared (it holds all the
        opened event does): behind an outage, that halves the work. The opened one counts as
        logged with it."""
        last = {item.event.event_id: i for i, item in enumerate(batch)}
        done: set[int] = set()
        try:
            for i, item in enumerate(batch):
                if last[item.event.event_id] != i:
                    continue
                if self._stopping and time.monotonic() >= self._deadline:
                    break
                self.mlflow.log(item)
                covered = {
                    j for j in range(i + 1) if batch[j].event.event_id == item.event.event_id
                } - done
                done |= covered
                self._inflight -= len(covered)
            self.mlflow.tables()
        except Exception as exc:  # MLflow slow, down or refusing: the rest waits for the next round
            return done, exc
        return done, None

    def _requeue(self, items: list[Flagged]) -> None:
        with self._cond:
            self._inflight = 0
            self._queue.extendleft(reversed(items))
            over = len(self._queue) - self.buffer
            for _ in range(max(0, over)):
                self._queue.popleft()
            if over > 0:
                self._dropped(over, "the review buffer is full")
            self._gauge()

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._warned["fail"] >= WARN_EVERY_S:
            self._warned["fail"] = now
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            log.warning(
                "review: MLflow does not take anomalies (%s); holding %d (at most %d), retrying with backoff",
                why,
                len(self._queue),
                self.buffer,
            )

    def _dropped(self, n: int, why: str, force: bool = False) -> None:
        self.dropped += n
        if self.metrics is not None:
            self.metrics.review_dropped.inc(n)
        now = time.monotonic()
        if force or now - self._warned["drop"] >= WARN_EVERY_S:
            self._warned["drop"] = now
            log.warning(
                "review: %d anomaly event(s) not logged to MLflow (%s; %d dropped in all); "
                "they are on the anomalies topic",
                n,
                why,
                self.dropped,
            )

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.review_pending.set(len(self._queue))
