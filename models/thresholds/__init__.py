"""Deciding: thresholds that turn a window's score into anomalous or not.

Scoring and deciding are separate (as in river): the compiled forward pass gives a score per
window, a ``Threshold`` classifies it, and ``AlarmRules`` (``sensorwatch.models.alarms``) turn window
decisions into alarms.

Every threshold is fitted on scores of normal data, then used as a stream: ``update(score)``
classifies one score and may adapt. Each asset gets its own copy (``threshold_from_dict``): the
fitted parameters travel in ``to_dict()``, the stream state starts afresh. Every method can
smooth the scores first (``smooth``: span of an exponentially weighted mean, 1 = off), as
Hundman et al. do before thresholding, so a single noisy window does not raise an alarm.

Methods (``METHODS``):

- ``reference``: a quantile of the training scores times a margin (the published LSTM-AE recipe);
- ``zscore``: scores calibrated to a z-like scale (robust location and scale of log scores);
- ``spot``: streaming peaks-over-threshold (SPOT; Siffer et al., KDD 2017), see ``sensorwatch.models.thresholds.spot``;
- ``dynamic``: nonparametric dynamic threshold with pruning (Hundman et al., KDD 2018), see
  ``sensorwatch.models.thresholds.dynamic``;
- ``likelihood``: anomaly likelihood, each asset's scores calibrated against its own recent
  history (Ahmad et al., 2017), see ``sensorwatch.models.thresholds.likelihood``.

>>> t = ReferenceThreshold().fit(np.arange(101, dtype=float))
>>> round(t.level(), 1), t.update(140.0), t.update(151.0)
(148.5, False, True)
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from sensorwatch.models.thresholds.base import Threshold, ewma
from sensorwatch.models.thresholds.dynamic import DynamicThreshold
from sensorwatch.models.thresholds.likelihood import LikelihoodThreshold
from sensorwatch.models.thresholds.spot import SpotThreshold

_HUGE = 3e38  # a larger (or overflowing) score counts as this in the typical score (float32)

__all__ = [
    "METHODS",
    "DynamicThreshold",
    "LikelihoodThreshold",
    "ReferenceThreshold",
    "SpotThreshold",
    "Threshold",
    "ZScoreThreshold",
    "check_params",
    "ewma",
    "fitting_params",
    "follow_span",
    "make_threshold",
    "threshold_from_dict",
    "tunable_params",
]


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
            size = max(1, self.follow // self.BLOCKS)
            every = -(-size // self.SAMPLES)  # keep every ``every``-th score of a block
            if self._block is None or self._medians is None:
                self._block = np.zeros(-(-size // every), np.float32)
                self._medians = np.full(self.BLOCKS, min(self.base or 0.0, _HUGE), np.float32)
            if self._counted % every == 0:
                self._block[self._filled] = min(value, _HUGE)
                self._filled += 1
            self._counted += 1
            if self._counted == size:
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


class ZScoreThreshold(Threshold):
    """Scores on a z-like scale: ``z = (log s − median) / (1.4826 · MAD)`` of the training log scores.

    Reconstruction errors are skewed and positive; their logarithm is close to normal, and the
    median and MAD ignore the few odd training windows. ``z`` above ``k`` is anomalous, so ``k``
    reads like a number of standard deviations whatever the model's error scale.

    >>> t = ZScoreThreshold(k=3.0).fit(np.exp(np.random.default_rng(0).normal(0.0, 1.0, 2000)))
    >>> round(t.z(float(np.exp(3.0))), 1), t.update(float(np.exp(2.5))), t.update(float(np.exp(3.5)))
    (3.0, False, True)
    """

    method = "zscore"

    def __init__(
        self,
        k: float = 4.0,
        center: float | None = None,
        scale: float | None = None,
        smooth: int = 1,
    ) -> None:
        super().__init__(smooth)
        self.k, self.center, self.scale = k, center, scale

    def _fit(self, scores: np.ndarray) -> None:
        logs = np.log(np.maximum(scores, 1e-12))
        self.center = float(np.median(logs))
        mad = float(np.median(np.abs(logs - self.center))) * 1.4826
        # A near-constant training score would make every later wobble look extreme.
        self.scale = max(mad, float(np.std(logs)), 1e-3)

    def z(self, value: float) -> float:
        """The calibrated score of an (already smoothed) value."""
        if self.center is None or self.scale is None:
            raise RuntimeError("threshold used before fit()")
        return (float(np.log(max(value, 1e-12))) - self.center) / self.scale

    def level(self) -> float:
        if self.center is None or self.scale is None:
            raise RuntimeError("threshold used before fit()")
        return float(np.exp(self.center + self.k * self.scale))

    def params(self) -> dict[str, Any]:
        return {"k": self.k, "center": self.center, "scale": self.scale}


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


def fitting_params(
    method: str, params: Mapping[str, Any], interval_ms: int, stride: int = 1
) -> dict[str, Any]:
    """The parameters a version's threshold is made with: a reference threshold's ``follow``
    lengthened by ``follow_span`` to the version's cadence; the rest as given."""
    if method == "reference" and params.get("follow"):
        return {**params, "follow": follow_span(int(params["follow"]), interval_ms, stride)}
    return dict(params)


METHODS: dict[str, type[Threshold]] = {
    cls.method: cls
    for cls in (
        ReferenceThreshold,
        ZScoreThreshold,
        SpotThreshold,
        DynamicThreshold,
        LikelihoodThreshold,
    )
}


def make_threshold(method: str, **params: Any) -> Threshold:
    """A new, unfitted threshold of the named method.

    >>> make_threshold("zscore", k=3.5).to_dict()["k"]
    3.5
    """
    try:
        cls = METHODS[method]
    except KeyError:
        raise ValueError(
            f"unknown threshold method {method!r}; choose from {', '.join(METHODS)}"
        ) from None
    return cls(**params)


def threshold_from_dict(data: dict[str, Any]) -> Threshold:
    """A fitted threshold from ``Threshold.to_dict()``: a fresh copy with its own stream state."""
    params = {k: v for k, v in data.items() if k != "method"}
    return make_threshold(str(data["method"]), **params)


# Constructor arguments that restore a fitted threshold (``to_dict``): its state, not a setting.
FITTED_STATE: dict[str, tuple[str, ...]] = {
    "reference": ("value", "base", "spread"),
    "zscore": ("center", "scale"),
    "spot": ("t", "peaks", "n", "recent"),
    "dynamic": ("scores",),
    "likelihood": ("averages", "recent"),
}


def tunable_params(method: str) -> tuple[str, ...]:
    """The parameters a recipe may set for ``method``: its constructor's, less the fitted state.

    >>> tunable_params("reference"), tunable_params("zscore")
    (('quantile', 'factor', 'follow', 'smooth'), ('k', 'smooth'))
    """
    if method not in METHODS:
        raise ValueError(f"unknown threshold method {method!r}; choose from {', '.join(METHODS)}")
    state = FITTED_STATE.get(method, ())
    return tuple(p for p in inspect.signature(METHODS[method]).parameters if p not in state)


def check_params(method: str, params: Iterable[str] | Mapping[str, Any]) -> None:
    """Refuse parameter names ``method`` does not take, and (given values) values it refuses,
    before any model is trained.

    >>> check_params("zscore", {"k": 3.0})
    >>> check_params("reference", {"k": 3.0, "factor": 2.0})
    Traceback (most recent call last):
    ValueError: reference takes quantile, factor, follow, smooth; not k
    >>> check_params("reference", {"follow": -1})
    Traceback (most recent call last):
    ValueError: reference takes follow ≥ 0 (windows; 0 = off)
    """
    known = tunable_params(method)
    unknown = [p for p in params if p not in known]
    if unknown:
        raise ValueError(f"{method} takes {', '.join(known)}; not {', '.join(unknown)}")
    if isinstance(params, Mapping):
        try:
            make_threshold(method, **params)
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None
