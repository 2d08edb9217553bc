"""What ``latency.py`` reports: each opened event's latency, split into the grace wait, the service
and delivery, matched to the injected faults; and percentiles of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Timings:
    """Seconds per opened event (all, and those on injected faults) and their parts."""

    opened: list[tuple[float, Any]]
    match: Any
    latency: list[float] = field(default_factory=list)
    latency_faults: list[float] = field(default_factory=list)
    grace_wait: list[float] = field(default_factory=list)
    in_service: list[float] = field(default_factory=list)
    delivery: list[float] = field(default_factory=list)
    delay_readings: list[int] = field(default_factory=list)
    timed: list[tuple[float, float]] = field(default_factory=list)  # (reading produced, latency)
    unmatched: int = 0


def timings(received, produced: dict, faults, spec, grace_ms: int) -> Timings:
    """The opened events among ``received`` ((receipt time, raw event)) against when each reading
    was ``produced`` ((asset, event time) -> send time) and the injected ``faults``."""
    from sensorwatch.pipeline.dev.matching import Match
    from sensorwatch.schemas.events import decode_event
    from sensorwatch.schemas.records import ms_of

    opened = [(at, decode_event(raw)) for at, raw in received]
    opened = [(at, e) for at, e in opened if e.kind == "opened"]
    tolerance = spec.window * spec.interval_ms
    match = Match.of([e for _, e in opened], faults, tolerance)
    false_ids = {e.event_id for e in match.false_alarms}
    t = Timings(opened, match)
    for at, e in opened:
        end = e.end_ms
        t0 = produced.get((e.asset_id, end))
        if t0 is None:
            t.unmatched += 1
            continue
        t.latency.append(at - t0)
        t.timed.append((t0, at - t0))
        if e.event_id not in false_ids:
            t.latency_faults.append(at - t0)
        detected = ms_of(e.detected_at) / 1000
        t.delivery.append(at - detected)
        released = produced.get((e.asset_id, end + grace_ms))
        if released is not None:  # else the window was released by the quiet-asset check
            t.grace_wait.append(released - t0)
            t.in_service.append(detected - released)
    for f in faults:
        ends = [
            e.end_ms
            for _, e in opened
            if e.asset_id == f.asset_id and f.start_ms <= e.end_ms <= f.end_ms + tolerance
        ]
        if ends:
            t.delay_readings.append((min(ends) - f.start_ms) // spec.interval_ms)
    return t


def by_third(pairs: list[tuple[float, float]], start: float, end: float) -> list[dict]:
    """``figures`` of the latencies whose reading was produced in each third of [start, end]."""
    thirds: list[list[float]] = [[], [], []]
    for t0, value in pairs:
        thirds[min(2, max(0, int(3 * (t0 - start) / max(end - start, 1e-9))))].append(value)
    return [figures(values) for values in thirds]


def figures(values_s: list[float]) -> dict[str, float | int]:
    """Count and percentiles of durations given in seconds, in milliseconds."""
    if not values_s:
        return {"count": 0}
    ms = np.asarray(values_s) * 1000
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "count": len(ms),
        "p50": round(p50, 1),
        "p90": round(p90, 1),
        "p99": round(p99, 1),
        "max": round(float(ms.max()), 1),
    }
