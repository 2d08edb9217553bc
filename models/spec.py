"""What a trained detector needs besides its weights: channels, recipe, cadence, scaler, error scale, threshold."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sensorwatch.models.recipe import Cadence, Recipe

# Versions trained before the cadence was learned were all trained on one reading a second.
LEGACY_INTERVAL_MS = 1000
# A reading ten thousand standard deviations out is as anomalous as one can be: scaled values are
# clipped there, which keeps every error finite in float32.
Z_LIMIT = 1e4


@dataclass(frozen=True)
class DetectorSpec:
    """Saved with every model version (MLflow model metadata and ``detector.json``).

    ``recipe`` is the recipe the version was trained and evaluated with; ``interval_ms`` the
    typical interval between readings of its training data. ``mean``/``std`` scale raw channel
    values; ``error_scale`` divides each channel's reconstruction error so that every channel
    weighs the same in the score; ``threshold`` is the fitted threshold's own description
    (``sensorwatch.models.thresholds.threshold_from_dict`` reads it). ``change_scale`` divides each
    channel's in-window step and ``change_level`` is the 99th percentile of the training windows'
    largest scaled step (``sensorwatch.models.change``); versions trained before them have none.
    """

    channels: list[str]
    mean: list[float]
    std: list[float]
    error_scale: list[float]
    threshold: dict[str, Any] = field(default_factory=dict)
    recipe: Recipe = field(default_factory=Recipe)
    interval_ms: int = LEGACY_INTERVAL_MS
    change_scale: list[float] | None = None
    change_level: float | None = None
    # The training data's level share (``sensorwatch.models.process``) when the recipe's process
    # was auto: what the process choice was made on.
    level_share: float | None = None

    def __post_init__(self) -> None:
        n = len(self.channels)
        for name in ("mean", "std", "error_scale", "change_scale"):
            if getattr(self, name) is not None and len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} channels")
        if len(set(self.channels)) != n:
            raise ValueError("channel names must be unique")

    @property
    def window(self) -> int:
        return self.recipe.window

    @property
    def score(self) -> str:
        return self.recipe.score

    def cadence(self) -> Cadence:
        return self.recipe.cadence(self.interval_ms)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """mean, std and error scale as float32 arrays."""
        return (
            np.asarray(self.mean, np.float32),
            np.asarray(self.std, np.float32),
            np.asarray(self.error_scale, np.float32),
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "recipe": self.recipe.model_dump()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorSpec:
        """Read a spec back; versions saved before recipes travelled get their window and score
        from the old fields, and the rest of the current default recipe."""
        recipe = data.get("recipe")
        if recipe is None:
            recipe = {"window": int(data["window"]), "score": str(data.get("score", "mean"))}
        return cls(
            channels=list(data["channels"]),
            mean=[float(v) for v in data["mean"]],
            std=[float(v) for v in data["std"]],
            error_scale=[float(v) for v in data["error_scale"]],
            threshold=dict(data.get("threshold", {})),
            recipe=Recipe.model_validate(recipe),
            interval_ms=int(data.get("interval_ms", LEGACY_INTERVAL_MS)),
            change_scale=[float(v) for v in data["change_scale"]]
            if data.get("change_scale") is not None
            else None,
            change_level=float(data["change_level"])
            if data.get("change_level") is not None
            else None,
            level_share=float(data["level_share"]) if data.get("level_share") is not None else None,
        )


def fit_scaler(values: np.ndarray, floor: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of training values (rows × channels); a flat channel gets ``floor``.

    >>> m, s = fit_scaler(np.array([[1.0, 5.0], [3.0, 5.0]]))
    >>> [round(float(v), 3) for v in s]
    [1.0, 0.001]
    """
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    return mean.astype(np.float32), np.maximum(std, floor).astype(np.float32)
