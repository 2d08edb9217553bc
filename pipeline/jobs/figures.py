"""One version's figures on the held-out day (``Figures``): the day's readings, with the gate's
injected faults, run through the service's own path (``sensorwatch.pipeline.stream.frames.replay``)
and its alarms held against the injected faults and the labelled events. An injected fault counts
as found when an alarm overlaps it; an alarm that overlaps no injected fault and no labelled event
is a false alarm.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sensorwatch.models.faults import Fault
from sensorwatch.pipeline.errors import UserError
from sensorwatch.pipeline.settings import Settings
from sensorwatch.pipeline.stream.frames import Alarm, overlaps, replay

if TYPE_CHECKING:
    from sensorwatch.models.detector import Detector


@dataclass
class Figures:
    """One version on the held-out day with injected faults, and the labelled events."""

    version: str
    readings: int
    windows: int
    false_alarms: int  # alarms on no injected fault and no labelled event
    false_alarms_per_10k: float  # per 10,000 readings of the untouched stretches
    labelled: int
    found: int
    recall: float
    mean_score_ratio: float  # mean window score over the version's own threshold
    # The anomalies people reviewed (confirmed or false-positive) in the archive, each stretch
    # scored again: confirmed ones this version alarms on, and of its alarms on reviewed
    # stretches, the share at confirmed ones.
    reviewed: int = 0
    reviewed_recall: float = float("nan")
    reviewed_precision: float = float("nan")
    # The synthetic faults injected into the held-out day: how many, and how many it found.
    injected: int = 0
    injected_found: int = 0
    injected_recall: float = float("nan")
    hits: list[bool] = field(default_factory=list)  # per injected fault, in order
    alarms: list[Alarm] = field(default_factory=list, repr=False)


def labels_of(settings: Settings) -> pd.DataFrame:
    """Labelled events (``asset_id``, ``start_ms``, ``end_ms``) from ``settings.labels_path``, if set."""
    if settings.labels_path is None:
        return pd.DataFrame(columns=["asset_id", "start_ms", "end_ms"])
    frame = pd.read_csv(settings.labels_path)
    missing = {"asset_id", "start_ms", "end_ms"} - set(frame.columns)
    if missing:
        raise UserError(
            f"{settings.labels_path}: labelled events need columns asset_id, start_ms, end_ms "
            f"(missing {', '.join(sorted(missing))})"
        )
    return frame


def _overlaps(alarm: Alarm, spans: pd.DataFrame) -> bool:
    asset, start, end = alarm
    near = spans[spans["asset_id"] == asset]
    return bool(((near["start_ms"] <= end) & (near["end_ms"] >= start)).any())


def score(
    detector: Detector,
    frames: dict[str, pd.DataFrame],
    labels: pd.DataFrame,
    faults: list[Fault] | None = None,
    tolerance_ms: int = 0,
) -> Figures:
    """Run ``frames`` through the service's own path with ``detector``: alarms against the
    injected ``faults`` and the labels (each extended by ``tolerance_ms``); false alarms per
    10,000 readings outside the injected faults."""
    faults = faults or []
    readings, windows, ratios, opened = replay(detector, frames)
    inside = labels[(labels["asset_id"].isin(frames))]
    if frames:
        lo = min(int(f["ts_ms"].min()) for f in frames.values())
        hi = max(int(f["ts_ms"].max()) for f in frames.values())
        inside = inside[(inside["end_ms"] >= lo) & (inside["start_ms"] <= hi)]
    # An alarm that opens while its windows still hold a fault's readings is that fault's.
    inside = inside.assign(end_ms=inside["end_ms"] + tolerance_ms)
    injected = pd.DataFrame(
        [(f.asset_id, f.start_ms, f.end_ms + tolerance_ms) for f in faults],
        columns=["asset_id", "start_ms", "end_ms"],
    )
    false = sum(
        1 for alarm in opened if not _overlaps(alarm, inside) and not _overlaps(alarm, injected)
    )
    covered = sum(
        int(((f["ts_ms"] >= row.start_ms) & (f["ts_ms"] <= row.end_ms)).sum())
        for row in injected.itertuples()
        if (f := frames.get(row.asset_id)) is not None
    )
    found = sum(
        1
        for row in inside.itertuples()
        if any(overlaps(alarm, row.asset_id, row.start_ms, row.end_ms) for alarm in opened)
    )
    hits = [
        any(overlaps(a, r.asset_id, r.start_ms, r.end_ms) for a in opened)
        for r in injected.itertuples()
    ]
    untouched = max(readings - covered, 1)
    return Figures(
        detector.version,
        readings,
        windows,
        false,
        1e4 * false / untouched,
        len(inside),
        found,
        found / len(inside) if len(inside) else float("nan"),
        float(np.mean(ratios)) if ratios else float("nan"),
        injected=len(faults),
        injected_found=sum(hits),
        injected_recall=sum(hits) / len(faults) if faults else float("nan"),
        hits=hits,
        alarms=opened,
    )


def plain(figures: Figures) -> dict[str, Any]:
    """The figures as JSON takes them (Airflow passes them between tasks): no NaN, None instead,
    and no alarm list.

    >>> plain(Figures("2", 10, 9, 0, 0.0, 0, 0, float("nan"), 0.5))["recall"] is None
    True
    """
    return {
        k: None if isinstance(v, float) and not np.isfinite(v) else v
        for k, v in asdict(figures).items()
        if k != "alarms"
    }
