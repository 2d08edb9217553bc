"""Deciding: thresholds that turn a window's score into anomalous or not, and the alarm rules.

Scoring and deciding are separate (as in river): ``models.scoring`` gives a score per window,
a ``Threshold`` classifies it, and ``AlarmRules`` turn window decisions into alarms.

Every threshold is fitted on scores of normal data, then used as a stream: ``update(score)``
classifies one score and may adapt. Each asset gets its own copy (``threshold_from_dict``).

>>> t = ReferenceThreshold().fit(np.arange(101, dtype=float))
>>> round(t.level(), 1), t.update(140.0), t.update(151.0)
(148.5, False, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


class Threshold:
    """Base class: fit on normal scores, then ``update`` one score at a time."""

    method: ClassVar[str] = ""

    def fit(self, scores: np.ndarray) -> Threshold:
        raise NotImplementedError

    def level(self) -> float:
        """The current threshold value (scores above it are anomalous)."""
        raise NotImplementedError

    def update(self, score: float) -> bool:
        """Classify one score (True = anomalous) and adapt, for methods that adapt."""
        return bool(score > self.level())

    def params(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **self.params()}


class ReferenceThreshold(Threshold):
    """The published LSTM-AE reference: a quantile of the training error times a margin."""

    method = "reference"

    def __init__(self, quantile: float = 0.99, factor: float = 1.5, value: float | None = None) -> None:
        self.quantile, self.factor, self.value = quantile, factor, value

    def fit(self, scores: np.ndarray) -> ReferenceThreshold:
        self.value = float(np.quantile(np.asarray(scores, float), self.quantile) * self.factor)
        return self

    def level(self) -> float:
        if self.value is None:
            raise RuntimeError("threshold used before fit()")
        return self.value

    def params(self) -> dict[str, Any]:
        return {"quantile": self.quantile, "factor": self.factor, "value": self.value}


METHODS: dict[str, type[Threshold]] = {cls.method: cls for cls in (ReferenceThreshold,)}


def make_threshold(method: str, **params: Any) -> Threshold:
    """A new, unfitted threshold of the named method."""
    try:
        return METHODS[method](**params)
    except KeyError:
        raise ValueError(f"unknown threshold method {method!r}; choose from {', '.join(METHODS)}") from None


def threshold_from_dict(data: dict[str, Any]) -> Threshold:
    """A fitted threshold from ``Threshold.to_dict()``: a fresh copy with its own stream state."""
    params = {k: v for k, v in data.items() if k != "method"}
    return make_threshold(str(data["method"]), **params)


@dataclass(frozen=True)
class AlarmRules:
    """Window decisions → alarms: open after ``min_windows`` anomalous windows in a row; windows
    within ``merge_windows`` of the last anomalous one belong to the same alarm."""

    min_windows: int = 3
    merge_windows: int = 30

    def new_state(self) -> AlarmState:
        return AlarmState(self)


class AlarmState:
    """One asset's alarm: ``step`` takes a window decision and says whether an alarm is active."""

    __slots__ = ("rules", "run", "since_last", "active", "opened")

    def __init__(self, rules: AlarmRules) -> None:
        self.rules = rules
        self.run = 0  # anomalous windows in a row
        self.since_last = 0  # windows since the last anomalous one, while an alarm is active
        self.active = False
        self.opened = False  # whether the last step opened a new alarm

    def step(self, anomalous: bool) -> bool:
        self.opened = False
        if anomalous:
            self.run += 1
            self.since_last = 0
            if not self.active and self.run >= self.rules.min_windows:
                self.active = self.opened = True
        else:
            self.run = 0
            if self.active:
                self.since_last += 1
                if self.since_last > self.rules.merge_windows:
                    self.active = False
        return self.active
