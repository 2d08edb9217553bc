"""Alarms as their events tell them, on a stream of the champion's plant with injected faults
(``fault_stream``; the ``stream`` fixture in conftest): what the feedback tests tune and review.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from conftest import PLANT, TRAIN_READINGS

from sensorwatch.schemas.records import Reading

if TYPE_CHECKING:
    from sensorwatch.models.detector import Detector
    from sensorwatch.pipeline.dev.simulator import Fault
    from sensorwatch.pipeline.stream.processor import Decisions


@dataclass
class Alarm:
    """One alarm as its events tell it, with the stretch of window ends it covered."""

    asset: str
    event_id: str
    start_ms: int  # its event's window_start: the first reading of its first window
    end_ms: (
        int  # the end of the window it cleared at (of the last window seen, if it never cleared)
    )
    first_end: int  # the end (last reading) of its first window
    margin: float  # the last event's: the opened one says the margin so far, the cleared one the alarm's
    opened_margin: float
    cleared: bool


def decide(
    detector: Detector, readings: list[Reading], scale: float | None = None
) -> list[Decisions]:
    """``readings`` through a fresh processor (at threshold ``scale``), as a file is scored."""
    from sensorwatch.pipeline.stream.processor import Processor

    processor = Processor(detector, None if scale is None else {"threshold_scale": scale})
    return [processor.process(readings), processor.flush()]


def alarms_of(decisions: list[Decisions], detector: Detector) -> list[Alarm]:
    """The alarms that opened, in order, each with its clearing (if any) folded in."""
    span_ms = (detector.spec.window - 1) * detector.spec.interval_ms
    last_end: dict[str, int] = {}
    found: dict[str, Alarm] = {}
    for d in decisions:
        for asset, end in zip(d.windows.asset_ids, d.windows.end_ms):
            last_end[asset] = int(end)
        for e in d.events:
            if e.kind == "opened":
                found[e.event_id] = Alarm(
                    e.asset_id,
                    e.event_id,
                    e.start_ms,
                    e.end_ms,
                    e.start_ms + span_ms,
                    e.margin,
                    e.margin,
                    False,
                )
            else:
                a = found[e.event_id]
                a.end_ms, a.margin, a.cleared = e.end_ms, e.margin, True
    for a in found.values():
        if not a.cleared:
            a.end_ms = last_end[a.asset]
    return list(found.values())


def same(a: Alarm, b: Alarm) -> bool:
    """Whether two alarms (of runs at different scales) are one: same asset, overlapping stretches of
    window *ends*. Windows are 30 readings long, so an alarm that opens just after another clears
    starts (by its first reading) inside the other's last window: comparing readings would pair
    neighbours; comparing the windows each alarm decided on does not."""
    return a.asset == b.asset and a.first_end <= b.end_ms and b.first_end <= a.end_ms


def window_ratios(decisions: list[Decisions], asset: str) -> tuple[np.ndarray, np.ndarray]:
    """End times and score/threshold ratios of ``asset``'s windows, in order."""
    ends, ratios = [], []
    for d in decisions:
        mine = np.array([a == asset for a in d.windows.asset_ids], bool)
        if mine.any():
            ends.append(d.windows.end_ms[mine])
            ratios.append(d.scores[mine] / d.levels[mine])
    return np.concatenate(ends).astype(np.int64), np.concatenate(ratios)


def strongest_run(decisions: list[Decisions], alarm: Alarm, need: int) -> tuple[float, np.ndarray]:
    """The alarm's strongest run of ``need`` windows in a row (the weakest of them over the
    threshold, and their end times), worked out from the window scores alone."""
    ends, ratios = window_ratios(decisions, alarm.asset)
    inside = (ends >= alarm.first_end) & (ends <= alarm.end_ms)
    ends, ratios = ends[inside], ratios[inside]
    runs = np.lib.stride_tricks.sliding_window_view(ratios, need).min(axis=1)
    best = int(np.argmax(runs))
    return float(runs[best]), ends[best : best + need]


def overlaps_fault(alarm: Alarm, faults: list[Fault]) -> bool:
    return any(
        f.asset_id == alarm.asset and f.start_ms <= alarm.end_ms and f.end_ms > alarm.start_ms
        for f in faults
    )


def split_by_margin(
    alarms: list[Alarm], bounds: tuple[float, float]
) -> tuple[list[Alarm], list[Alarm]]:
    """(false positives, confirmed): the alarms below and above the widest gap between margins
    that a scale within ``bounds`` can fall into, as a reviewer who finds the weak ones spurious."""
    ranked = sorted(alarms, key=lambda a: a.margin)
    cuts = [
        i
        for i in range(1, len(ranked))
        if ranked[i - 1].margin * 1.01 < min(ranked[i].margin, bounds[1])
    ]
    assert cuts, f"no margin gap to tune into: {[a.margin for a in ranked]}"
    i = max(cuts, key=lambda i: ranked[i].margin / ranked[i - 1].margin)
    return ranked[:i], ranked[i:]


@dataclass
class Stream:
    detector: Detector
    readings: list[Reading]
    faults: list[Fault]
    decisions: list[Decisions]  # at scale 1
    alarms: list[Alarm]


def fault_stream(champion) -> Stream:
    """The champion's plant after its training data with injected faults, decided at scale 1
    through the service's path; every alarm clears."""
    from sensorwatch.models.registry import load_detector
    from sensorwatch.pipeline.dev.simulator import Simulator, readings

    detector = load_detector(champion.store, "champion")
    sim = Simulator(**PLANT)
    sim.normal(TRAIN_READINGS)
    frame, faults = sim.with_faults(2400, faults_per_asset=3)
    # Normal readings after the last fault, so every alarm clears and its margin is its whole run's.
    frame = pd.concat([frame, sim.normal(200)], ignore_index=True)
    rows = list(readings(frame))
    decisions = decide(detector, rows)
    alarms = alarms_of(decisions, detector)
    assert len(alarms) >= 4 and all(a.cleared for a in alarms), alarms
    return Stream(detector, rows, faults, decisions, alarms)
