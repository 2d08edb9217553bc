"""The training job: normal series (CSV files, or the simulator's that the CLI brings) → trained
detector → MLflow.

The recipe is the settings' (``Settings.recipe()``: a preset with the fields set on purpose on
top); it is stored with the registered version, with the cadence learned from the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sensorwatch.models.cadence import TimeSeries
from sensorwatch.models.register import log_training
from sensorwatch.models.registry import RegisteredVersion
from sensorwatch.pipeline.data.csvfiles import SourceError, read_sensor_csv
from sensorwatch.pipeline.settings import Settings
from sensorwatch.pipeline.stores import store_of

if TYPE_CHECKING:
    from sensorwatch.models.training import TrainedDetector


def csv_series(
    paths: Sequence[Path], rows: int | None = None, time_unit: str | None = None
) -> tuple[list[TimeSeries], list[str]]:
    """The first ``rows`` rows (all when None) of each CSV file; every file must have the same channels.
    ``time_unit`` declares the unit of numeric time columns (default: inferred)."""
    series, channels = [], None
    for path in paths:
        frame = read_sensor_csv(path, time_unit=time_unit)
        if channels is not None and frame.channels != channels:
            raise SourceError(f"{path}: channels {frame.channels} differ from {channels}")
        channels = frame.channels
        series.append(TimeSeries(frame.ts_ms[:rows], frame.values[:rows]))
    if channels is None:
        raise SourceError("no training files given")
    return series, channels


def train_and_register(
    settings: Settings,
    series: list[TimeSeries],
    channels: list[str],
    source: str,
    promote: bool,
    progress: bool = True,
    tags: dict[str, str] | None = None,
    documents: dict[str, object] | None = None,
) -> tuple[TrainedDetector, RegisteredVersion]:
    """Train with the settings' recipe, log the run, register a version (and promote it)."""
    from sensorwatch.models.training import fit_detector

    trained = fit_detector(
        series, channels, settings.recipe(), settings.train_options(progress=progress)
    )
    params = {"source": source, "series": len(series), "readings": int(sum(len(s) for s in series))}
    version = log_training(
        trained,
        store_of(settings),
        params,
        alias=settings.model_alias if promote else None,
        tags=tags,
        documents=documents,
    )
    return trained, version
