"""The shared scoring path: readings → windows → one forward pass → thresholds → alarm rules.

The streaming service and ``sensorwatch detect`` both run readings through ``Processor``, so a
file scored offline is decided exactly as the same readings would be on Kafka. The processor
decides with the recipe of the model version it runs (stride, alarm rules, cadence rules), with
only the decision fields passed as ``decisions`` changed on top.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sensorwatch.models.alarms import AlarmState
from sensorwatch.models.recipe import Recipe
from sensorwatch.models.thresholds import Threshold
from sensorwatch.pipeline.stream.windows import WindowBatch, Windower
from sensorwatch.schemas.records import AnomalyEvent, Reading, iso_ms

if TYPE_CHECKING:  # loads Keras; the processor only calls it
    from sensorwatch.models.detector import Detector

log = logging.getLogger("sensorwatch.pipeline")


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

    def __init__(self, detector: Detector, decisions: dict[str, Any] | None = None) -> None:
        self.decisions = dict(decisions or {})
        self.detector = detector
        self.recipe = self._recipe_of(detector)
        self.rules = self.recipe.alarm_rules()
        self.windower = self._windower(detector, self.recipe)
        self._tracks: dict[str, _AssetTrack] = {}

    def _recipe_of(self, detector: Detector) -> Recipe:
        model_fields = Recipe.split(self.decisions)[1]
        if model_fields:
            raise ValueError(f"a trained model's {', '.join(sorted(model_fields))} cannot change without training again")
        return detector.spec.recipe.updated(**self.decisions)

    @staticmethod
    def _windower(detector: Detector, recipe: Recipe) -> Windower:
        cadence = recipe.cadence(detector.spec.interval_ms)
        return Windower(detector.spec.channels, recipe.window, recipe.stride, cadence.grace_ms, cadence.max_gap_ms)

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
        """Decide with a new model version from the next batch on, by its own recipe.

        Thresholds and alarms restart with the new version. Window buffers carry over when the
        channels and window length stay; otherwise every asset starts a new window.
        """
        recipe = self._recipe_of(detector)
        windower = self._windower(detector, recipe)
        if windower.channels == self.windower.channels and windower.window == self.windower.window:
            self.windower.retune(windower.stride, windower.grace_ms, windower.max_gap_ms)
        else:
            log.warning(
                "model version %s has other channels or window than version %s: window buffers restart",
                detector.version, self.detector.version,
            )
            self.windower = windower
        self.detector, self.recipe, self.rules = detector, recipe, recipe.alarm_rules()
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
