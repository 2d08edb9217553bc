"""Anomaly likelihood: each asset's scores calibrated against its own recent history, as a stream.

After Ahmad et al. (Neurocomputing 2017), the calibration NAB's detectors use. A raw score says
how unusual a window is for the *model*; whether it is unusual for *this asset lately* is a tail
probability. The log scores (reconstruction errors are skewed and positive; their logarithm is
close to normal) are averaged over the last ``short`` windows, and that average is compared with
the distribution of the same averages over the last ``history`` windows (mean μ, deviation σ)::

    likelihood = 1 − Q((average − μ) / σ)        anomalous when Q(...) < tail

The history starts as the training windows' averages and then takes every window the asset
scores, anomalous ones too: an asset whose level of error moves for good (a new operating point,
a sensor that wore in) is calibrated to it within ``history`` windows instead of alarming for
ever, and one that stays where it was trained keeps the training calibration. Everything is per
asset: each one's copy keeps its own history.

``level`` is the score at which the *next* window would be anomalous, in score units like every
other method's, so plots, the archive and the alarm rules read it the same way.

>>> rng = np.random.default_rng(0)
>>> t = LikelihoodThreshold(history=300).fit(np.exp(rng.normal(0.0, 0.3, 300)))
>>> any(t.update(float(np.exp(rng.normal(0.0, 0.3)))) for _ in range(50))
False
>>> any(t.update(float(np.exp(3.0))) for _ in range(5))
True
"""

from __future__ import annotations

import math
from collections import deque
from statistics import NormalDist
from typing import Any

import numpy as np

from sensorwatch.models.thresholds.base import Threshold

_FLOOR = 1e-12  # scores at or below it count as this (log of zero)
_MIN_SCALE = 1e-3  # a near-constant history would make every later wobble look extreme


class LikelihoodThreshold(Threshold):
    """Tail probability of the recent average log score against the asset's recent history."""

    method = "likelihood"

    def __init__(
        self,
        history: int = 1000,
        short: int = 5,
        tail: float = 1e-4,
        averages: list[float] | None = None,
        recent: list[float] | None = None,
        smooth: int = 1,
    ) -> None:
        super().__init__(smooth)
        if history < 2 or short < 1 or not 0 < tail < 0.5:
            raise ValueError("likelihood takes history ≥ 2, short ≥ 1 and 0 < tail < 0.5")
        self.history, self.short, self.tail = int(history), int(short), float(tail)
        self._z = NormalDist().inv_cdf(1.0 - self.tail)
        self.averages: deque[float] = deque(averages or [], maxlen=self.history)
        self.recent: deque[float] = deque(recent or [], maxlen=max(self.short - 1, 0))

    def _fit(self, scores: np.ndarray) -> None:
        logs = np.log(np.maximum(scores, _FLOOR))
        k = min(self.short, len(logs))
        averages = np.convolve(logs, np.ones(k) / k, mode="valid")
        self.averages = deque(averages[-self.history :].tolist(), maxlen=self.history)
        keep = self.recent.maxlen or 0
        self.recent = deque(logs[len(logs) - keep :].tolist() if keep else [], maxlen=keep)

    def _spread(self) -> tuple[float, float]:
        if not self.averages:
            raise RuntimeError("threshold used before fit()")
        a = np.fromiter(self.averages, float, len(self.averages))
        return float(a.mean()), max(float(a.std()), _MIN_SCALE)

    def level(self) -> float:
        """The score whose log, averaged with the last ``short − 1`` ones, reaches the tail."""
        mean, scale = self._spread()
        k = len(self.recent) + 1
        needed = k * (mean + self._z * scale) - math.fsum(self.recent)
        return math.exp(min(needed, 700.0))

    def _decide(self, value: float) -> bool:
        mean, scale = self._spread()
        average = self._average(value)
        self.averages.append(average)
        if self.recent.maxlen:
            self.recent.append(math.log(max(value, _FLOOR)))
        return average > mean + self._z * scale  # the same as value > level(), without its exp

    def likelihood(self, value: float) -> float:
        """1 − tail probability of ``value`` as the next window's score (without taking it)."""
        mean, scale = self._spread()
        return NormalDist().cdf((self._average(value) - mean) / scale)

    def _average(self, value: float) -> float:
        """The mean log score of the last ``short − 1`` windows and one of score ``value``."""
        return (math.fsum(self.recent) + math.log(max(value, _FLOOR))) / (len(self.recent) + 1)

    def params(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "short": self.short,
            "tail": self.tail,
            "averages": [float(v) for v in self.averages],
            "recent": [float(v) for v in self.recent],
        }
