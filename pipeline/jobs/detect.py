"""Causal detection on one CSV file, through the same path the streaming service scores with.

The first ``train_rows`` rows train a detector (cadence, scaler, model, error scale, threshold)
with the given recipe. The rest is then fed as readings of one asset through ``Processor`` —
windows, one compiled forward pass per batch, the threshold stream and the alarm rules — exactly
as it would arrive on Kafka, so a row's decision only ever uses rows up to it. Rows whose window
is not complete yet (right after a gap that reset the buffer) keep the asset's alarm state from
before them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sensorwatch.models.cadence import (
    NoCadenceError,
    TimeSeries,
    TrainingDataError,
    describe_gaps,
    learn_interval,
    split_at_gaps,
    training_stretches,
)
from sensorwatch.models.recipe import Recipe
from sensorwatch.models.thresholds import fitting_params, make_threshold
from sensorwatch.pipeline.data.csvfiles import SensorFrame, SourceError, read_sensor_csv
from sensorwatch.pipeline.jobs.detect_rows import decided_rows, with_left_out
from sensorwatch.pipeline.stream.processor import Processor
from sensorwatch.schemas.records import Reading

# Keras comes with these: imported where a model is built, so the input is checked without it.
if TYPE_CHECKING:
    from sensorwatch.models.detector import Detector
    from sensorwatch.models.training import TrainedDetector, TrainOptions

ASSET = "file"
# Readings handed to the processor at a time: what one poll of the service would bring.
POLL = 2000


def _readings(frame: SensorFrame, start: int) -> Iterator[list[Reading]]:
    names = frame.channels
    for lo in range(start, len(frame), POLL):
        rows = frame.values[lo : lo + POLL].tolist()
        yield [
            Reading(ASSET, int(t), dict(zip(names, r)))
            for t, r in zip(frame.ts_ms[lo : lo + POLL].tolist(), rows)
        ]


def train_on(
    frame: SensorFrame, train_rows: int, recipe: Recipe, options: TrainOptions | None = None
) -> TrainedDetector:
    """Train a detector on the first ``train_rows`` rows of a file."""
    from sensorwatch.models.training import fit_detector

    _check_train_rows(frame, train_rows, recipe)
    try:
        return fit_detector(
            [TimeSeries(frame.ts_ms[:train_rows], frame.values[:train_rows])],
            frame.channels,
            recipe,
            options,
        )
    except TrainingDataError as exc:
        raise SourceError(f"{frame.path}: {exc}") from None


def _check_train_rows(frame: SensorFrame, train_rows: int, recipe: Recipe) -> None:
    if not 0 < train_rows < len(frame):
        raise SourceError(
            f"{frame.path}: --train-rows must be between 1 and {len(frame) - 1} (the file has {len(frame)} rows)"
        )
    if train_rows < recipe.window:
        raise SourceError(
            f"{frame.path}: {train_rows} training rows are fewer than one window of {recipe.window}"
        )


def with_threshold(trained: TrainedDetector, method: str, params: dict[str, Any]) -> Detector:
    """The trained model with another threshold method, fitted on the same calibration scores."""
    if trained.calibration_scores is None:
        raise ValueError("the trained detector kept no calibration scores")
    from sensorwatch.models.detector import Detector

    spec = trained.spec
    made = fitting_params(method, params, spec.interval_ms, trained.recipe.stride)
    threshold = make_threshold(method, **made).fit(trained.calibration_scores)
    recipe = trained.recipe.updated(threshold=method, threshold_params=params)
    return Detector(
        trained.model, replace(trained.spec, threshold=threshold.to_dict(), recipe=recipe)
    )


def decide(frame: SensorFrame, train_rows: int, detector: Detector) -> pd.DataFrame:
    """Feed the rows after ``train_rows`` through the service's path: ``datetime, score, anomaly``.

    The detector's own recipe decides (stride, cadence rules, alarm rules), as on Kafka.
    """
    processor = Processor(detector)
    # The last window-1 training rows are history only: the first test row gets a full window.
    start = max(train_rows - (detector.spec.window - 1), 0)
    decisions = [processor.process(batch) for batch in _readings(frame, start)] + [
        processor.flush()
    ]
    end_ms = np.concatenate([d.windows.end_ms for d in decisions])
    if end_ms.size == 0:
        raise _no_window(frame, start, detector.spec.window, processor.windower.max_gap_ms or 0)
    return decided_rows(
        frame,
        train_rows,
        end_ms,
        np.concatenate([d.scores for d in decisions]),
        np.concatenate([d.alarm for d in decisions]),
    )


def _no_window(frame: SensorFrame, start: int, window: int, gap_ms: int) -> SourceError:
    why = describe_gaps(frame.ts_ms[start:], gap_ms)
    return SourceError(
        f"{frame.path}: no window of {window} readings can form after the training rows: {why}"
    )


def check_windows_form(frame: SensorFrame, train_rows: int, recipe: Recipe) -> None:
    """Fail before training (and before Keras is imported) when the rows to decide cannot form
    one window under the recipe's gap rule (at the cadence the training rows show), or the training
    rows cannot train the recipe."""
    _check_train_rows(frame, train_rows, recipe)
    try:
        interval = learn_interval([frame.ts_ms[:train_rows]])
    except NoCadenceError as exc:
        raise SourceError(f"{frame.path}: {exc}") from None
    gap_ms = recipe.cadence(interval).max_gap_ms
    start = max(train_rows - (recipe.window - 1), 0)
    rest = TimeSeries(frame.ts_ms[start:], frame.values[start:])
    if not any(len(part) >= recipe.window for part in split_at_gaps(rest, gap_ms)):
        raise _no_window(frame, start, recipe.window, gap_ms)
    try:
        training_stretches(
            [TimeSeries(frame.ts_ms[:train_rows], frame.values[:train_rows])], recipe
        )
    except TrainingDataError as exc:
        raise SourceError(f"{frame.path}: {exc}") from None


def detect_frame(
    frame: SensorFrame,
    train_rows: int,
    recipe: Recipe,
    options: TrainOptions | None = None,
    retrain_every: int = 0,
    leave_out_windows: float = 20.0,
) -> pd.DataFrame:
    """Train on the first ``train_rows`` rows and decide every later row: ``datetime, score, anomaly``
    (with ``retrain_every``, retraining as a schedule would: ``decide_retraining``)."""
    from sensorwatch.models.detector import Detector

    check_windows_form(frame, train_rows, recipe)
    if retrain_every:  # the first version is the model every retrain keeps (decide_retraining)
        options = replace(options or _default_options(), reuse_model=True)
    trained = train_on(frame, train_rows, recipe, options)
    if retrain_every:
        rows = decide_retraining(
            frame, train_rows, trained, retrain_every, options, leave_out_windows
        )
    else:
        rows = decide(frame, train_rows, Detector(trained.model, trained.spec))
    return with_left_out(rows, frame, train_rows)


def decide_retraining(
    frame: SensorFrame,
    train_rows: int,
    trained: TrainedDetector,
    every: int,
    options: TrainOptions | None = None,
    leave_out_windows: float = 20.0,
) -> pd.DataFrame:
    """What the service and a scheduled retrain would have decided together: the rows after
    ``train_rows`` in blocks of ``every``, each decided by the version the block before it left.
    After each block a new version trains on the last ``train_rows`` rows with the first version's
    recipe (a retrain of the champion keeps its recipe), cut where an alarm of at most
    ``leave_out_windows`` window lengths was raised, as ``sensorwatch retrain`` leaves out what
    the service flagged (``SENSORWATCH_RETRAIN_LEAVE_OUT_WINDOWS``): a longer one is kept, as a
    change of the process. A new version starts its own alarm state, as after a swap; too little
    clean data keeps the version that decided the block."""
    from sensorwatch.models.detector import Detector
    from sensorwatch.models.metrics import runs
    from sensorwatch.models.training import fit_detector

    detector = Detector(trained.model, trained.spec)
    # Every retrain has the same shape: one kept model, reset to its seeded start each time, so
    # neither its training step nor its scoring pass is compiled again (``reuse_model``). The
    # version it replaces is not used after it.
    again = replace(options or _default_options(), reuse_model=True)
    alarm = np.zeros(len(frame), bool)
    blocks = []
    for lo in range(train_rows, len(frame), every):
        hi = min(lo + every, len(frame))
        head = replace(frame, ts_ms=frame.ts_ms[:hi], values=frame.values[:hi])
        try:
            block = decide(head, lo, detector)
        except SourceError:  # no window forms in this block (a long gap): nothing decided
            none = np.zeros(0)
            block = decided_rows(head, lo, none.astype(np.int64), none, none.astype(bool))
        alarm[lo:hi] = block["anomaly"].to_numpy() == 1
        blocks.append(block)
        if hi == len(frame):
            break
        first = max(0, hi - train_rows)
        window = detector.spec.window
        kept = ~alarm[first:hi]
        for a, b in runs(alarm[first:hi]):
            if b + 1 - a > leave_out_windows * window:
                kept[a : b + 1] = True  # a change of the process, not a fault
        clean = [
            TimeSeries(
                frame.ts_ms[first + a : first + b + 1], frame.values[first + a : first + b + 1]
            )
            for a, b in runs(kept)
            if b + 1 - a >= window
        ]
        try:
            new = fit_detector(clean, frame.channels, trained.recipe, again)
        except TrainingDataError:
            continue
        detector = Detector(new.model, new.spec)
    return pd.concat(blocks, ignore_index=True)


def _default_options() -> TrainOptions:
    from sensorwatch.models.training import TrainOptions

    return TrainOptions()


def detect_file(
    path: str | Path,
    train_rows: int,
    recipe: Recipe | None = None,
    options: TrainOptions | None = None,
    timezone: str | None = None,
    strict: bool = False,
    retrain_every: int = 0,
) -> pd.DataFrame:
    """Causally score one CSV file (SKAB format or plain CSV with a time column).

    Label columns are ignored. Returns one row per input row after the training part (rows in
    time order, a repeated time once, a row left out for an empty value with no score and the
    alarm state before it: ``read_sensor_csv`` with ``timezone`` and ``strict``), with
    ``datetime``, ``score`` (the window score, NaN where no window ends at the row) and ``anomaly``
    (0/1). Without a recipe, the default (best benchmarked) one is used.
    """
    frame = read_sensor_csv(path, timezone=timezone, strict=strict)
    return detect_frame(frame, train_rows, recipe or Recipe(), options, retrain_every)
