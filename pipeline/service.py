"""The streaming service: poll → validate → window → score → decide → publish → flush → commit.

At-least-once: offsets are committed only after the anomaly events and dead-letter records of the
batch are flushed, so a crash replays the uncommitted batch instead of losing it. A failure to
publish is a bug or an outage, not bad input: it stops the service without committing.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata

from models.detector import Detector
from models.registry import Store, alias_version, load_detector
from pipeline import kafka
from pipeline.metrics import ServiceMetrics
from pipeline.processor import Processor
from pipeline.settings import Settings
from pipeline.train import rules_of
from pipeline.windows import Windower
from schemas.events import encode_event
from schemas.readings import parse_reading
from schemas.records import AnomalyEvent, Reading, Rejected

log = logging.getLogger("sensorwatch.pipeline")


@dataclass
class Stats:
    """Totals of one service run."""

    records: int = 0
    scored: int = 0
    rejected: int = 0
    windows: int = 0
    anomalies: int = 0
    batches: int = 0
    busy_s: float = 0.0


def make_processor(settings: Settings, detector: Detector) -> Processor:
    windower = Windower(
        detector.spec.channels,
        detector.spec.window,
        settings.stride,
        grace_ms=int(settings.grace_s * 1000),
        max_gap_ms=int(settings.max_gap_s * 1000),
    )
    return Processor(detector, windower, rules_of(settings))


class _Forget(ConsumerRebalanceListener):
    """Drop the window state of assets whose partitions move away (cheap: no I/O here)."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.service.assigned -= set(revoked)
        gone = {a for a, tp in self.service.asset_partition.items() if tp in set(revoked)}
        self.service.processor.forget(gone)
        for a in gone:
            del self.service.asset_partition[a]

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.service.assigned |= set(assigned)
        log.info("assigned partitions=%s", sorted(tp.partition for tp in assigned))


class Service:
    """One scoring replica in the consumer group."""

    def __init__(
        self,
        settings: Settings,
        detector: Detector,
        store: Store | None = None,
    ) -> None:
        self.settings, self.store = settings, store
        self.processor = make_processor(settings, detector.warm_up())
        self.metrics = ServiceMetrics()
        self.metrics.model_version.set(float(detector.version) if detector.version.isdigit() else 0)
        self.stats = Stats()
        self.asset_partition: dict[str, TopicPartition] = {}
        self.assigned: set[TopicPartition] = set()  # this replica's share of the readings topic
        self.producer = kafka.producer(settings)
        self.consumer = kafka.consumer(settings)
        self.consumer.subscribe([settings.readings_topic], listener=_Forget(self))
        self._checked_at = time.monotonic()

    def run(self, stop: threading.Event) -> Stats:
        """Process batches until ``stop`` is set; an exception stops it without committing."""
        if self.settings.metrics_port:
            self.metrics.serve(self.settings.metrics_port)
        try:
            while not stop.is_set():
                polled = self.consumer.poll(self.settings.poll_timeout_ms, self.settings.max_poll_records)
                if polled:
                    self.checkpoint(polled)
                self._maybe_reload()
            self.checkpoint({})  # score what waits for its grace period, then commit
        finally:
            self.consumer.close(autocommit=False)
            self.producer.close()
        return self.stats

    def checkpoint(self, polled: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Handle one poll's records end to end, then commit them."""
        start = time.perf_counter()
        origin: dict[int, ConsumerRecord] = {}
        readings: list[Reading] = []
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        futures = []
        now_ms = int(time.time() * 1000)
        channels = frozenset(self.processor.detector.spec.channels)
        for tp, records in polled.items():
            for rec in records:
                parsed = parse_reading(
                    rec.value,
                    rec.key,
                    channels=channels,
                    now_ms=now_ms,
                    max_future_ms=int(self.settings.max_future_s * 1000),
                    max_bytes=self.settings.max_message_bytes,
                )
                if isinstance(parsed, Rejected):
                    futures.append(self._dead_letter(parsed.reason, rec))
                else:
                    readings.append(parsed)
                    origin[id(parsed)] = rec
                    self.asset_partition[parsed.asset_id] = tp
            offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
        decided = self.processor.process(readings) if polled else self.processor.flush()
        batch = decided.windows
        for kind, items in (("late", batch.late), ("duplicate", batch.duplicates)):
            for r in items:
                futures.append(self._dead_letter(f"{kind}: {self._late_reason(kind, r)}", origin[id(r)]))
        for event in decided.events:
            futures.append(self._publish(event))
        self.producer.flush()
        for f in futures:
            f.get(timeout=30)  # raises if a send failed: then nothing below is committed
        if offsets:
            self.consumer.commit(offsets)
        self._count(sum(len(r) for r in polled.values()), batch.released, len(batch), len(decided.events), batch.gaps)
        elapsed = time.perf_counter() - start
        self.metrics.batch_seconds.observe(elapsed)
        self.stats.busy_s += elapsed

    def _late_reason(self, kind: str, r: Reading) -> str:
        what = "event time already seen" if kind == "duplicate" else "older than the asset's window allows"
        return f"asset {r.asset_id} ts={r.ts_ms} {what}"

    def _dead_letter(self, reason: str, rec: ConsumerRecord):
        self.stats.rejected += 1
        self.metrics.rejected.labels(kind=reason.split(":", 1)[0][:40]).inc()
        headers = [
            ("reason", reason.encode()),
            ("source.topic", rec.topic.encode()),
            ("source.partition", str(rec.partition).encode()),
            ("source.offset", str(rec.offset).encode()),
        ]
        return self.producer.send(self.settings.dlq_topic, key=rec.key, value=rec.value or b"", headers=headers)

    def _publish(self, event: AnomalyEvent):
        log.info("anomaly asset=%s start=%s score=%.3f model=%s", event.asset_id, event.window_start, event.score, event.model_version)
        return self.producer.send(self.settings.anomalies_topic, key=event.asset_id.encode(), value=encode_event(event))

    def _count(self, records: int, scored: int, windows: int, anomalies: int, gaps: int) -> None:
        s, m = self.stats, self.metrics
        s.records += records
        s.scored += scored
        s.windows += windows
        s.anomalies += anomalies
        s.batches += 1
        m.records.inc(records)
        m.scored.inc(scored)
        m.windows.inc(windows)
        m.anomalies.inc(anomalies)
        m.gaps.inc(gaps)

    def _maybe_reload(self) -> None:
        """Pick up a newly promoted champion between polls, without a restart."""
        every = self.settings.reload_interval_s
        if self.store is None or not every or time.monotonic() - self._checked_at < every:
            return
        self._checked_at = time.monotonic()
        version = alias_version(self.store, self.settings.model_alias)
        if version and version != self.processor.detector.version:
            detector = load_detector(self.store, self.settings.model_alias).warm_up()
            self.processor.swap_detector(detector)
            self.metrics.model_version.set(float(version) if version.isdigit() else 0)
            log.info("model reloaded version=%s", version)


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM/SIGINT set ``stop`` (the batch in hand finishes); a second Ctrl+C exits at once."""

    def handler(signum: int, _frame: object) -> None:
        log.info("stopping signal=%s", signal.Signals(signum).name)
        stop.set()
        signal.signal(signum, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
