"""Frames of readings (one ``ts_ms`` + channels frame per asset, as the archive reads them back)
run through the service's own path, offline: what the gate scores each version with, on the
held-out day and on the stretches people reviewed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from sensorwatch.pipeline.stream.processor import Processor
from sensorwatch.schemas.records import Reading

if TYPE_CHECKING:  # loads Keras; the frames are only run through it
    import pandas as pd

    from sensorwatch.models.detector import Detector

Alarm = tuple[str, int, int]  # asset, start, end (epoch ms)


class Replayed(NamedTuple):
    """What a detector made of some frames."""

    readings: int
    windows: int
    ratios: list[float]  # each window's score over the threshold it was compared with
    opened: list[Alarm]  # the alarms that opened


def replay(detector: Detector, frames: dict[str, pd.DataFrame]) -> Replayed:
    """Each asset's frame through a fresh ``Processor`` of ``detector``, in time order, then
    flushed: the readings, windows, score/threshold ratios and opened alarms."""
    processor = Processor(detector)
    channels = detector.spec.channels
    readings = windows = 0
    ratios: list[float] = []
    opened: list[Alarm] = []
    for asset, frame in frames.items():
        values = frame[channels].to_numpy(np.float64)
        batch = [
            Reading(asset, int(t), dict(zip(channels, row)))
            for t, row in zip(frame["ts_ms"], values.tolist())
        ]
        readings += len(batch)
        for decisions in (processor.process(batch), processor.flush()):
            windows += len(decisions.windows)
            if len(decisions.windows):
                ratios.extend((decisions.scores / np.maximum(decisions.levels, 1e-12)).tolist())
            opened += [
                (e.asset_id, e.start_ms, e.end_ms) for e in decisions.events if e.kind == "opened"
            ]
    return Replayed(readings, windows, ratios, opened)


def overlaps(alarm: Alarm, asset: str, start_ms: int, end_ms: int) -> bool:
    """Whether ``alarm`` is on ``asset`` and shares a moment with ``[start_ms, end_ms]``.

    >>> overlaps(("p", 100, 200), "p", 200, 300), overlaps(("p", 100, 200), "q", 150, 160)
    (True, False)
    """
    a, s, e = alarm
    return a == asset and s <= end_ms and e >= start_ms
