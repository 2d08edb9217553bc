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

- ``reference``: a quantile of the training scores times a margin (the published LSTM-AE recipe),
  which can follow a lasting rise of the typical score, see ``sensorwatch.models.thresholds.reference``;
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
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from sensorwatch.models.thresholds.base import Threshold, ewma
from sensorwatch.models.thresholds.dynamic import DynamicThreshold
from sensorwatch.models.thresholds.likelihood import LikelihoodThreshold
from sensorwatch.models.thresholds.reference import ReferenceThreshold, follow_span
from sensorwatch.models.thresholds.spot import SpotThreshold

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
