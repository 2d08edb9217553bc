"""The training job: normal data from the simulator or CSV files → trained detector → MLflow."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.alarms import AlarmRules
from models.registry import RegisteredVersion, Store, log_training
from models.training import TrainConfig, TrainedDetector, fit_detector
from pipeline.csvsource import SourceError, read_sensor_csv
from pipeline.settings import Settings


def store_of(settings: Settings) -> Store:
    return Store(settings.tracking_uri, settings.model_name, settings.experiment, settings.artifact_root)


def config_of(settings: Settings, progress: bool = True) -> TrainConfig:
    return TrainConfig(
        window=settings.window,
        stride=settings.train_stride,
        units=settings.units,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        threshold=settings.threshold_method,
        threshold_params=dict(settings.threshold_params),
        score=settings.score,
        mixed_precision=settings.mixed_precision,
        seed=settings.seed,
        progress=progress,
    )


def rules_of(settings: Settings) -> AlarmRules:
    """The alarm rules the settings describe."""
    return AlarmRules(
        min_windows=settings.min_windows,
        merge_windows=settings.merge_windows,
        suppress_windows=settings.suppress_windows,
        clear_ratio=settings.clear_ratio,
        rearm_ratio=settings.rearm_ratio,
    )


def simulator_series(settings: Settings, assets: int, readings: int) -> tuple[list[np.ndarray], list[str]]:
    """Normal readings of each simulated asset, one series per asset."""
    from pipeline.simulator import CHANNELS, Simulator, series_by_asset

    return series_by_asset(Simulator(assets=assets, seed=settings.seed).normal(readings)), list(CHANNELS)


def csv_series(paths: Sequence[Path], rows: int | None = None) -> tuple[list[np.ndarray], list[str]]:
    """The first ``rows`` rows (all when None) of each CSV file; every file must have the same channels."""
    series, channels = [], None
    for path in paths:
        frame = read_sensor_csv(path)
        if channels is not None and frame.channels != channels:
            raise SourceError(f"{path}: channels {frame.channels} differ from {channels}")
        channels = frame.channels
        series.append(frame.values[:rows] if rows else frame.values)
    if channels is None:
        raise SourceError("no training files given")
    return series, channels


def train_and_register(
    settings: Settings,
    series: list[np.ndarray],
    channels: list[str],
    source: str,
    promote: bool,
    progress: bool = True,
) -> tuple[TrainedDetector, RegisteredVersion]:
    trained = fit_detector(series, channels, config_of(settings, progress))
    params = {"source": source, "series": len(series), "readings": int(sum(len(s) for s in series))}
    version = log_training(trained, store_of(settings), params, alias=settings.model_alias if promote else None)
    return trained, version
