"""Nonparametric dynamic threshold with pruning (Hundman et al., KDD 2018), as a stream.

The threshold is chosen from the recent scores themselves, without assuming their distribution:
among ``eps = mean + z · std`` for ``z`` on a grid, pick the one whose removal of the scores
above it lowers the mean and the spread the most, relative to how many scores and how many
separate runs it cuts off::

    argmax_z  (Δmean / mean + Δstd / std) / (#above + #runs²)

(with at most ``max_runs`` runs and fewer than half the scores above, as in the authors' code).
Pruning then drops weak detections: a run of scores above ``eps`` is only anomalous once its
peak stands at least ``prune`` (a fraction) above the highest score below ``eps``.

On a stream the threshold is re-chosen every ``refit_every`` scores over the last ``history``
ones (the training scores fill the history at first).

>>> rng = np.random.default_rng(2)
>>> t = DynamicThreshold(history=500).fit(rng.normal(1.0, 0.1, 500))
>>> t.update(1.1), any(t.update(3.0) for _ in range(3))
(False, True)
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from sensorwatch.models.thresholds.base import Threshold


def _runs(mask: np.ndarray) -> int:
    """Number of separate runs of True."""
    return int(mask[0]) + int(np.count_nonzero(mask[1:] & ~mask[:-1])) if len(mask) else 0


def choose_epsilon(scores: np.ndarray, z_values: np.ndarray, max_runs: int = 5) -> float:
    """The threshold Hundman et al.'s criterion picks for these scores (``mean + z_max · std``
    when no candidate qualifies).

    >>> s = np.r_[np.zeros(50) + 1.0, 5.0, 5.0, np.zeros(50) + 1.0] + np.tile([0.0, 0.1], 51)
    >>> bool(1.2 < choose_epsilon(s, np.arange(2.0, 10.5, 0.5)) < 5.0)
    True
    """
    mean, std = float(scores.mean()), float(scores.std())
    best, best_eps = -np.inf, mean + z_values[-1] * std
    if std == 0 or mean == 0:
        return best_eps
    for z in z_values:
        eps = mean + z * std
        above = scores > eps
        n_above = int(above.sum())
        if n_above == 0 or n_above >= len(scores) / 2:
            continue
        runs = _runs(above)
        if runs > max_runs:
            continue
        below = scores[~above]
        gain = (mean - below.mean()) / mean + (std - below.std()) / std
        value = gain / (n_above + runs**2)
        if value >= best:
            best, best_eps = value, eps
    return best_eps


class DynamicThreshold(Threshold):
    """Hundman et al.'s dynamic threshold and pruning over a sliding history of scores."""

    method = "dynamic"

    def __init__(
        self,
        history: int = 400,
        z_min: float = 2.0,
        z_max: float = 10.0,
        z_step: float = 0.5,
        prune: float = 0.13,
        max_runs: int = 5,
        refit_every: int = 10,
        scores: list[float] | None = None,
        smooth: int = 1,
    ) -> None:
        super().__init__(smooth)
        self.history, self.prune, self.max_runs, self.refit_every = (
            int(history),
            prune,
            int(max_runs),
            int(refit_every),
        )
        self.z_min, self.z_max, self.z_step = z_min, z_max, z_step
        self._z = np.arange(z_min, z_max + z_step / 2, z_step)
        self.scores: deque[float] = deque(scores or [], maxlen=self.history)
        self.eps: float | None = None
        self.max_normal = 0.0
        self._since = 0
        self._peak = 0.0  # peak of the current run above eps
        if self.scores:
            self._refit()

    STREAM_VARS = (*Threshold.STREAM_VARS, "eps", "max_normal", "_since", "_peak")

    def _fit(self, scores: np.ndarray) -> None:
        self.scores = deque(scores[-self.history :].tolist(), maxlen=self.history)
        self._refit()

    def _refit(self) -> None:
        s = np.asarray(self.scores)
        self.eps = choose_epsilon(s, self._z, self.max_runs)
        below = s[s <= self.eps]
        self.max_normal = float(below.max()) if len(below) else 0.0
        self._since = 0

    def level(self) -> float:
        if self.eps is None:
            raise RuntimeError("threshold used before fit()")
        return self.eps

    def _decide(self, value: float) -> bool:
        level = self.level()
        self.scores.append(value)
        self._since += 1
        if self._since >= self.refit_every:
            self._refit()
        if value <= level:
            self._peak = 0.0
            return False
        self._peak = max(self._peak, value)
        return (self._peak - self.max_normal) / self._peak >= self.prune

    def params(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "z_min": self.z_min,
            "z_max": self.z_max,
            "z_step": self.z_step,
            "prune": self.prune,
            "max_runs": self.max_runs,
            "refit_every": self.refit_every,
            "scores": [float(v) for v in self.scores],
        }
