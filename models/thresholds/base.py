"""The threshold interface every method implements, and the score smoothing they share."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np


def ewma(scores: np.ndarray, span: int) -> np.ndarray:
    """Exponentially weighted running mean with ``alpha = 2 / (span + 1)``, started at the first score.

    >>> ewma(np.array([0.0, 3.0, 3.0]), 2).round(3).tolist()
    [0.0, 2.0, 2.667]
    """
    scores = np.asarray(scores, float)
    if span <= 1 or len(scores) == 0:
        return scores.copy()
    alpha, out, acc = 2.0 / (span + 1), np.empty(len(scores)), float(scores[0])
    for i, s in enumerate(scores):
        acc += alpha * (s - acc)
        out[i] = acc
    return out


class Threshold:
    """Base class: ``fit`` on normal scores, then ``update`` one score at a time.

    Subclasses implement ``_fit`` (on smoothed scores), ``level`` and ``params``, and ``_decide``
    when they adapt.
    """

    method: ClassVar[str] = ""
    # Stream variables that ``to_dict`` does not carry, kept by ``export`` so a restored copy
    # decides exactly as the one it replaces would have.
    STREAM_VARS: ClassVar[tuple[str, ...]] = ("_acc", "last")

    def __init__(self, smooth: int = 1) -> None:
        self.smooth = int(smooth)
        self._acc: float | None = None
        self.last = 0.0  # the smoothed value of the last score ``update`` classified

    def fit(self, scores: np.ndarray) -> Threshold:
        """Fit on scores of normal data, in time order (smoothing runs over them)."""
        scores = np.asarray(scores, float)
        if scores.size == 0:
            raise ValueError("cannot fit a threshold on no scores")
        self._fit(ewma(scores, self.smooth))
        return self

    def _fit(self, scores: np.ndarray) -> None:
        raise NotImplementedError

    def level(self) -> float:
        """The current threshold value (smoothed scores above it are anomalous)."""
        raise NotImplementedError

    def smoothed(self, score: float) -> float:
        """Advance the smoother by one score and return the smoothed value."""
        if self.smooth <= 1:
            return float(score)
        self._acc = (
            float(score)
            if self._acc is None
            else self._acc + 2.0 / (self.smooth + 1) * (score - self._acc)
        )
        return self._acc

    def update(self, score: float) -> bool:
        """Classify one score (True = anomalous) and adapt, for methods that adapt."""
        self.last = self.smoothed(score)
        return self._decide(self.last)

    def _decide(self, value: float) -> bool:
        return bool(value > self.level())

    def params(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "smooth": self.smooth, **self.params()}

    def export(self) -> dict[str, Any]:
        """Parameters and stream state: ``load_threshold`` builds the same threshold back."""
        return {
            "params": self.to_dict(),
            "vars": {name: getattr(self, name) for name in self.STREAM_VARS},
        }
