"""Verdicts as stretches of readings: what the retraining and the gate take from review.

- ``without_confirmed``: the readings of confirmed anomalies leave the training data, and the
  series is cut there, so no training window overlaps one; ``flagged_spans``: the short stretches
  the service flagged and nobody called a false positive, which leave it the same way;
- ``reviewed_spans``: confirmed and false-positive anomalies as labelled stretches for the gate,
  and ``score_reviewed``: a version's recall and precision on them, scored again from the archive.

The retraining and the gate (``sensorwatch.pipeline.jobs``) call these functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sensorwatch.models.cadence import TimeSeries
from sensorwatch.pipeline.archive import read_archive
from sensorwatch.pipeline.review.feedback import reviews_of
from sensorwatch.pipeline.settings import Settings
from sensorwatch.pipeline.stream.frames import overlaps, replay

if TYPE_CHECKING:
    from sensorwatch.models.detector import Detector

SPAN_COLUMNS = ["asset_id", "start_ms", "end_ms", "verdict", "event_id"]


def reviewed_spans(
    settings: Settings, verdicts: tuple[str, ...] = ("confirmed", "false-positive")
) -> pd.DataFrame:
    """Anomalies with one of ``verdicts``, as stretches of their asset (empty without any)."""
    from sensorwatch.models.mlflow_store import StoreError

    try:
        reviews = reviews_of(settings)
    except StoreError:  # no MLflow store yet: nothing reviewed
        return pd.DataFrame(columns=SPAN_COLUMNS)
    rows = [
        (a.asset, a.start_ms, a.end_ms, a.verdict, a.event_id)
        for v in verdicts
        for a in reviews.list(verdict=v, limit=50_000)
        if a.start and a.end
    ]
    return pd.DataFrame(rows, columns=SPAN_COLUMNS)


def score_reviewed(
    detector: Detector, settings: Settings, reviewed: pd.DataFrame
) -> tuple[int, float, float]:
    """(reviewed, recall, precision) of ``detector`` on the reviewed anomalies (``asset_id``,
    ``start_ms``, ``end_ms``, ``verdict``): each one's stretch of the archive, with room before it
    for windows to fill and after it for the alarm to clear, is scored on the service's path, and
    the anomaly counts as found when an alarm of its own stretch overlaps it. Recall: the confirmed
    ones found; precision: of the reviewed ones found, the share confirmed."""
    if reviewed.empty:
        return 0, float("nan"), float("nan")
    pad = 10 * detector.spec.window * detector.spec.interval_ms
    found: list[bool] = []
    for row in reviewed.itertuples():
        frames = read_archive(
            settings.archive_uri, int(row.start_ms) - pad, int(row.end_ms) + pad, {row.asset_id}
        )
        opened = replay(detector, frames).opened
        found.append(
            any(overlaps(alarm, row.asset_id, row.start_ms, row.end_ms) for alarm in opened)
        )
    confirmed = (reviewed["verdict"] == "confirmed").to_numpy()
    hits = np.asarray(found, bool)
    recall = float(hits[confirmed].mean()) if confirmed.any() else float("nan")
    precision = float(confirmed[hits].mean()) if hits.any() else float("nan")
    return len(reviewed), recall, precision


def cut(series: TimeSeries, spans: list[tuple[int, int]]) -> list[TimeSeries]:
    """``series`` without its readings in any ``[start, end]`` of ``spans``, in pieces cut there
    (so no window bridges a removed stretch).

    >>> parts = cut(TimeSeries(np.arange(10) * 1000, np.zeros((10, 1))), [(3000, 4000), (8000, 8000)])
    >>> [p.ts_ms.tolist() for p in parts]
    [[0, 1000, 2000], [5000, 6000, 7000], [9000]]
    """
    ts = np.asarray(series.ts_ms, np.int64)
    keep = np.ones(len(ts), bool)
    for start, end in spans:
        keep &= ~((ts >= start) & (ts <= end))
    kept = np.flatnonzero(keep)
    if len(kept) == len(ts):
        return [series]
    pieces = np.split(kept, np.flatnonzero(np.diff(kept) > 1) + 1)
    return [TimeSeries(series.ts_ms[p], series.values[p]) for p in pieces if len(p)]


def without_confirmed(
    series: dict[str, TimeSeries], confirmed: pd.DataFrame
) -> tuple[list[TimeSeries], int, int]:
    """Training series per asset without the confirmed anomalies' readings: (pieces, readings
    dropped, anomalies that touched the data)."""
    pieces: list[TimeSeries] = []
    dropped = touched = 0
    for asset, s in series.items():
        mine = confirmed[confirmed["asset_id"] == asset]
        spans = [(int(r.start_ms), int(r.end_ms)) for r in mine.itertuples()]
        parts = cut(s, spans)
        left = sum(len(p) for p in parts)
        if left < len(s):
            touched += sum(1 for a, b in spans if ((s.ts_ms >= a) & (s.ts_ms <= b)).any())
        dropped += len(s) - left
        pieces += parts
    return pieces, dropped, touched


def flagged_spans(
    frames: dict[str, pd.DataFrame], longest_ms: int, reviewed: pd.DataFrame
) -> tuple[pd.DataFrame, int]:
    """The stretches of the archive the service flagged (windows decided anomalous, overlapping
    ones merged) at most ``longest_ms`` long, except those overlapping an anomaly in ``reviewed``
    (a verdict decides those): (the stretches in ``SPAN_COLUMNS``, how many longer ones were kept).

    A fault nobody labelled would otherwise be learnt as normal, and the next version would miss
    it; a longer stretch is more likely a change of the process, which the
    next version should learn (the drift check reports it). ``frames`` are ``read_archive``'s.

    >>> f = pd.DataFrame({"ts_ms": [3, 4, 5, 9], "window_start_ms": [1, 2, 3, 7],
    ...                   "anomalous": [True, True, None, True]})
    >>> spans, kept = flagged_spans({"p": f}, 2, pd.DataFrame(columns=SPAN_COLUMNS))
    >>> spans[["start_ms", "end_ms"]].values.tolist(), kept
    ([[7, 9]], 1)
    """
    rows: list[tuple[str, int, int, str, str]] = []
    kept = 0
    for asset, frame in frames.items():
        if "anomalous" not in frame:
            continue
        hit = frame[frame["anomalous"].eq(True)]
        if hit.empty:
            continue
        starts = hit["window_start_ms"].to_numpy(np.int64)
        ends = hit["ts_ms"].to_numpy(np.int64)
        order = np.argsort(starts, kind="stable")
        starts, ends = starts[order], ends[order]
        reach = np.maximum.accumulate(ends)
        first = np.concatenate([[True], starts[1:] > reach[:-1]])  # a window that starts a stretch
        group = np.cumsum(first) - 1
        mine = reviewed[reviewed["asset_id"] == asset]
        for g in range(int(group[-1]) + 1):
            members = group == g
            start, end = int(starts[members][0]), int(reach[members][-1])
            if end - start > longest_ms:
                kept += 1
            elif not any(
                overlaps((asset, start, end), asset, int(a), int(b))
                for a, b in zip(mine["start_ms"], mine["end_ms"])
            ):
                rows.append((asset, start, end, "flagged", ""))
    return pd.DataFrame(rows, columns=SPAN_COLUMNS), kept
