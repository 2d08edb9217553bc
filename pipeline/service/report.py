"""What each step did, told three ways: running totals, Prometheus metrics, and warnings.

Warnings about one asset (a stream from which no window can form) are rate-limited per asset and
kind, so a thousand assets at the wrong cadence do not flood the log, while each is still named.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sensorwatch.pipeline.service.metrics import ServiceMetrics
from sensorwatch.pipeline.stream.batch import Windowless
from sensorwatch.pipeline.stream.step import StepOutput

log = logging.getLogger("sensorwatch.pipeline")


@dataclass
class Stats:
    """Totals of one service run."""

    records: int = 0
    scored: int = 0
    rejected: int = 0
    windows: int = 0
    anomalies: int = 0  # alarms opened
    windowless: int = 0
    batches: int = 0
    busy_s: float = 0.0
    scoring_s: float = 0.0  # in the forward pass (on its own thread, overlapping busy_s)


class RateLimiter:
    """``allow(key)`` is true at most once every ``every_s`` seconds per key.

    >>> clock = iter([0.0, 1.0, 61.0]).__next__
    >>> limit = RateLimiter(60.0, clock)
    >>> [limit.allow("p1"), limit.allow("p1"), limit.allow("p1")]
    [True, False, True]
    """

    def __init__(self, every_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s, self.clock = every_s, clock
        self._last: dict[object, float] = {}

    def allow(self, key: object) -> bool:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            return False
        self._last[key] = now
        return True


class Reporter:
    """Counts every step into ``stats`` and ``metrics`` and warns about assets that form no window."""

    def __init__(
        self, metrics: ServiceMetrics, gap_ms: Callable[[], int], every_s: float = 60.0
    ) -> None:
        self.stats, self.metrics = Stats(), metrics
        self.gap_ms = gap_ms  # the gap limit in force (it may change with the model version)
        self.limit = RateLimiter(every_s)

    def __call__(self, out: StepOutput, seconds: float) -> None:
        batch = out.decisions.windows
        s, m = self.stats, self.metrics
        s.records += out.polled
        s.scored += batch.released
        s.rejected += len(out.dead_letters)
        s.windows += len(batch)
        opened = sum(e.kind == "opened" for e in out.events)
        s.anomalies += opened
        s.windowless += len(batch.windowless)
        s.batches += 1
        s.busy_s += seconds
        m.records.inc(out.polled)
        m.scored.inc(batch.released)
        for dead in out.dead_letters:
            m.rejected.labels(kind=dead.kind).inc()
        m.windows.inc(len(batch))
        m.anomalies.inc(opened)
        m.gaps.inc(batch.gaps)
        m.windowless.inc(len(batch.windowless))
        m.batch_seconds.observe(seconds)
        for w in batch.windowless:
            self._windowless(w)

    def _windowless(self, w: Windowless) -> None:
        if self.limit.allow(("windowless", w.asset_id)):
            log.warning(
                "no window can form asset=%s readings=%d gap_s=%g max_gap_s=%g: its readings come further apart "
                "than the model's gap limit; retrain on data at this cadence or set SENSORWATCH_MAX_GAP_S",
                w.asset_id,
                w.readings,
                w.gap_ms / 1000,
                self.gap_ms() / 1000,
            )
