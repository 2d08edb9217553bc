"""The reference threshold: a quantile of the training scores times a margin (the published
LSTM-AE recipe's), which can follow a lasting rise of an asset's typical score (``follow``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sensorwatch.models.thresholds.base import Threshold

_HUGE = 3e38  # a larger (or overflowing) score counts as this in the typical score (float32)


class ReferenceThreshold(Threshold):
    """The published LSTM-AE reference: a quantile of the training error times a margin.

    With ``follow`` (a number of windows, 0 = off) the threshold also follows a lasting rise of
    the asset's *typical* score. Fitting measures the training scores' median (``base``) and how
    far their 99th percentile (or the fitted threshold, where it is lower) sits above it
    (``spread``, a ratio: 1 in 100 normal windows is further above their typical score). In the
    stream, the median score of each block of ``follow // 20`` windows is kept for the last 20
    blocks (started at ``base``; of a block longer than 100 windows, every k-th score is kept, 100
    at most), and the typical score is the median of those block medians. The threshold is the
    larger of the fitted one and the typical score times ``spread``. A version's span covers at
    least a day of its readings (``follow_span``).

    A fault shorter than half of ``follow`` windows leaves the typical score where it was and is
    judged by the fitted threshold for its whole length. An asset whose scores stay raised for
    longer (a new operating point, a channel that settled at another level) is judged against its
    new level instead of alarming for ever, and a fault on top of that level still counts.

    >>> t = ReferenceThreshold(quantile=0.99, factor=2.0, follow=200).fit(np.r_[np.ones(98), 3, 3])
    >>> t.level(), t.spread, [t.update(7.0) for _ in range(3)]
    (6.0, 3.0, [True, True, True])
    >>> for _ in range(200): _ = t.update(7.0)
    >>> t.level(), t.update(7.0), t.update(22.0)
    (21.0, False, True)
    """

    method = "reference"
    STREAM_VARS = (
        "_acc",
        "last",
        "_medians",
        "_block",
        "_filled",
        "_counted",
        "_blocks_seen",
        "_typical",
    )
    BLOCKS = 20  # block medians the typical score is the median of
    SAMPLES = 100  # scores kept of each block, evenly spaced: bounded state whatever the span
    SPREAD_QUANTILE = 0.99  # where the training scores' spread above their median is read

    def __init__(
        self,
        quantile: float = 0.99,
        factor: float = 1.5,
        value: float | None = None,
        follow: int = 0,
        base: float | None = None,
        spread: float | None = None,
        smooth: int = 1,
    ) -> None:
        super().__init__(smooth)
        if not 0 < quantile <= 1 or factor <= 0:
            raise ValueError("reference takes 0 < quantile ≤ 1 and factor > 0")
        if follow < 0:
            raise ValueError("reference takes follow ≥ 0 (windows; 0 = off)")
        self.quantile, self.factor, self.value = quantile, factor, value
        self.follow, self.base, self.spread = int(follow), base, spread
        # Windows per block, and every how many of them a score is kept (fixed by ``follow``).
        self._size = max(1, self.follow // self.BLOCKS)
        self._every = -(-self._size // self.SAMPLES)
        # Allocated at an asset's first score, as float32: about 0.5 KB of state per asset.
        self._medians: np.ndarray | None = None  # the last BLOCKS block medians, started at base
        self._block: np.ndarray | None = None  # the current block's kept scores, ``_filled``
        self._filled = 0
        self._counted = 0  # scores of the current block so far, kept or not
        self._blocks_seen = 0
        self._typical = base

    def _fit(self, scores: np.ndarray) -> None:
        self.value = float(np.quantile(scores, self.quantile) * self.factor)
        self.base = self._typical = float(np.median(scores))
        top = min(float(np.quantile(scores, self.SPREAD_QUANTILE)), self.value)
        self.spread = top / self.base if self.base > 0 else 1.0

    def level(self) -> float:
        if self.value is None:
            raise RuntimeError("threshold used before fit()")
        if not self._following() or self._typical is None or self.spread is None:
            return self.value
        return max(self.value, self._typical * self.spread)

    def _following(self) -> bool:
        return bool(self.follow) and self.base is not None and self.base > 0

    def _decide(self, value: float) -> bool:
        hit = bool(value > self.level())
        if self._following() and not math.isnan(value):
            if self._block is None or self._medians is None:
                self._block = np.zeros(-(-self._size // self._every), np.float32)
                self._medians = np.full(self.BLOCKS, min(self.base or 0.0, _HUGE), np.float32)
            if self._counted % self._every == 0:
                self._block[self._filled] = min(value, _HUGE)
                self._filled += 1
            self._counted += 1
            if self._counted == self._size:
                kept = self._block[: self._filled]
                self._medians[self._blocks_seen % self.BLOCKS] = np.median(kept)
                self._blocks_seen += 1
                self._filled = self._counted = 0
                self._typical = float(np.median(self._medians))
        return hit

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "quantile": self.quantile,
            "factor": self.factor,
            "value": self.value,
        }
        if self.follow:  # versions fitted without it keep the dictionary they had
            out.update(follow=self.follow, base=self.base, spread=self.spread)
        return out


# The least span a version's threshold follows over: a level that has stood for less than half a
# day is never taken in, whatever the cadence (at one reading a minute 2,000 windows are more).
FOLLOW_AT_LEAST_MS = 86_400_000


def follow_span(follow: int, interval_ms: int, stride: int = 1) -> int:
    """``follow`` windows, lengthened to cover at least ``FOLLOW_AT_LEAST_MS`` of readings every
    ``interval_ms`` scored every ``stride`` (0 stays off).

    >>> follow_span(2000, 60_000), follow_span(2000, 1000), follow_span(2000, 1000, 5), follow_span(0, 1000)
    (2000, 86400, 17280, 0)
    """
    if follow <= 0:
        return 0
    return max(int(follow), -(-FOLLOW_AT_LEAST_MS // max(1, interval_ms * stride)))
