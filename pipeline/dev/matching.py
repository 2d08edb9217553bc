"""The demo's alarms against the faults the simulator injected: which faults an alarm found, and
which alarms were false (event-level scoring, for the demo's summary and the benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sensorwatch.models.faults import Fault
from sensorwatch.schemas.records import AnomalyEvent


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


@dataclass
class Match:
    """Event-level scoring: which faults were flagged, which events were false alarms."""

    detected: set[int]
    false_alarms: list[AnomalyEvent]

    @classmethod
    def of(cls, events: list[AnomalyEvent], faults: list[Fault], tolerance_ms: int) -> Match:
        detected: set[int] = set()
        false_alarms = []
        for e in events:
            hit = fault_of(e, faults, tolerance_ms)
            if hit is None:
                false_alarms.append(e)
            else:
                detected.add(hit)
        return cls(detected, false_alarms)


def fault_of(e: AnomalyEvent, faults: list[Fault], tolerance_ms: int) -> int | None:
    """The fault an event overlaps; a window still holding fault readings counts (tolerance)."""
    start, end = _ms(e.window_start), _ms(e.window_end)
    for j, f in enumerate(faults):
        if f.asset_id == e.asset_id and start <= f.end_ms + tolerance_ms and end >= f.start_ms:
            return j
    return None
