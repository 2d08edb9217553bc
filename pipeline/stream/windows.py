"""Per-asset sliding windows in event-time order.

Each asset has a small re-order buffer (readings wait until the asset's newest event time is
``grace_ms`` past them, so readings that arrive up to ``grace_ms`` out of order are put back in
order; one that arrives older than that is late) and
a ring buffer of its last ``window`` released readings. Every ``stride`` released readings, once
the ring is full, a window is emitted. What cannot be placed is returned, not logged: readings
older than the last released one are ``late``, readings whose time was already seen are
``duplicates``. A gap longer than ``max_gap_ms`` starts the asset's window afresh; a stretch
that ended at a gap before it held one window is reported (``windowless``), so a stream whose
readings are always too far apart is said so instead of silently scoring nothing.

>>> w = Windower(["a", "b"], window=2, stride=1, grace_ms=1)
>>> out = w.add([Reading("p1", t, {"a": t, "b": 0.0}) for t in (1, 3, 2, 2)])
>>> out.windows.tolist(), out.end_ms.tolist(), len(out.duplicates)
([[[1.0, 0.0], [2.0, 0.0]]], [2], 1)
>>> w.flush().end_ms.tolist()   # 3 waited for its grace period
[3]
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

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


class _Asset:
    """One asset's re-order heap and ring buffer (twice the window, so a window is one slice)."""

    __slots__ = (
        "pending", "pending_ts", "ring", "ring_ts", "pos", "filled", "since_emit", "last_ts", "newest_ts", "seen_at"
    )
    SAVED = ("pos", "filled", "since_emit", "last_ts", "newest_ts")

    def __init__(self, window: int, channels: int) -> None:
        self.pending: list[tuple[int, int, np.ndarray]] = []
        self.pending_ts: set[int] = set()
        self.ring = np.zeros((2 * window, channels), np.float32)
        self.ring_ts = np.zeros(2 * window, np.int64)
        self.pos = 0
        self.filled = 0
        self.since_emit = 0
        self.last_ts: int | None = None  # newest released event time
        self.newest_ts: int | None = None  # newest event time seen
        self.seen_at = 0.0  # clock time of the newest arrival (for releasing a quiet asset)

    def export(self) -> dict[str, Any]:
        """Everything the asset's future windows depend on (the clock time is not kept)."""
        pending = sorted((ts, row) for ts, _, row in self.pending)
        return {
            **{name: getattr(self, name) for name in self.SAVED},
            "ring": self.ring, "ring_ts": self.ring_ts,
            "pending_ts": np.array([ts for ts, _ in pending], np.int64),
            "pending": np.stack([row for _, row in pending]) if pending else np.zeros((0, self.ring.shape[1]), np.float32),
        }

    def load(self, saved: dict[str, Any], seq: itertools.count) -> None:
        for name in self.SAVED:
            setattr(self, name, saved[name])
        self.ring[:], self.ring_ts[:] = saved["ring"], saved["ring_ts"]
        self.pending = [(int(ts), next(seq), row) for ts, row in zip(saved["pending_ts"], saved["pending"])]
        heapq.heapify(self.pending)
        self.pending_ts = {ts for ts, _, _ in self.pending}


class Windower:
    """Cuts readings of many assets into windows of ``window`` readings every ``stride``."""

    def __init__(
        self,
        channels: Sequence[str],
        window: int,
        stride: int = 1,
        grace_ms: int = 0,
        max_gap_ms: int | None = None,
    ) -> None:
        if window < 2:
            raise ValueError("window must be at least 2")
        self.channels = list(channels)
        self.window = window
        self.keep_released = False  # hand out the released readings with each batch (for an archive)
        self.retune(stride, grace_ms, max_gap_ms)
        self._assets: dict[str, _Asset] = {}
        self._seq = itertools.count()  # ties in the heap keep arrival order

    def retune(self, stride: int, grace_ms: int = 0, max_gap_ms: int | None = None) -> None:
        """New stride and time rules from the next reading on; buffers and windows carry on."""
        if stride < 1 or grace_ms < 0 or (max_gap_ms is not None and max_gap_ms < 1):
            raise ValueError("stride must be at least 1, grace at least 0 and the gap limit at least 1 ms")
        self.stride, self.grace_ms, self.max_gap_ms = stride, grace_ms, max_gap_ms

    def assets(self) -> list[str]:
        return list(self._assets)

    def forget(self, asset_ids: Iterable[str]) -> None:
        """Drop assets' state, e.g. when their partition moves to another consumer."""
        for asset_id in asset_ids:
            self._assets.pop(asset_id, None)

    def export(self, asset_id: str) -> dict[str, Any] | None:
        """The asset's buffers as plain values and arrays (None for an asset never seen)."""
        st = self._assets.get(asset_id)
        return None if st is None else st.export()

    def load(self, asset_id: str, saved: dict[str, Any]) -> None:
        """Put back an asset's buffers from ``export`` (same window and channels)."""
        if saved["ring"].shape != (2 * self.window, len(self.channels)):
            raise ValueError(f"saved buffers of {asset_id!r} do not fit window {self.window} × {len(self.channels)} channels")
        st = self._assets[asset_id] = _Asset(self.window, len(self.channels))
        st.load(saved, self._seq)

    def add(self, readings: Iterable[Reading], now: float = 0.0) -> WindowBatch:
        """Take a batch of readings (arriving at clock time ``now``); return the windows that became ready."""
        out = _Collector(self.window, len(self.channels), self.keep_released)
        touched: dict[str, _Asset] = {}
        for r in readings:
            st = self._assets.get(r.asset_id)
            if st is None:
                st = self._assets[r.asset_id] = _Asset(self.window, len(self.channels))
            if st.newest_ts is not None and r.ts_ms <= st.newest_ts and self._misplaced(st, r, out.batch):
                continue
            row = np.fromiter((r.values[c] for c in self.channels), np.float32, len(self.channels))
            heapq.heappush(st.pending, (r.ts_ms, next(self._seq), row))
            st.pending_ts.add(r.ts_ms)
            st.newest_ts = r.ts_ms if st.newest_ts is None else max(st.newest_ts, r.ts_ms)
            st.seen_at = now
            touched[r.asset_id] = st
        for asset_id, st in touched.items():
            self._release(asset_id, st, st.newest_ts - self.grace_ms, out)
        out.batch.touched.update(touched)
        return out.finish()

    def flush(self, quiet_since: float | None = None) -> WindowBatch:
        """Release every reading still waiting for its grace period (at shutdown or end of file);
        with ``quiet_since``, only those of assets that received nothing after that clock time."""
        out = _Collector(self.window, len(self.channels), self.keep_released)
        for asset_id, st in self._assets.items():
            if st.pending and (quiet_since is None or st.seen_at <= quiet_since):
                self._release(asset_id, st, max(ts for ts, _, _ in st.pending), out)
                out.batch.touched.add(asset_id)
        return out.finish()

    def waiting(self) -> int:
        """Readings held back for their grace period, over all assets."""
        return sum(len(st.pending) for st in self._assets.values())

    def _misplaced(self, st: _Asset, r: Reading, batch: WindowBatch) -> bool:
        """Whether a reading not newer than the asset's newest is a duplicate or late (and so set aside)."""
        if r.ts_ms in st.pending_ts or r.ts_ms == st.last_ts or self._in_ring(st, r.ts_ms):
            batch.duplicates.append(r)
        elif r.ts_ms < st.newest_ts - self.grace_ms or (st.last_ts is not None and r.ts_ms < st.last_ts):
            batch.late.append(r)
        else:
            return False
        return True

    def _in_ring(self, st: _Asset, ts: int) -> bool:
        n = min(st.filled, self.window)
        return bool(n and (st.ring_ts[st.pos - n : st.pos] == ts).any())

    def _release(self, asset_id: str, st: _Asset, upto: int, out: _Collector) -> None:
        w = self.window
        while st.pending and st.pending[0][0] <= upto:
            ts, _, row = heapq.heappop(st.pending)
            st.pending_ts.discard(ts)
            if st.last_ts is not None and self.max_gap_ms is not None and ts - st.last_ts > self.max_gap_ms:
                if st.filled < w:
                    out.batch.windowless.append(Windowless(asset_id, st.filled, ts - st.last_ts))
                st.filled = st.since_emit = 0
                out.batch.gaps += 1
            if st.pos == 2 * w:  # keep the newest w-1 rows at the front, so a window is a slice
                st.ring[: w - 1] = st.ring[w + 1 :]
                st.ring_ts[: w - 1] = st.ring_ts[w + 1 :]
                st.pos = w - 1
            st.ring[st.pos], st.ring_ts[st.pos] = row, ts
            st.pos += 1
            st.filled += 1
            st.last_ts = ts
            out.batch.released += 1
            if out.released is not None:
                out.released.append((asset_id, ts, row))
            if st.filled >= w:
                st.since_emit += 1
                if st.filled == w or st.since_emit >= self.stride:
                    st.since_emit = 0
                    out.add(asset_id, st.ring[st.pos - w : st.pos], st.ring_ts[st.pos - w], ts)


class _Collector:
    def __init__(self, window: int, channels: int, keep_released: bool = False) -> None:
        self.batch = WindowBatch([], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, window, channels), np.float32))
        self.channels = channels
        self.released: list[tuple[str, int, np.ndarray]] | None = [] if keep_released else None
        self._windows: list[np.ndarray] = []
        self._start: list[int] = []
        self._end: list[int] = []

    def add(self, asset_id: str, window: np.ndarray, start: int, end: int) -> None:
        self.batch.asset_ids.append(asset_id)
        self._windows.append(window.copy())
        self._start.append(int(start))
        self._end.append(int(end))

    def finish(self) -> WindowBatch:
        if self._windows:
            self.batch.windows = np.stack(self._windows)
            self.batch.start_ms = np.asarray(self._start, np.int64)
            self.batch.end_ms = np.asarray(self._end, np.int64)
        if self.released is not None:
            self.batch.released_ids = [a for a, _, _ in self.released]
            self.batch.released_ts = np.fromiter((t for _, t, _ in self.released), np.int64, len(self.released))
            self.batch.released_rows = (
                np.stack([r for _, _, r in self.released]) if self.released else np.zeros((0, self.channels), np.float32)
            )
        return self.batch
