"""The archive a logical date retrains on: its ``Span`` (the training days, then the held-out day),
the archived readings between two times, and the tag that marks what a retrain made for a date."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from sensorwatch.pipeline.archive import DAY_MS, read_archive
from sensorwatch.pipeline.settings import Settings

DATE_TAG = "sensorwatch.logical_date"


@dataclass(frozen=True)
class Span:
    """The archive a logical date retrains on: ``[start_ms, holdout_ms)`` trains,
    ``[holdout_ms, end_ms)`` is held out."""

    start_ms: int
    holdout_ms: int
    end_ms: int

    @classmethod
    def of(cls, logical_date: str, lookback_days: int) -> Span:
        end = int(datetime.fromisoformat(logical_date).replace(tzinfo=UTC).timestamp() * 1000)
        end = end - end % DAY_MS + DAY_MS  # the whole logical day is in
        return cls(end - lookback_days * DAY_MS, end - DAY_MS, end)


def archived_frames(settings: Settings, start_ms: int, end_ms: int) -> dict[str, pd.DataFrame]:
    """The archived readings of ``[start_ms, end_ms)``, one frame per asset."""
    return read_archive(settings.archive_uri, start_ms, end_ms)
