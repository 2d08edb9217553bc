"""Point-wise figures of 0/1 decisions against 0/1 labels, **without** point adjustment (a labelled
interval counts each of its points, not all of them once one is hit): precision, recall and F1; the
event recall (labelled intervals with at least one flagged point); and false alarms per 10,000
readings (runs of flagged points that touch no labelled interval). Tallies add up, so counts are
pooled before any rate is taken."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sensorwatch.models.metrics import PointCounts, point_counts, runs


@dataclass(frozen=True)
class Tally:
    """One machine (or many, added) under one method: point counts and events."""

    counts: PointCounts = PointCounts()
    events: int = 0
    found: int = 0
    false_alarms: int = 0
    readings: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.counts + other.counts,
            self.events + other.events,
            self.found + other.found,
            self.false_alarms + other.false_alarms,
            self.readings + other.readings,
        )

    @property
    def precision(self) -> float:
        c = self.counts
        return c.tp / (c.tp + c.fp) if c.tp + c.fp else 0.0

    @property
    def recall(self) -> float:
        c = self.counts
        return c.tp / (c.tp + c.fn) if c.tp + c.fn else float("nan")

    @property
    def f1(self) -> float:
        c = self.counts
        return c.tp / (c.tp + (c.fp + c.fn) / 2) if c.tp + c.fp + c.fn else float("nan")

    @property
    def event_recall(self) -> float:
        return self.found / self.events if self.events else float("nan")

    @property
    def false_alarms_per_10k(self) -> float:
        return 1e4 * self.false_alarms / max(self.readings, 1)


def tally(truth: np.ndarray, pred: np.ndarray) -> Tally:
    """Point counts, events found and false alarms of ``pred`` against ``truth`` (0/1 per row).

    >>> t = tally(np.array([0, 1, 1, 0, 0, 0]), np.array([0, 0, 1, 0, 1, 1]))
    >>> (t.counts.tp, t.events, t.found, t.false_alarms)
    (1, 1, 1, 1)
    """
    truth, pred = np.asarray(truth, bool), np.asarray(pred, bool)
    events = runs(truth)
    found = sum(1 for a, b in events if pred[a : b + 1].any())
    false = sum(1 for a, b in runs(pred) if not truth[a : b + 1].any())
    return Tally(point_counts(truth, pred), len(events), found, false, len(truth))
