"""What windowing one batch of readings yields: the windows ready, with their assets and event
times, and what could not be placed (late, duplicate, windowless); and the collector that gathers
them asset by asset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sensorwatch.schemas.records import Reading


@dataclass(frozen=True, slots=True)
class Windowless:
    """A stretch of one asset's readings that a gap ended before it filled a window."""

    asset_id: str
    readings: int
    gap_ms: int


@dataclass
class WindowBatch:
    """Windows ready after one batch of readings, with what could not be placed."""

    asset_ids: list[str]
    start_ms: np.ndarray
    end_ms: np.ndarray
    windows: np.ndarray  # (n, window, channels), float32
    late: list[Reading] = field(default_factory=list)
    duplicates: list[Reading] = field(default_factory=list)
    released: int = 0  # readings that entered a window buffer
    gaps: int = 0  # buffers reset by a gap
    windowless: list[Windowless] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)  # assets whose buffers changed
    # With ``Windower.keep_released``: the readings that entered a buffer, in release order (an
    # archive of what was scored): asset ids, event times and channel rows.
    released_ids: list[str] | None = None
    released_ts: np.ndarray | None = None
    released_rows: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.asset_ids)


class Collector:
    """Gathers each asset's consecutive windows (and, with ``keep_released``, the readings released
    into a buffer) into one ``WindowBatch``."""

    def __init__(self, window: int, channels: int, keep_released: bool = False) -> None:
        self.batch = WindowBatch(
            [],
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros((0, window, channels), np.float32),
        )
        self.channels = channels
        # Per release, the asset id, its event times and its rows.
        self.released: list[tuple[str, np.ndarray, np.ndarray]] | None = (
            [] if keep_released else None
        )
        self._windows: list[np.ndarray] = []
        self._start: list[np.ndarray] = []
        self._end: list[np.ndarray] = []

    def add(self, asset_id: str, windows: np.ndarray, start: np.ndarray, end: np.ndarray) -> None:
        """One asset's consecutive windows (n, window, channels) with their first and last event times."""
        self.batch.asset_ids.extend([asset_id] * len(windows))
        self._windows.append(windows)
        self._start.append(start)
        self._end.append(end)

    def finish(self) -> WindowBatch:
        if self._windows:
            self.batch.windows = (
                np.concatenate(self._windows) if len(self._windows) > 1 else self._windows[0]
            )
            self.batch.start_ms = np.concatenate(self._start)
            self.batch.end_ms = np.concatenate(self._end)
        if self.released is not None:
            self.batch.released_ids = [a for a, ts, _ in self.released for _ in range(len(ts))]
            self.batch.released_ts = (
                np.concatenate([ts for _, ts, _ in self.released])
                if self.released
                else np.zeros(0, np.int64)
            )
            self.batch.released_rows = (
                np.concatenate([r for _, _, r in self.released])
                if self.released
                else np.zeros((0, self.channels), np.float32)
            )
        return self.batch
