"""The rows ``detect`` writes: ``datetime, score, anomaly``, one per row after the training part.

A row's score is that of the window ending at it (NaN where none ends there: right after a gap,
or a row the file's reading left out for an empty value); its ``anomaly`` is the alarm state the
last window up to it left.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sensorwatch.pipeline.data.csvfiles import SensorFrame


def decided_rows(
    frame: SensorFrame, train_rows: int, end_ms: np.ndarray, scores: np.ndarray, alarm: np.ndarray
) -> pd.DataFrame:
    """One output row per test row: the score of the window ending at it, the alarm state after it."""
    ts = frame.ts_ms[train_rows:]
    pos = np.searchsorted(end_ms, ts)
    has = (pos < len(end_ms)) & (end_ms[np.minimum(pos, len(end_ms) - 1)] == ts)
    score = np.full(len(ts), np.nan)
    score[has] = scores[pos[has]]
    # A row without a window of its own keeps the state the last window left.
    last = np.searchsorted(end_ms, ts, side="right") - 1
    state = np.where(last >= 0, alarm[np.maximum(last, 0)], False)
    return _table(ts, score, state)


def with_left_out(rows: pd.DataFrame, frame: SensorFrame, train_rows: int) -> pd.DataFrame:
    """``rows`` (``decided_rows`` of ``frame``) with a row for each time the file's reading left
    out after the training part: no score, and the alarm state of the row before it.

    >>> from pathlib import Path
    >>> ts = np.array([0, 1000, 3000, 4000])
    >>> frame = SensorFrame(Path("f.csv"), ts, ["x"], np.zeros((4, 1)), pd.DataFrame(),
    ...                     left_out_ms=np.array([2000, 5000]))
    >>> rows = decided_rows(frame, 1, ts, np.array([1.0, 2, 3, 4]), np.array([0, 1, 0, 1], bool))
    >>> with_left_out(rows, frame, 1)[["datetime", "anomaly"]].to_numpy().tolist()  # doctest: +NORMALIZE_WHITESPACE
    [['1970-01-01 00:00:01', 1], ['1970-01-01 00:00:02', 1], ['1970-01-01 00:00:03', 0],
     ['1970-01-01 00:00:04', 1], ['1970-01-01 00:00:05', 1]]
    """
    if train_rows >= len(frame):
        return rows
    test = frame.ts_ms[train_rows:]
    extra = frame.left_out_ms[frame.left_out_ms > frame.ts_ms[train_rows - 1]]
    if extra.size == 0:
        return rows
    before = np.searchsorted(test, extra) - 1  # the decided row before each left-out one
    anomaly = rows["anomaly"].to_numpy()
    ts = np.concatenate([test, extra])
    score = np.concatenate([rows["score"].to_numpy(), np.full(extra.size, np.nan)])
    state = np.concatenate([anomaly, np.where(before >= 0, anomaly[np.maximum(before, 0)], 0)])
    order = np.argsort(ts, kind="stable")
    return _table(ts[order], score[order], state[order])


def _table(ts: np.ndarray, score: np.ndarray, state: np.ndarray) -> pd.DataFrame:
    """Times to the second where every one is whole, else to the millisecond."""
    times = pd.to_datetime(ts, unit="ms")
    whole_seconds = bool((ts % 1000 == 0).all())
    return pd.DataFrame(
        {
            "datetime": times.strftime("%Y-%m-%d %H:%M:%S")
            if whole_seconds
            else times.strftime("%Y-%m-%d %H:%M:%S.%f").str[:-3],
            "score": score,
            "anomaly": state.astype(np.int8),
        }
    )
