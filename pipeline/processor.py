"""The shared scoring path: readings → windows → one forward pass → thresholds → alarm rules.

The streaming service and ``sensorwatch detect`` both run readings through ``Processor``, so a
file scored offline is decided exactly as the same readings would be on Kafka.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from models.detector import Detector
from models.thresholds import AlarmRules, AlarmState, Threshold
from pipeline.windows import WindowBatch, Windower
from schemas.records import AnomalyEvent, Reading, iso_ms


@dataclass
class Decisions:
    """What one batch of readings became: per-window scores and decisions, and new alarms."""

    windows: WindowBatch
    scores: np.ndarray
    levels: np.ndarray  # the threshold each score was compared with
    anomalous: np.ndarray  # window-level decision
    alarm: np.ndarray  # whether the asset's alarm is active after that window
    events: list[AnomalyEvent] = field(default_factory=list)


class _AssetTrack:
    """One asset's threshold stream, alarm state, and the run of anomalous windows so far."""

    __slots__ = ("threshold", "alarm", "run_start", "hits", "peak", "peak_errors")

    def __init__(self, threshold: Threshold, alarm: AlarmState) -> None:
        self.threshold, self.alarm = threshold, alarm
        self.run_start: int | None = None
        self.hits = 0  # anomalous windows in the current run
        self.peak = -np.inf
        self.peak_errors: np.ndarray | None = None


class Processor:
    """Turns batches of validated readings into decisions and anomaly events."""

    def __init__(self, detector: Detector, windower: Windower, rules: AlarmRules) -> None:
        if windower.channels != detector.spec.channels or windower.window != detector.spec.window:
            raise ValueError("the windower's channels and window must be the model's")
        self.detector, self.windower, self.rules = detector, windower, rules
        self._tracks: dict[str, _AssetTrack] = {}

    def process(self, readings: Iterable[Reading]) -> Decisions:
        return self._decide(self.windower.add(readings))

    def flush(self) -> Decisions:
        """Score what the windower still holds back (end of a file, or shutdown)."""
        return self._decide(self.windower.flush())

    def forget(self, asset_ids: Iterable[str]) -> None:
        asset_ids = list(asset_ids)
        self.windower.forget(asset_ids)
        for a in asset_ids:
            self._tracks.pop(a, None)

    def swap_detector(self, detector: Detector) -> None:
        """Use a new model version from the next batch on; thresholds restart with its own."""
        if detector.spec.channels != self.detector.spec.channels or detector.spec.window != self.detector.spec.window:
            raise ValueError("a new model must keep the channels and window of the running one")
        self.detector = detector
        self._tracks.clear()

    def _track(self, asset_id: str) -> _AssetTrack:
        track = self._tracks.get(asset_id)
        if track is None:
            track = self._tracks[asset_id] = _AssetTrack(self.detector.new_threshold(), self.rules.new_state())
        return track

    def _decide(self, batch: WindowBatch) -> Decisions:
        n = len(batch)
        scores, errors = self.detector.score(batch.windows)
        levels = np.empty(n)
        anomalous = np.zeros(n, bool)
        alarm = np.zeros(n, bool)
        out = Decisions(batch, scores, levels, anomalous, alarm)
        # Windows of one asset are in event-time order within the batch, so stateful thresholds
        # and alarms see each asset's scores as a stream.
        for i, asset_id in enumerate(batch.asset_ids):
            track = self._track(asset_id)
            levels[i] = track.threshold.level()
            anomalous[i] = track.threshold.update(float(scores[i]))
            alarm[i] = track.alarm.step(bool(anomalous[i]), track.threshold.last)
            self._follow_run(track, batch, i, float(scores[i]), errors[i], bool(anomalous[i]))
            if track.alarm.opened:
                out.events.append(self._event(asset_id, track, int(batch.end_ms[i]), levels[i]))
        return out

    @staticmethod
    def _follow_run(track: _AssetTrack, batch: WindowBatch, i: int, score: float, errors: np.ndarray, hit: bool) -> None:
        if not hit and not track.alarm.active:
            track.run_start, track.hits, track.peak, track.peak_errors = None, 0, -np.inf, None
            return
        track.hits += hit
        if track.run_start is None:
            track.run_start = int(batch.start_ms[i])
        if score > track.peak:
            track.peak, track.peak_errors = score, errors

    def _event(self, asset_id: str, track: _AssetTrack, end_ms: int, level: float) -> AnomalyEvent:
        errs = track.peak_errors if track.peak_errors is not None else np.zeros(len(self.detector.spec.channels))
        share = errs / max(float(errs.sum()), 1e-12)
        return AnomalyEvent(
            asset_id=asset_id,
            window_start=iso_ms(track.run_start if track.run_start is not None else end_ms),
            window_end=iso_ms(end_ms),
            score=round(float(track.peak), 6),
            threshold=round(float(level), 6),
            contributions={c: round(float(s), 4) for c, s in zip(self.detector.spec.channels, share)},
            model_version=self.detector.version,
            windows=track.hits,
        )
