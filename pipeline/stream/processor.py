"""The shared scoring path: readings → windows → one forward pass → thresholds → alarm rules.

The streaming service and ``sensorwatch detect`` both run readings through ``Processor``, so a
file scored offline is decided exactly as the same readings would be on Kafka. The processor
decides with the recipe of the model version it runs (stride, alarm rules, cadence rules), with
only the decision fields passed as ``decisions`` changed on top.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sensorwatch.models.recipe import Recipe
from sensorwatch.pipeline.stream.batch import WindowBatch
from sensorwatch.pipeline.stream.tracks import AssetTrack
from sensorwatch.pipeline.stream.windows import Windower
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
    errors: np.ndarray | None = None  # per-channel errors of each window (n, C)


class Processor:
    """Turns batches of validated readings into decisions and anomaly events."""

    def __init__(self, detector: Detector, decisions: dict[str, Any] | None = None) -> None:
        self.decisions = dict(decisions or {})
        self.detector = detector
        self.recipe = self._recipe_of(detector)
        self.rules = self.recipe.alarm_rules()
        self.windower = self._windower(detector, self.recipe)
        self._tracks: dict[str, AssetTrack] = {}
        # Per asset, the next source offset of each partition its readings came from that is not
        # in its state yet: a replay after a restart skips what the restored state already holds.
        self.applied: dict[str, dict[tuple[str, int], int]] = {}

    def _recipe_of(self, detector: Detector) -> Recipe:
        model_fields = Recipe.split(self.decisions)[1]
        if model_fields:
            raise ValueError(
                f"a trained model's {', '.join(sorted(model_fields))} cannot change without training again"
            )
        return detector.spec.recipe.updated(**self.decisions)

    @staticmethod
    def _windower(detector: Detector, recipe: Recipe) -> Windower:
        cadence = recipe.cadence(detector.spec.interval_ms)
        return Windower(
            detector.spec.channels,
            recipe.window,
            recipe.stride,
            cadence.grace_ms,
            cadence.max_gap_ms,
        )

    @property
    def channels(self) -> frozenset[str]:
        """The channels every reading must carry: those of the model version in use."""
        return frozenset(self.windower.channels)

    def process(self, readings: Iterable[Reading], now: float = 0.0) -> Decisions:
        """Window, score and decide readings that arrive at clock time ``now``."""
        batch = self.window(readings, now)
        return self.decide(batch, self.score(batch))

    def window(self, readings: Iterable[Reading], now: float = 0.0) -> WindowBatch:
        """Put readings that arrive at clock time ``now`` into their windows; the ready windows."""
        return self.windower.add(readings, now)

    def score(self, batch: WindowBatch) -> tuple[np.ndarray, ...]:
        """Scores and per-channel errors of the batch's windows (one forward pass), and their change
        when the model has one and the alarm rules ask for it, touching no state (the service runs
        it on a worker thread while it fetches the next poll)."""
        scores, errors = self.detector.score(batch.windows)
        change = (
            self.detector.change(batch.windows)
            if len(batch) and self.rules.change_factor > 0
            else None
        )
        return (scores, errors) if change is None else (scores, errors, change)

    def flush(self, quiet_since: float | None = None) -> Decisions:
        """Score what the windower still holds back: everything (end of a file, shutdown), or that of
        assets quiet since clock time ``quiet_since`` (a quiet asset's last readings wait no longer)."""
        batch = self.windower.flush(quiet_since)
        return self.decide(batch, self.score(batch))

    def forget(self, asset_ids: Iterable[str]) -> None:
        asset_ids = list(asset_ids)
        self.windower.forget(asset_ids)
        for a in asset_ids:
            self._tracks.pop(a, None)
            self.applied.pop(a, None)

    def export_state(self, asset_id: str) -> dict[str, Any]:
        """Everything the asset's future decisions depend on, as plain values and arrays."""
        track = self._tracks.get(asset_id)
        applied = self.applied.get(asset_id, {})
        return {
            "model_version": self.detector.version,
            "applied": [
                [topic, partition, offset] for (topic, partition), offset in applied.items()
            ],
            "window": self.windower.export(asset_id),
            "track": track.export() if track is not None else None,
        }

    def load_state(self, asset_id: str, saved: dict[str, Any]) -> None:
        """Put an asset back as ``export_state`` left it. Window buffers of another window length or
        channel set, and thresholds and alarms of another model version, start afresh (as on a swap)."""
        self.applied[asset_id] = {(t, p): o for t, p, o in saved["applied"]}
        window = saved["window"]
        if window is not None and window["ring"].shape == (
            2 * self.windower.window,
            len(self.windower.channels),
        ):
            self.windower.load(asset_id, window)
        if saved["track"] is not None and saved["model_version"] == self.detector.version:
            self._tracks[asset_id] = AssetTrack.load(saved["track"], self.rules)

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
                detector.version,
                self.detector.version,
            )
            windower.keep_released = self.windower.keep_released
            self.windower = windower
        self.detector, self.recipe, self.rules = detector, recipe, recipe.alarm_rules()
        self._tracks.clear()

    def rescale(self, detector: Detector) -> None:
        """Decide with the same model under a new threshold scale (``detector`` differs from the one
        in hand by its recipe's ``threshold_scale`` alone): thresholds and open alarms carry on.
        A scale set in the settings stays: it was set on purpose for this service."""
        self.detector = detector
        self.recipe = self._recipe_of(detector)

    def _track(self, asset_id: str) -> AssetTrack:
        track = self._tracks.get(asset_id)
        if track is None:
            track = self._tracks[asset_id] = AssetTrack(
                self.detector.new_threshold(), self.rules.new_state()
            )
        return track

    def decide(self, batch: WindowBatch, scored: tuple[np.ndarray, ...]) -> Decisions:
        """Thresholds and alarm rules over a batch's windows and their ``score``s (scores, errors
        and, when the model has them, changes), in order."""
        n = len(batch)
        scores, errors = scored[0], scored[1]
        change = scored[2] if len(scored) > 2 else None
        levels = np.empty(n)
        anomalous = np.zeros(n, bool)
        alarm = np.zeros(n, bool)
        out = Decisions(batch, scores, levels, anomalous, alarm, errors=errors)
        # Windows of one asset are in event-time order within the batch, so stateful thresholds
        # and alarms see each asset's scores as a stream. The threshold scale divides the score
        # rather than multiplying each method's level: the same for every method, adaptive ones too.
        scale = self.recipe.threshold_scale
        for i, asset_id in enumerate(batch.asset_ids):
            track = self._track(asset_id)
            level = track.threshold.level()
            levels[i] = level * scale
            anomalous[i] = track.threshold.update(float(scores[i]) / scale)
            alarm[i] = track.alarm.step(
                bool(anomalous[i]),
                track.threshold.last,
                math.inf if change is None else float(change[i]),
            )
            end_ms = int(batch.end_ms[i])
            if track.alarm.closed:
                out.events.append(self._event(asset_id, track, end_ms, levels[i], "cleared"))
            # The window's smoothed score over the unscaled threshold: the threshold scale below which
            # this window is anomalous, whatever scale is in force now (it may change mid-alarm).
            ratio = track.threshold.last * scale / level if level > 0 else _BIG
            track.follow(
                int(batch.start_ms[i]),
                float(scores[i]),
                errors[i],
                bool(anomalous[i]),
                _finite(ratio),
            )
            if track.alarm.opened:
                track.alarm_start = track.run_start if track.run_start is not None else end_ms
                out.events.append(self._event(asset_id, track, end_ms, levels[i], "opened"))
        return out

    def _event(
        self, asset_id: str, track: AssetTrack, end_ms: int, level: float, kind: str
    ) -> AnomalyEvent:
        """The alarm's event; its numbers are finite whatever the scores were (an overflowing score
        is still the worst a float can say, not a reason to fail)."""
        n = len(self.detector.spec.channels)
        errs = np.nan_to_num(
            track.peak_errors if track.peak_errors is not None else np.zeros(n), posinf=_BIG
        )
        share = errs / max(float(errs.sum()), 1e-12) if np.isfinite(errs.sum()) else errs / _BIG / n
        start = track.alarm_start if track.alarm_start is not None else end_ms
        return AnomalyEvent(
            asset_id=asset_id,
            window_start=iso_ms(start),
            window_end=iso_ms(end_ms),
            score=round(_finite(track.peak), 6),
            threshold=round(_finite(level), 6),
            contributions={
                c: round(float(v), 4) for c, v in zip(self.detector.spec.channels, share)
            },
            model_version=self.detector.version,
            windows=track.hits,
            kind=kind,
            margin=round(_finite(track.strength), 6),
        )


_BIG = float(np.finfo(np.float32).max)


def _finite(value: float) -> float:
    """``value`` as a float with NaN as 0 and infinities as float32's extremes (once per window: plain
    Python, a numpy call here costs more than the rest of the decision)."""
    value = float(value)
    if math.isfinite(value):
        return value
    return 0.0 if value != value else (_BIG if value > 0 else -_BIG)
