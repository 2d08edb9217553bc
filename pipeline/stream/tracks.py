"""One asset's decision state: its threshold stream, its alarm, and the run of windows the alarm covers."""

from __future__ import annotations

from typing import Any

import numpy as np

from sensorwatch.models.alarms import AlarmRules, AlarmState
from sensorwatch.models.thresholds import Threshold, threshold_from_dict


class AssetTrack:
    """What an asset's decisions depend on besides its window buffers."""

    __slots__ = (
        "threshold",
        "alarm",
        "run_start",
        "hits",
        "peak",
        "peak_errors",
        "alarm_start",
        "recent",
        "strength",
    )

    def __init__(self, threshold: Threshold, alarm: AlarmState) -> None:
        self.threshold, self.alarm = threshold, alarm
        self.run_start: int | None = None  # start of the first window of the current run
        self.hits = 0  # anomalous windows in the current run
        self.peak = -np.inf
        self.peak_errors: np.ndarray | None = None
        self.alarm_start: int | None = None  # the open alarm's start: part of its event id
        # Smoothed score over the unscaled threshold of the latest anomalous windows in a row (at
        # most min_windows of them), and the best such run's weakest window: the alarm would still
        # open at any threshold scale below it (its margin; see ``Processor``).
        self.recent: list[float] = []
        self.strength = 0.0

    def follow(
        self, start_ms: int, score: float, errors: np.ndarray, hit: bool, ratio: float = 0.0
    ) -> None:
        """Extend (or end) the current run with one window's decision and its score/threshold ratio."""
        if not hit:
            self.recent.clear()
        if not hit and not self.alarm.active:
            self.run_start, self.hits, self.peak, self.peak_errors, self.strength = (
                None,
                0,
                -np.inf,
                None,
                0.0,
            )
            return
        if hit:
            need = self.alarm.rules.min_windows
            self.recent.append(ratio)
            if len(self.recent) > need:
                del self.recent[0]
            if len(self.recent) == need:
                self.strength = max(self.strength, min(self.recent))
        self.hits += hit
        if self.run_start is None:
            self.run_start = start_ms
        if score > self.peak:
            self.peak, self.peak_errors = (
                score,
                np.array(errors),
            )  # a copy: not a view that holds the whole batch

    def export(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold.export(),
            "alarm": self.alarm.export(),
            "run_start": self.run_start,
            "hits": self.hits,
            "peak": self.peak,
            "peak_errors": self.peak_errors,
            "alarm_start": self.alarm_start,
            "recent": list(self.recent),
            "strength": self.strength,
        }

    @classmethod
    def load(cls, saved: dict[str, Any], rules: AlarmRules) -> AssetTrack:
        threshold = threshold_from_dict(saved["threshold"]["params"])
        for name, value in saved["threshold"]["vars"].items():
            setattr(threshold, name, value)
        track = cls(threshold, rules.new_state().load(saved["alarm"]))
        track.run_start, track.hits, track.peak = saved["run_start"], saved["hits"], saved["peak"]
        track.peak_errors, track.alarm_start = saved["peak_errors"], saved["alarm_start"]
        track.recent, track.strength = (
            list(saved.get("recent", ())),
            float(saved.get("strength", 0.0)),
        )
        return track
