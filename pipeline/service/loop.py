"""The streaming service: poll → step → checkpoint → repeat, and a last checkpoint on the way out.

``step`` (``sensorwatch.pipeline.stream.step``) turns a poll into outputs without I/O; the
``Checkpoint`` sends them to the sinks, flushes, then commits. An exception stops the service
without committing: a failure to publish is an outage or a bug, not bad input, and a worker that
keeps "running" without committing is worse than one that exits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

from sensorwatch.models.cache import ChampionCache
from sensorwatch.models.mlflow_store import Store
from sensorwatch.pipeline.service.checkpoint import Checkpoint, Sink
from sensorwatch.pipeline.service.health import Endpoints, Health
from sensorwatch.pipeline.service.metrics import ServiceMetrics
from sensorwatch.pipeline.service.reload import Reloader, serving_decisions
from sensorwatch.pipeline.service.report import Reporter, Stats
from sensorwatch.pipeline.settings import Settings
from sensorwatch.pipeline.stream.processor import Processor
from sensorwatch.pipeline.stream.records import Partition, Polled
from sensorwatch.pipeline.stream.step import (
    Parsed,
    StepOutput,
    Windowed,
    decide,
    drain,
    parse,
    release_quiet,
    window,
)

if TYPE_CHECKING:
    from sensorwatch.models.detector import Detector
    from sensorwatch.pipeline.service.connect import Connection


class Source(Protocol):
    """Where records come from: ``KafkaSource``, or a list of records in a test.

    Partitions it was given since the last look are in ``assigned_new``, held back until
    ``resume``: the service restores their state first.
    """

    assigned: set[Partition]
    assigned_new: set[Partition]
    max_records: int  # most records the next poll may return

    def poll(self, timeout_ms: int | None = None) -> list[Polled]: ...

    def resume(self, partitions: set[Partition]) -> None: ...

    def commit(self, offsets: dict[Partition, int]) -> None: ...

    def lag(self) -> dict[int, int]: ...

    def close(self) -> None: ...


Restore = Callable[[set[int], Processor], int]
FIRST_POLL_RECORDS = 64
OBSERVE_EVERY_S = 1.0  # how often lag and state size are measured for the metrics


class Service:
    """One scoring replica: a source, the processor and its state, the checkpoint and its sinks."""

    def __init__(
        self,
        settings: Settings,
        detector: Detector,
        source: Source,
        sinks: Sequence[Sink],
        store: Store | None = None,
        *,
        state: Sequence[Sink] = (),
        restore: Restore | None = None,
        metrics: ServiceMetrics | None = None,
        health: Health | None = None,
        endpoints: Endpoints | None = None,
    ) -> None:
        """``metrics``, ``health`` and ``endpoints`` may be made before the model loads (``serve``
        answers /healthz meanwhile); else they are made here, and the endpoints when the run starts."""
        self.settings = settings
        self.processor = Processor(detector.warm_up(), serving_decisions(settings, detector))
        self.limits = settings.limits()
        self.source, self.restore = source, restore
        self.checkpoint = Checkpoint(
            sinks,
            source.commit,
            state,
            retry_for_s=settings.broker_timeout_s,
            every_s=settings.commit_interval_s,
        )
        self.owners: dict[str, Partition] = {}  # asset id → partition: whose state goes where
        cache = (
            ChampionCache(settings.cache_dir, store.model_name, settings.model_alias)
            if store
            else None
        )
        self.metrics = metrics or ServiceMetrics()
        self.health = health or Health(settings)
        self.health.partitions = lambda: self.source.assigned
        self.metrics.ready.set_function(lambda: float(self.health.ready()[0]))  # asked when scraped
        self.endpoints = endpoints
        self._observed = float("-inf")
        self.reloader = Reloader(
            store,
            settings.model_alias,
            settings.reload_interval_s,
            cache=cache,
            on_refused=self.metrics.model_refused.inc,
            on_failed=self.metrics.model_check_failed.inc,
        )
        self.health.champion_unusable = lambda: self.reloader.unusable
        self.metrics.champion_unusable.set_function(
            lambda: float(self.reloader.unusable is not None)
        )
        self.report = Reporter(
            self.metrics, lambda: self.processor.windower.max_gap_ms or 0, settings.log_every_s
        )
        self._quiet_checked = time.monotonic()
        self._scorer = ThreadPoolExecutor(1, thread_name_prefix="sensorwatch-score")
        self._pending: tuple[Windowed, Future, float] | None = None  # a poll being scored
        self.source.max_records = min(settings.max_poll_records, FIRST_POLL_RECORDS)
        self._model_version(detector.version)

    @classmethod
    def on_kafka(
        cls,
        settings: Settings,
        detector: Detector,
        store: Store | None = None,
        connection: Connection | None = None,
        **operator: Any,
    ) -> Service:
        """The service on Kafka, with its sinks and changelog (``startup.on_kafka``; ``startup``
        also starts one from the settings alone, loading the champion)."""
        from sensorwatch.pipeline.service.startup import on_kafka

        return on_kafka(settings, detector, store, connection, **operator)

    @property
    def stats(self) -> Stats:
        return self.report.stats

    @property
    def assigned(self) -> set[Partition]:
        return self.source.assigned

    def run(self, stop: threading.Event) -> Stats:
        """Process polls until ``stop`` is set; an exception stops it without committing.

        One poll is scored on a worker thread while the next is fetched and parsed (the forward
        pass releases the GIL); its thresholds, alarms and checkpoint follow before the next poll
        touches any state, so decisions and checkpoints keep the order of a one-poll-at-a-time loop.
        While a poll is being scored the next one takes only what has arrived, without waiting:
        with nothing there the poll being scored is decided (its events sent) at once, and the
        wait for records comes after, so a stream below the replica's limit gets each poll's events
        as soon as its forward pass ends rather than after a poll of its own.
        """
        if self.settings.metrics_port and self.endpoints is None:
            self.endpoints = Endpoints(self.settings.metrics_port, self.metrics, self.health)
        try:
            # Partitions given while the model loaded: restored now, not after a first poll that
            # waits its whole timeout on them paused.
            if self.source.assigned_new:
                self._restore(set(self.source.assigned_new))
            while not stop.is_set():
                self.health.beat()
                self._observe()
                records = self.source.poll(0 if self._pending is not None else None)
                parsed = self._parse(records) if records else None
                self._complete()
                if self.source.assigned_new:
                    self._restore(set(self.source.assigned_new))
                self._release_quiet()
                self.checkpoint.flush_if_due()
                if self.reloader.maybe_swap(self.processor):
                    self._model_version(self.processor.detector.version)
                if parsed is not None:
                    self._begin(parsed)
            self._complete()
            began = time.perf_counter()
            self._finish(
                drain(self.processor), began, force=True
            )  # what waits for its grace period
        finally:
            self.health.stopped()
            if self.endpoints is not None:
                self.endpoints.close()
            self._scorer.shutdown(wait=True, cancel_futures=True)
            self.reloader.close()
            self.source.close()
            self.checkpoint.close()
        return self.stats

    def handle(self, records: Sequence[Polled]) -> StepOutput:
        """One poll end to end: parse, window, score, decide, then checkpoint."""
        self._complete()
        self._begin(self._parse(records))
        out = self._complete()
        assert out is not None
        return out

    def _parse(self, records: Sequence[Polled]) -> tuple[Parsed, float]:
        began = time.perf_counter()
        parsed = parse(records, self.limits, self.processor.channels, time.time_ns() // 1_000_000)
        return parsed, time.perf_counter() - began

    def _begin(self, parsed: tuple[Parsed, float]) -> None:
        """Window a parsed poll and start its forward pass on the scoring thread."""
        began = time.perf_counter()
        windowed = window(
            self.processor, parsed[0], self.limits, time.time_ns() // 1_000_000, time.monotonic()
        )
        self.owners.update(windowed.owners)
        scoring = self._scorer.submit(self._score, windowed.batch)
        self._pending = (windowed, scoring, parsed[1] + time.perf_counter() - began)

    def _score(self, batch):
        began = time.perf_counter()
        return self.processor.score(batch), time.perf_counter() - began

    def _complete(self) -> StepOutput | None:
        """Decide and checkpoint the poll being scored, if any. Its work time (what ``_pace`` sizes
        polls by) is parsing, windowing and from here on: the fetch it overlapped is not work."""
        if self._pending is None:
            return None
        windowed, scoring, work = self._pending
        began = time.perf_counter()
        scored, seconds = scoring.result()
        self.stats.scoring_s += seconds
        self._pending = None
        out = decide(self.processor, windowed, scored)
        self._finish(out, began - work)
        self._pace(out.polled, time.perf_counter() - began + work)
        return out

    def _pace(self, records: int, seconds: float) -> None:
        """Size the next poll so its work takes at most a third of ``max_poll_interval_ms``: a slow
        model then means smaller polls, never a consumer evicted from its group (and a rebalance
        loop). Polls start small and at most double, up to ``max_poll_records``."""
        budget = self.settings.max_poll_interval_ms / 1000 / 3
        fits = int(budget * records / seconds) if seconds > 0 else self.settings.max_poll_records
        self.source.max_records = max(
            1, min(self.settings.max_poll_records, 2 * self.source.max_records, fits)
        )

    def _finish(self, out: StepOutput, began: float, force: bool = False) -> StepOutput:
        self.checkpoint(out, force)
        self.report(out, time.perf_counter() - began)
        return out

    def _restore(self, given: set[Partition]) -> None:
        """Before any of their readings: the state of the assets on partitions just given."""
        if self.restore is not None:
            self.restore({p for _, p in given}, self.processor)
            for asset_id, applied in self.processor.applied.items():
                for tp in applied:
                    if tp in given:
                        self.owners[asset_id] = tp
        self.source.resume(given)

    def _release_quiet(self, every_s: float = 1.0) -> None:
        """About once a second: score what quiet assets still hold back for their grace period."""
        now = time.monotonic()
        if now - self._quiet_checked < every_s or not self.processor.windower.waiting():
            return
        self._quiet_checked = now
        began = time.perf_counter()
        out = release_quiet(self.processor, now)
        if out.touched:
            self._finish(out, began)

    def forget(self, gone: set[Partition]) -> None:
        """Drop the state of assets whose partitions moved to another replica. The group calls it
        from inside a poll: the poll before is decided first, as it would have been before that poll."""
        self._complete()
        assets = [a for a, tp in self.owners.items() if tp in gone]
        self.checkpoint.drop(gone)
        self.processor.forget(assets)
        for a in assets:
            del self.owners[a]
        self.source.assigned_new -= gone

    def _observe(self) -> None:
        """About once a second: each partition's lag and the state held, for the metrics."""
        now = time.monotonic()
        if now - self._observed < OBSERVE_EVERY_S:
            return
        self._observed = now
        self.metrics.observe(self.source.lag(), *self.processor.windower.held())

    def _model_version(self, version: str) -> None:
        self.metrics.model_version.set(float(version) if version.isdigit() else 0)
        self.health.model_version = version
