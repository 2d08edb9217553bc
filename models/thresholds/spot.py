"""Streaming peaks-over-threshold (SPOT, and DSPOT for drifting scores; Siffer et al., KDD 2017).

Extreme value theory says that the excesses of a score over a high enough level ``t`` follow a
generalised Pareto distribution (GPD), whatever the score's own distribution. SPOT fits that
GPD to the excesses of the training scores, and places the threshold ``z_q`` where the
probability of a normal score exceeding it is ``q``. On the stream, a score above ``z_q`` is
anomalous and leaves the model alone; a score between ``t`` and ``z_q`` is a new excess and the
GPD is refitted; any other score only counts. DSPOT (``depth`` > 0) applies the same to the
score minus the mean of the last ``depth`` normal scores, so a slow drift does not read as anomalous.

The GPD is fitted by maximum likelihood with Grimshaw's reduction to one variable, searched on a
grid (robust with the few excesses a short training part gives).

>>> rng = np.random.default_rng(1)
>>> t = SpotThreshold(q=1e-3).fit(rng.exponential(1.0, 5000))
>>> 5.5 < t.level() < 8.5, t.update(3.0), t.update(30.0)
(True, False, True)
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from sensorwatch.models.thresholds.base import Threshold


def fit_gpd(excesses: np.ndarray) -> tuple[float, float]:
    """Shape ``gamma`` and scale ``sigma`` of a GPD fitted to positive excesses.

    >>> g, s = fit_gpd(np.random.default_rng(0).exponential(2.0, 4000))
    >>> abs(g) < 0.05, round(s, 1)
    (True, 2.0)
    """
    y = np.asarray(excesses, float)
    y = y[y > 0]
    if len(y) < 3 or np.ptp(y) == 0:
        return 0.0, float(y.mean()) if len(y) else 1.0
    mean, ymin, ymax = y.mean(), y.min(), y.max()
    # Grimshaw: for x = gamma / sigma the likelihood is a function of x alone.
    lo = -1.0 / ymax
    hi = 2.0 * (mean - ymin) / max(ymin, 1e-12 * ymax) ** 2
    negative = lo * (1 - np.geomspace(1e-4, 1.0, 60))
    positive = np.geomspace(1e-8 / ymax, max(hi, 1e-6 / ymax), 60)
    coarse = np.sort(np.concatenate([negative[negative < 0], positive]))
    xs, lik, gammas = _profile(y, coarse)
    best = int(np.argmax(lik))
    # A finer grid between the best point's neighbours.
    xs, lik, gammas = _profile(
        y, np.linspace(coarse[max(best - 1, 0)], coarse[min(best + 1, len(coarse) - 1)], 80)
    )
    best = int(np.argmax(lik))
    exp_lik = -len(y) * np.log(mean) - len(y)  # gamma = 0: the exponential distribution
    if exp_lik >= lik[best]:
        return 0.0, float(mean)
    return float(gammas[best]), float(gammas[best] / xs[best])


def _profile(y: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Profile log-likelihood of the GPD at each ``x = gamma / sigma``, and the matching gammas."""
    xs = xs[xs != 0]
    logs = np.log1p(np.outer(xs, y))
    gammas = logs.mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        lik = -len(y) * np.log(gammas / xs) - len(y) * (1 + gammas)
    # Below gamma = -1/2 the likelihood grows without bound towards the largest excess (the
    # maximum-likelihood estimator is not regular there), so those candidates are left out.
    return xs, np.where(np.isfinite(lik) & (gammas >= -0.5), lik, -np.inf), gammas


def gpd_quantile(t: float, gamma: float, sigma: float, q: float, n: int, n_peaks: int) -> float:
    """The level exceeded with probability ``q``, from the excesses over ``t`` (``n_peaks`` of ``n``)."""
    r = q * n / max(n_peaks, 1)
    if abs(gamma) < 1e-9:
        return t - sigma * float(np.log(r))
    return t + sigma / gamma * (r ** (-gamma) - 1)


class SpotThreshold(Threshold):
    """SPOT (``depth=0``) or DSPOT (``depth`` > 0) on the window scores."""

    method = "spot"
    # z is refitted only when a new peak arrives, while n counts every normal score.
    STREAM_VARS = (*Threshold.STREAM_VARS, "z")

    def __init__(
        self,
        q: float = 1e-3,
        level: float = 0.98,
        depth: int = 0,
        max_peaks: int = 2000,
        t: float | None = None,
        peaks: list[float] | None = None,
        n: int = 0,
        recent: list[float] | None = None,
        smooth: int = 1,
    ) -> None:
        super().__init__(smooth)
        self.q, self.init_level, self.depth, self.max_peaks = q, level, int(depth), int(max_peaks)
        self.t, self.n = t, int(n)
        # Only the newest excesses are kept, so a service running for months stays bounded.
        self.peaks: deque[float] = deque(peaks or [], maxlen=self.max_peaks)
        self.recent: deque[float] = deque(recent or [], maxlen=max(self.depth, 1))
        self.z: float | None = None
        if self.t is not None:
            self._refit()

    def _drift(self) -> float:
        return float(np.mean(self.recent)) if self.depth and self.recent else 0.0

    def _fit(self, scores: np.ndarray) -> None:
        x = scores
        if self.depth:
            if len(scores) <= self.depth:
                raise ValueError(f"DSPOT needs more than depth={self.depth} training scores")
            means = np.convolve(scores, np.ones(self.depth) / self.depth, "valid")[:-1]
            x = scores[self.depth :] - means
            self.recent = deque(scores[-self.depth :].tolist(), maxlen=self.depth)
        self.t = float(np.quantile(x, self.init_level))
        self.peaks = deque((x[x > self.t] - self.t).tolist(), maxlen=self.max_peaks)
        self.n = len(x)
        self._refit()

    def _refit(self) -> None:
        assert self.t is not None  # set by fit() or restored with the state, before any refit
        gamma, sigma = fit_gpd(np.asarray(self.peaks))
        self.z = gpd_quantile(self.t, gamma, sigma, self.q, self.n, len(self.peaks))

    def level(self) -> float:
        if self.z is None:
            raise RuntimeError("threshold used before fit()")
        return self.z + self._drift()

    def _decide(self, value: float) -> bool:
        x = value - self._drift()
        if x > self.level() - self._drift():
            return True
        self.n += 1
        assert self.t is not None  # level() above has checked the threshold is fitted
        if x > self.t:
            self.peaks.append(x - self.t)
            self._refit()
        if self.depth:
            self.recent.append(value)
        return False

    def params(self) -> dict[str, Any]:
        return {
            "q": self.q,
            "level": self.init_level,
            "depth": self.depth,
            "max_peaks": self.max_peaks,
            "t": self.t,
            "peaks": [float(p) for p in self.peaks],
            "n": self.n,
            "recent": [float(v) for v in self.recent] if self.depth else [],
        }
