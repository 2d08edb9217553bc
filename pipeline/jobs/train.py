"""The training job: normal series (CSV files, or the simulator's that the CLI brings) → trained
detector → MLflow.

The recipe is the settings' (``Settings.recipe()``: a preset with the fields set on purpose on
top); it is stored with the registered version, with the cadence learned from the data.

A value no sensor reads (infinite, or ``POISON_SPREADS`` times its channel's spread away from
the channel's median) is refused, naming the file or series, the row and the channel, before
anything is trained or registered: one such value would otherwise make the channel's scale
infinite. The version's validation scores go with it as the drift check's reference
(``sensorwatch.pipeline.jobs.drift``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sensorwatch.models.cadence import TimeSeries, TrainingDataError
from sensorwatch.models.register import log_training
from sensorwatch.models.registry import RegisteredVersion
from sensorwatch.pipeline.data.csvfiles import SourceError, read_sensor_csv
from sensorwatch.pipeline.settings import Settings
from sensorwatch.pipeline.stores import store_of

if TYPE_CHECKING:
    from sensorwatch.models.recipe import Recipe
    from sensorwatch.models.training import TrainedDetector


def csv_series(
    paths: Sequence[Path],
    rows: int | None = None,
    time_unit: str | None = None,
    timezone: str | None = None,
    strict: bool = False,
    say: Callable[[str], object] | None = None,
) -> tuple[list[TimeSeries], list[str]]:
    """The first ``rows`` rows (all when None) of each CSV file; every file must have the same channels.
    ``time_unit`` declares the unit of numeric time columns (default: inferred). Rows are sorted
    and a repeated time kept once (``read_sensor_csv``; ``strict`` refuses, ``timezone`` places
    naive local times); ``say`` gets one line per file that needed it."""
    series, channels = [], None
    for path in paths:
        frame = read_sensor_csv(path, time_unit=time_unit, timezone=timezone, strict=strict)
        if frame.note and say is not None:
            say(frame.note)
        if channels is not None and frame.channels != channels:
            raise SourceError(f"{path}: channels {frame.channels} differ from {channels}")
        channels = frame.channels
        series.append(TimeSeries(frame.ts_ms[:rows], frame.values[:rows]))
        check_values(series[-1:], channels, [str(path)])
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
    recipe: Recipe | None = None,
) -> tuple[TrainedDetector, RegisteredVersion]:
    """Train with ``recipe`` (default: the settings'), log the run, register a version (and
    promote it)."""
    from sensorwatch.models.training import fit_detector

    check_values(series, channels)
    trained = fit_detector(
        series, channels, recipe or settings.recipe(), settings.train_options(progress=progress)
    )
    params = {"source": source, "series": len(series), "readings": int(sum(len(s) for s in series))}
    version = register(settings, trained, params, promote, tags, documents)
    return trained, version


def register(
    settings: Settings,
    trained: TrainedDetector,
    params: dict[str, object],
    promote: bool,
    tags: dict[str, str] | None = None,
    documents: dict[str, object] | None = None,
) -> RegisteredVersion:
    """Log a trained detector's run and register its version (and promote it), with the drift
    check's reference from its validation scores beside the model."""
    from sensorwatch.pipeline.jobs.drift import REFERENCE, reference

    drift_reference = reference(
        trained.validation_scores or [], trained.spec.window, trained.spec.interval_ms
    )
    if drift_reference is not None:
        documents = {**(documents or {}), REFERENCE: drift_reference}
    return log_training(
        trained,
        store_of(settings),
        params,
        alias=settings.model_alias if promote else None,
        tags=tags,
        documents=documents,
    )


POISON_SPREADS = 1e4  # a value this many spreads from its channel's median is no reading


def check_values(
    series: Sequence[TimeSeries], channels: Sequence[str], names: Sequence[str] | None = None
) -> None:
    """Refuse the first value that no sensor reads: ``TrainingDataError`` names where it is.

    A channel's spread is robust (its interquartile range over 1.349, at least a thousandth of
    its median's size, or of 1), so the bad value itself cannot widen it.

    >>> ok = TimeSeries(np.arange(4), np.array([[1.0], [2.0], [1.5], [1.2]]))
    >>> check_values([ok], ["flow"])
    >>> bad = TimeSeries(np.arange(4), np.array([[1.0], [2.0], [1e30], [1.2]]))
    >>> check_values([ok, bad], ["flow"], ["a.csv", "b.csv"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sensorwatch.models.cadence.TrainingDataError: b.csv row 3 (1970-01-01T00:00:00.002Z): flow = 1e+30 ...
    """
    kept = [i for i, s in enumerate(series) if len(s)]
    parts = [np.asarray(series[i].values, np.float64).reshape(len(series[i]), -1) for i in kept]
    if not parts:
        return
    values = np.concatenate(parts)
    finite = np.where(np.isfinite(values), values, np.nan)
    with np.errstate(all="ignore"):
        median = np.nanmedian(finite, axis=0)
        q25, q75 = np.nanpercentile(finite, [25, 75], axis=0)
        spread = np.maximum((q75 - q25) / 1.349, 1e-3 * np.maximum(1, np.abs(median)))
        bad = np.isinf(values) | (np.abs(values - median) > POISON_SPREADS * spread)
    if not bad.any():
        return
    row, col = (int(i) for i in np.argwhere(bad)[0])
    offsets = np.cumsum([0] + [len(p) for p in parts])
    part = int(np.searchsorted(offsets, row, side="right")) - 1
    index, at = kept[part], row - int(offsets[part])
    where = names[index] if names else f"series {index + 1}"
    ts = np.datetime64(int(series[index].ts_ms[at]), "ms").astype(str) + "Z"
    value = values[row, col]
    how = (
        "is not finite"
        if np.isinf(value)
        else f"is no reading, {abs(value - median[col]) / spread[col]:.2g} spreads from the "
        f"channel's median {median[col]:.4g}"
    )
    raise TrainingDataError(
        f"{where} row {at + 1} ({ts}): {channels[col]} = {value:g} {how}: "
        "fix or drop it before training"
    )
