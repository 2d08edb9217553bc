"""Causal detection on one CSV file, through the same path the streaming service scores with.

The first ``train_rows`` rows train a detector (scaler, model, error scale, threshold). The rest
is then fed as readings of one asset through ``Processor`` — windows, one compiled forward pass
per batch, the threshold stream and the alarm rules — exactly as it would arrive on Kafka, so a
row's decision only ever uses rows up to it. Rows whose window is not complete yet (right after
a gap that reset the buffer) keep the asset's alarm state from before them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.alarms import AlarmRules
from models.detector import Detector
from models.thresholds import make_threshold
from models.training import TrainConfig, TrainedDetector, fit_detector
from pipeline.csvsource import SensorFrame, SourceError, read_sensor_csv
from pipeline.processor import Processor
from pipeline.settings import Settings
from pipeline.train import config_of, rules_of
from pipeline.windows import Windower
from schemas.records import Reading

ASSET = "file"
# Readings handed to the processor at a time: what one poll of the service would bring.
POLL = 2000


@dataclass(frozen=True)
class DetectConfig:
    """Everything that decides how a file is scored: training, threshold, alarm rules, gaps."""

    train: TrainConfig = field(default_factory=TrainConfig)
    rules: AlarmRules = field(default_factory=AlarmRules)
    max_gap_ms: int | None = 60_000

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> DetectConfig:
        """The configuration the settings describe; ``overrides`` name ``TrainConfig`` or
        ``AlarmRules`` fields (``threshold_params`` included) or ``max_gap_ms``."""
        return cls(config_of(settings, progress=False), rules_of(settings), int(settings.max_gap_s * 1000)).with_(**overrides)

    def with_(self, **overrides: Any) -> DetectConfig:
        """A copy with some fields of the training config, the alarm rules or the gap changed."""
        train_keys = TrainConfig.__dataclass_fields__.keys()
        rule_keys = AlarmRules.__dataclass_fields__.keys()
        unknown = set(overrides) - set(train_keys) - set(rule_keys) - {"max_gap_ms"}
        if unknown:
            raise TypeError(f"unknown detect settings: {', '.join(sorted(unknown))}")
        return DetectConfig(
            replace(self.train, **{k: v for k, v in overrides.items() if k in train_keys}),
            replace(self.rules, **{k: v for k, v in overrides.items() if k in rule_keys}),
            overrides.get("max_gap_ms", self.max_gap_ms),
        )


def _readings(frame: SensorFrame, start: int) -> Iterator[list[Reading]]:
    names = frame.channels
    for lo in range(start, len(frame), POLL):
        rows = frame.values[lo : lo + POLL].tolist()
        yield [Reading(ASSET, int(t), dict(zip(names, r))) for t, r in zip(frame.ts_ms[lo : lo + POLL].tolist(), rows)]


def train_on(frame: SensorFrame, train_rows: int, config: DetectConfig) -> TrainedDetector:
    """Train a detector on the first ``train_rows`` rows of a file."""
    if not 0 < train_rows < len(frame):
        raise SourceError(f"{frame.path}: --train-rows must be between 1 and {len(frame) - 1} (the file has {len(frame)} rows)")
    if train_rows < config.train.window:
        raise SourceError(f"{frame.path}: {train_rows} training rows are fewer than one window of {config.train.window}")
    return fit_detector([frame.values[:train_rows]], frame.channels, config.train)


def with_threshold(trained: TrainedDetector, method: str, params: dict[str, Any]) -> Detector:
    """The trained model with another threshold method, fitted on the same calibration scores."""
    if trained.calibration_scores is None:
        raise ValueError("the trained detector kept no calibration scores")
    threshold = make_threshold(method, **params).fit(trained.calibration_scores)
    return Detector(trained.model, replace(trained.spec, threshold=threshold.to_dict()))


def decide(frame: SensorFrame, train_rows: int, detector: Detector, config: DetectConfig) -> pd.DataFrame:
    """Feed the rows after ``train_rows`` through the service's path: ``datetime, score, anomaly``."""
    window = detector.spec.window
    windower = Windower(frame.channels, window, config.train.stride, grace_ms=0, max_gap_ms=config.max_gap_ms)
    processor = Processor(detector, windower, config.rules)
    # The last window-1 training rows are history only: the first test row gets a full window.
    start = max(train_rows - (window - 1), 0)
    decisions = [processor.process(batch) for batch in _readings(frame, start)] + [processor.flush()]
    return _rows(
        frame,
        train_rows,
        np.concatenate([d.windows.end_ms for d in decisions]),
        np.concatenate([d.scores for d in decisions]),
        np.concatenate([d.alarm for d in decisions]),
    )


def detect_frame(frame: SensorFrame, train_rows: int, config: DetectConfig) -> pd.DataFrame:
    """Train on the first ``train_rows`` rows and decide every later row: ``datetime, score, anomaly``."""
    trained = train_on(frame, train_rows, config)
    return decide(frame, train_rows, Detector(trained.model, trained.spec), config)


def _rows(frame: SensorFrame, train_rows: int, end_ms: np.ndarray, scores: np.ndarray, alarm: np.ndarray) -> pd.DataFrame:
    """One output row per test row: the score of the window ending at it, the alarm state after it."""
    ts = frame.ts_ms[train_rows:]
    pos = np.searchsorted(end_ms, ts)
    has = (pos < len(end_ms)) & (end_ms[np.minimum(pos, len(end_ms) - 1)] == ts)
    score = np.full(len(ts), np.nan)
    score[has] = scores[pos[has]]
    # A row without a window of its own keeps the state the last window left.
    last = np.searchsorted(end_ms, ts, side="right") - 1
    state = np.where(last >= 0, alarm[np.maximum(last, 0)], False)
    times = pd.to_datetime(ts, unit="ms")
    whole_seconds = bool((ts % 1000 == 0).all())
    return pd.DataFrame(
        {
            "datetime": times.strftime("%Y-%m-%d %H:%M:%S") if whole_seconds else times.strftime("%Y-%m-%d %H:%M:%S.%f").str[:-3],
            "score": score,
            "anomaly": state.astype(np.int8),
        }
    )


def detect_file(path: str | Path, train_rows: int, config: DetectConfig | Settings | None = None) -> pd.DataFrame:
    """Causally score one CSV file (SKAB format or plain CSV with a time column).

    Label columns are ignored. Returns one row per input row after the training part, with
    ``datetime``, ``score`` (the window score, NaN where no window ends at the row) and ``anomaly``
    (0/1). Without a config, the configuration chosen on SKAB's tuning half is used
    (``pipeline.skab.CHOSEN``); ``Settings`` give the settings' own recipe.
    """
    if config is None:
        from pipeline.skab import CHOSEN

        config = DetectConfig().with_(**{**CHOSEN, "reuse_model": False})
    elif isinstance(config, Settings):
        config = DetectConfig.from_settings(config)
    return detect_frame(read_sensor_csv(path), train_rows, config)
