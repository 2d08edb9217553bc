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

import bisect
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from sensorwatch.pipeline.stream.batch import Collector, WindowBatch, Windowless
from sensorwatch.schemas.records import Reading


class _Asset:
    """One asset's re-order buffer (sorted by event time) and ring buffer (twice the window, so a
    window is one slice)."""

    __slots__ = (
        "pending",
        "pending_ts",
        "ring",
        "ring_ts",
        "pos",
        "filled",
        "since_emit",
        "last_ts",
        "newest_ts",
        "seen_at",
    )
    SAVED = ("pos", "filled", "since_emit", "last_ts", "newest_ts")

    def __init__(self, window: int, channels: int) -> None:
        self.pending: list[
            tuple[int, list[float]]
        ] = []  # (event time, channel values), in time order
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
        """Everything the asset's future windows depend on (the clock time is not kept), the same
        whatever polls brought the readings: the ring's history (its last ``window`` rows at most)
        moved to the front, the rest zero."""
        held = min(self.filled, len(self.ring) // 2, self.pos)
        ring, ring_ts = np.zeros_like(self.ring), np.zeros_like(self.ring_ts)
        ring[:held], ring_ts[:held] = (
            self.ring[self.pos - held : self.pos],
            self.ring_ts[self.pos - held : self.pos],
        )
        return {
            **{name: getattr(self, name) for name in self.SAVED},
            "pos": held,
            "ring": ring,
            "ring_ts": ring_ts,
            "pending_ts": np.array([ts for ts, _ in self.pending], np.int64),
            "pending": (
                np.array([row for _, row in self.pending], np.float32)
                if self.pending
                else np.zeros((0, self.ring.shape[1]), np.float32)
            ),
        }

    def load(self, saved: dict[str, Any]) -> None:
        for name in self.SAVED:
            setattr(self, name, saved[name])
        self.ring[:], self.ring_ts[:] = saved["ring"], saved["ring_ts"]
        self.pending = sorted(
            zip((int(ts) for ts in saved["pending_ts"]), np.asarray(saved["pending"]).tolist())
        )
        self.pending_ts = {ts for ts, _ in self.pending}


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
        self.keep_released = (
            False  # hand out the released readings with each batch (for an archive)
        )
        self.retune(stride, grace_ms, max_gap_ms)
        self._assets: dict[str, _Asset] = {}

    def retune(self, stride: int, grace_ms: int = 0, max_gap_ms: int | None = None) -> None:
        """New stride and time rules from the next reading on; buffers and windows carry on."""
        if stride < 1 or grace_ms < 0 or (max_gap_ms is not None and max_gap_ms < 1):
            raise ValueError(
                "stride must be at least 1, grace at least 0 and the gap limit at least 1 ms"
            )
        self.stride, self.grace_ms, self.max_gap_ms = stride, grace_ms, max_gap_ms

    def assets(self) -> list[str]:
        return list(self._assets)

    def held(self) -> tuple[int, int]:
        """Assets held, and the bytes of their ring buffers (readings and times)."""
        return len(self._assets), len(self._assets) * 2 * self.window * (4 * len(self.channels) + 8)

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
            raise ValueError(
                f"saved buffers of {asset_id!r} do not fit window {self.window} × {len(self.channels)} channels"
            )
        st = self._assets[asset_id] = _Asset(self.window, len(self.channels))
        st.load(saved)

    def add(self, readings: Iterable[Reading], now: float = 0.0) -> WindowBatch:
        """Take a batch of readings (arriving at clock time ``now``); return the windows that became ready."""
        out = Collector(self.window, len(self.channels), self.keep_released)
        touched: dict[str, _Asset] = {}
        assets, channels, window, width = (
            self._assets,
            self.channels,
            self.window,
            len(self.channels),
        )
        for r in readings:
            st = assets.get(r.asset_id)
            if st is None:
                st = assets[r.asset_id] = _Asset(window, width)
            ts = r.ts_ms
            newest = st.newest_ts
            if newest is not None and ts <= newest and self._misplaced(st, r, out.batch):
                continue
            values = r.values
            pending = st.pending
            if not pending or ts > pending[-1][0]:  # in order: the common case
                pending.append((ts, [values[c] for c in channels]))
            else:
                bisect.insort(pending, (ts, [values[c] for c in channels]), key=_ts_of)
            st.pending_ts.add(ts)
            if newest is None or ts > newest:
                st.newest_ts = ts
            st.seen_at = now
            touched[r.asset_id] = st
        for asset_id, st in touched.items():
            self._release(asset_id, st, st.newest_ts - self.grace_ms, out)
        out.batch.touched.update(touched)
        return out.finish()

    def flush(self, quiet_since: float | None = None) -> WindowBatch:
        """Release every reading still waiting for its grace period (at shutdown or end of file);
        with ``quiet_since``, only those of assets that received nothing after that clock time."""
        out = Collector(self.window, len(self.channels), self.keep_released)
        for asset_id, st in self._assets.items():
            if st.pending and (quiet_since is None or st.seen_at <= quiet_since):
                self._release(asset_id, st, st.pending[-1][0], out)
                out.batch.touched.add(asset_id)
        return out.finish()

    def waiting(self) -> int:
        """Readings held back for their grace period, over all assets."""
        return sum(len(st.pending) for st in self._assets.values())

    def _misplaced(self, st: _Asset, r: Reading, batch: WindowBatch) -> bool:
        """Whether a reading not newer than the asset's newest is a duplicate or late (and so set aside)."""
        if r.ts_ms in st.pending_ts or r.ts_ms == st.last_ts or self._in_ring(st, r.ts_ms):
            batch.duplicates.append(r)
        elif r.ts_ms < st.newest_ts - self.grace_ms or (
            st.last_ts is not None and r.ts_ms < st.last_ts
        ):
            batch.late.append(r)
        else:
            return False
        return True

    def _in_ring(self, st: _Asset, ts: int) -> bool:
        n = min(st.filled, self.window)
        return bool(n and (st.ring_ts[st.pos - n : st.pos] == ts).any())

    def _release(self, asset_id: str, st: _Asset, upto: int, out: Collector) -> None:
        """Move the asset's waiting readings up to event time ``upto`` into its ring, a gap-free run
        at a time, and emit the windows they complete (a few array operations per asset and poll)."""
        pending = st.pending
        if not pending or pending[0][0] > upto:
            return
        cut = (
            len(pending)
            if pending[-1][0] <= upto
            else bisect.bisect_right(pending, upto, key=_ts_of)
        )
        taken = pending[:cut]
        del pending[:cut]
        times = [t for t, _ in taken]
        st.pending_ts.difference_update(times)
        rows = np.array([row for _, row in taken], np.float32).reshape(cut, len(self.channels))
        ts = np.array(times, np.int64)
        out.batch.released += cut
        if out.released is not None:
            out.released.append((asset_id, ts, rows))
        a, gap_ms = 0, self.max_gap_ms
        if gap_ms is not None:
            last = st.last_ts
            for i, t in enumerate(times):
                if last is not None and t - last > gap_ms:
                    if i > a:
                        self._append(asset_id, st, ts[a:i], rows[a:i], out)
                    if st.filled < self.window:
                        out.batch.windowless.append(Windowless(asset_id, st.filled, t - last))
                    st.filled = st.since_emit = 0
                    out.batch.gaps += 1
                    a = i
                last = t
        self._append(asset_id, st, ts[a:], rows[a:], out)

    def _append(
        self, asset_id: str, st: _Asset, ts: np.ndarray, rows: np.ndarray, out: Collector
    ) -> None:
        """Append gap-free readings in time order to the asset's ring; emit the first full window,
        then one every ``stride`` readings."""
        w, k = self.window, len(ts)
        held = min(st.filled, w)
        if st.pos + k <= 2 * w:  # room in the ring: the usual case
            buf, buf_ts, base = st.ring, st.ring_ts, st.pos - held
            buf[st.pos : st.pos + k], buf_ts[st.pos : st.pos + k] = rows, ts
        elif held + k <= 2 * w:  # move the history to the front first
            buf, buf_ts, base = st.ring, st.ring_ts, 0
            buf[:held], buf_ts[:held] = buf[st.pos - held : st.pos], buf_ts[st.pos - held : st.pos]
            buf[held : held + k], buf_ts[held : held + k] = rows, ts
        else:  # more readings than the ring holds: work on a copy
            buf = np.concatenate((st.ring[st.pos - held : st.pos], rows))
            buf_ts = np.concatenate((st.ring_ts[st.pos - held : st.pos], ts))
            base = 0
        if st.filled >= w:  # the next window is due when since_emit reaches the stride
            first = max(0, self.stride - st.since_emit - 1)
        else:  # the first window is due when the ring fills
            first = w - st.filled - 1
        if first < k:
            n = (k - 1 - first) // self.stride + 1
            end = base + held + first  # the first window's last row in buf
            rs, cs = buf.strides
            windows = as_strided(
                buf[end - w + 1 :], (n, w, buf.shape[1]), (self.stride * rs, rs, cs)
            ).copy()
            ends = slice(end, end + (n - 1) * self.stride + 1, self.stride)
            starts = slice(end - w + 1, end - w + 1 + (n - 1) * self.stride + 1, self.stride)
            out.add(asset_id, windows, buf_ts[starts].copy(), buf_ts[ends].copy())
            st.since_emit = k - 1 - first - (n - 1) * self.stride
        elif st.filled >= w:
            st.since_emit += k
        top = base + held + k
        if buf is st.ring:
            st.pos = top
        else:
            keep = min(
                top, w
            )  # the newest readings: the next window's history and the duplicate check
            st.ring[:keep], st.ring_ts[:keep] = buf[top - keep : top], buf_ts[top - keep : top]
            st.pos = keep
        st.filled += k
        st.last_ts = int(ts[-1])


def _ts_of(item: tuple[int, list[float]]) -> int:
    return item[0]
