"""An alarm in context, kept on the poll thread for the review sink: each asset's recent readings,
window scores and the threshold each score met, and the ``Flagger`` that hands every anomaly event
over with its alarm's worst window and that context.

A reviewer judges an alarm by what came before and after it, so a cleared alarm is held back until
its asset has sent ``after`` readings past the clearing (or ``hold_s`` seconds have passed, or
the sink closes); an opened one goes at once, with what came before. The history is bounded: the
last ``keep`` readings and windows of each asset (a long alarm shows its latest part).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sensorwatch.schemas.records import AnomalyEvent

if TYPE_CHECKING:
    from sensorwatch.models.detector import Detector
    from sensorwatch.pipeline.stream.processor import Decisions
    from sensorwatch.pipeline.stream.step import StepOutput

BEFORE_WINDOWS = 4  # readings kept before an alarm: this many window lengths
AFTER_WINDOWS = 2  # and after it clears
KEEP_WINDOWS = 16  # the most an asset's history holds


@dataclass
class Context:
    """An asset's readings and scores around an alarm: reading times (n,) and rows (n, C); window
    end times, scores and the thresholds they met (m,)."""

    ts_ms: np.ndarray
    rows: np.ndarray
    score_ms: np.ndarray
    scores: np.ndarray
    levels: np.ndarray


@dataclass
class Flagged:
    """An event as the poll thread hands it over: with the detector that flagged it, the alarm's
    worst window (raw readings, per-channel errors, first and last reading's time) and its
    context, when this replica saw them."""

    event: AnomalyEvent
    detector: Detector
    window: np.ndarray | None = None
    errors: np.ndarray | None = None
    worst_ms: tuple[int, int] | None = None
    context: Context | None = None


class History:
    """One asset's latest readings and window scores, at most ``keep`` of each."""

    def __init__(self, keep: int, channels: int) -> None:
        self.keep = keep
        self.ts = np.zeros(0, np.int64)
        self.rows = np.zeros((0, channels), np.float32)
        self.ends = np.zeros(0, np.int64)
        self.scores = np.zeros(0, np.float64)
        self.levels = np.zeros(0, np.float64)

    def add(
        self,
        windows: np.ndarray,
        start: np.ndarray,
        end: np.ndarray,
        scores: np.ndarray,
        levels: np.ndarray,
    ) -> None:
        """An asset's consecutive windows of one batch (k, W, C): the readings not seen yet (their
        times spread evenly over each window) and each window's score and threshold."""
        w = windows.shape[1]
        times = start[:, None] + (end - start)[:, None] * np.linspace(0.0, 1.0, w)[None, :]
        times = np.rint(times).astype(np.int64)
        last = self.ts[-1] if len(self.ts) else np.iinfo(np.int64).min
        before = np.concatenate([[last], end[:-1]]).astype(np.int64)
        new = times > before[:, None]
        self.ts = np.concatenate([self.ts, times[new]])
        self.rows = np.concatenate([self.rows, windows[new].astype(np.float32)])
        self.ends = np.concatenate([self.ends, end.astype(np.int64)])
        self.scores = np.concatenate([self.scores, scores.astype(np.float64)])
        self.levels = np.concatenate([self.levels, levels.astype(np.float64)])

    def trim(self) -> None:
        """Down to the latest ``keep`` (a batch is held whole until its events have their context)."""
        if len(self.ts) > self.keep or len(self.ends) > self.keep:
            self.ts, self.rows = self.ts[-self.keep :], self.rows[-self.keep :]
            self.ends, self.scores = self.ends[-self.keep :], self.scores[-self.keep :]
            self.levels = self.levels[-self.keep :]

    def around(self, start_ms: int, end_ms: int, before: int, after: int) -> Context:
        """What it holds from ``before`` readings before ``start_ms`` to ``after`` after ``end_ms``."""
        steps = np.diff(self.ts[-64:])
        cadence = float(np.median(steps)) if len(steps) else 1000.0
        lo, hi = start_ms - before * cadence, end_ms + after * cadence
        rows = (self.ts >= lo) & (self.ts <= hi)
        wins = (self.ends >= lo) & (self.ends <= hi)
        return Context(
            self.ts[rows], self.rows[rows], self.ends[wins], self.scores[wins], self.levels[wins]
        )


class Flagger:
    """Events of a step with the worst window of their alarm and its context: the one place that
    sees every window (the poll thread), keeping one window per open alarm and a short history
    per asset."""

    def __init__(self, hold: bool = True, hold_s: float = 60.0) -> None:
        self.hold, self.hold_s = hold, hold_s
        self._worst: dict[str, tuple[float, np.ndarray, np.ndarray | None, int, int]] = {}
        self._history: dict[str, History] = {}
        self._held: dict[str, tuple[Flagged, float]] = {}  # cleared, waiting for what follows
        self._w = 0  # window length, from the first window seen

    def __call__(self, out: StepOutput, detector: Detector) -> list[Flagged]:
        decisions = out.decisions
        touched = self._remember(out) if len(decisions.windows) else []
        flagged = self._flagged(out, detector) if out.events or decisions.alarm.any() else []
        flagged += self._released()
        for asset in touched:  # a batch is kept whole until its events have their context
            self._history[asset].trim()
        return flagged

    def _flagged(self, out: StepOutput, detector: Detector) -> list[Flagged]:
        decisions = out.decisions
        batch = decisions.windows
        flagged: list[Flagged] = []
        # Walk the windows in order, so each event gets the worst window of its own alarm even when
        # one poll holds several alarms of an asset: an event is told at the window that opened or
        # closed its alarm (whose end is the event's end).
        at: dict[tuple[str, int], list[AnomalyEvent]] = {}
        for event in out.events:
            at.setdefault((event.asset_id, event.end_ms), []).append(event)
        marks = decisions.alarm.copy()
        for _, end in at:
            marks |= np.asarray(batch.end_ms) == end
        for i in np.flatnonzero(marks):
            asset = batch.asset_ids[i]
            if decisions.alarm[i]:
                self._keep(asset, float(decisions.scores[i]), i, decisions)
            for e in at.pop((asset, int(batch.end_ms[i])), ()):
                flagged += self._flag(e, detector)
        for events in at.values():  # none expected
            for e in events:
                flagged += self._flag(e, detector)
        return flagged

    def release(self) -> list[Flagged]:
        """Every cleared alarm still held, with the context there is (the sink is closing)."""
        held, self._held = self._held, {}
        return [self._with_context(item) for item, _ in held.values()]

    # --- inside ---------------------------------------------------------------------------------

    def _remember(self, out: StepOutput) -> list[str]:
        decisions = out.decisions
        batch = decisions.windows
        ids, n = batch.asset_ids, len(batch)
        self._w = self._w or int(batch.windows.shape[1])
        keep = KEEP_WINDOWS * self._w
        a, touched = 0, []
        for b in range(1, n + 1):  # an asset's windows of one batch are consecutive
            if b < n and ids[b] == ids[a]:
                continue
            history = self._history.get(ids[a])
            if history is None:
                history = self._history[ids[a]] = History(keep, batch.windows.shape[2])
            history.add(
                batch.windows[a:b],
                np.asarray(batch.start_ms[a:b]),
                np.asarray(batch.end_ms[a:b]),
                np.asarray(decisions.scores[a:b]),
                np.asarray(decisions.levels[a:b]),
            )
            touched.append(ids[a])
            a = b
        return touched

    def _keep(self, asset: str, score: float, i: int, decisions: Decisions) -> None:
        worst = self._worst.get(asset)
        if worst is None or score > worst[0]:
            batch = decisions.windows
            errors = decisions.errors[i].copy() if decisions.errors is not None else None
            self._worst[asset] = (
                score,
                batch.windows[i].copy(),
                errors,
                int(batch.start_ms[i]),
                int(batch.end_ms[i]),
            )

    def _flag(self, event: AnomalyEvent, detector: Detector) -> list[Flagged]:
        asset = event.asset_id
        cleared = event.kind == "cleared"
        worst = self._worst.pop(asset, None) if cleared else self._worst.get(asset)
        earlier = self._held.pop(asset, None)  # a new alarm of the asset: the last one goes now
        out = [self._with_context(earlier[0])] if earlier else []
        item = Flagged(event, detector)
        if worst is not None:
            item.window, item.errors, item.worst_ms = worst[1], worst[2], (worst[3], worst[4])
        if cleared and self.hold:
            self._held[asset] = (item, time.monotonic())
            return out
        return [*out, self._with_context(item)]

    def _with_context(self, item: Flagged) -> Flagged:
        history = self._history.get(item.event.asset_id)
        if history is not None and len(history.ts):
            e, w = item.event, self._w
            item.context = history.around(
                e.start_ms, e.end_ms, BEFORE_WINDOWS * w, AFTER_WINDOWS * w
            )
        return item

    def _released(self) -> list[Flagged]:
        """Cleared alarms whose asset has sent enough readings since, or held too long."""
        now, done = time.monotonic(), []
        for asset, (item, since) in list(self._held.items()):
            history = self._history.get(asset)
            after = int(np.sum(history.ts > item.event.end_ms)) if history is not None else 0
            if after >= AFTER_WINDOWS * self._w or now - since >= self.hold_s:
                del self._held[asset]
                done.append(self._with_context(item))
        return done
