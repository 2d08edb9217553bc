"""A loaded detector: the model, its spec, and the compiled forward pass the service scores with."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sensorwatch.models.backend import keras
from sensorwatch.models.change import window_change
from sensorwatch.models.compiled import Z_LIMIT, Forward, compile_forward
from sensorwatch.models.spec import DetectorSpec
from sensorwatch.models.thresholds import Threshold, threshold_from_dict


@dataclass
class Detector:
    """Scores windows in one batched, compiled forward pass; hands out per-asset thresholds."""

    model: keras.Model
    spec: DetectorSpec
    version: str = "local"
    _forward: Forward | None = field(default=None, repr=False)

    def score(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores, per-channel errors) for raw windows (n, W, C): one forward pass."""
        return self._compiled()(windows)

    def change(self, windows: np.ndarray) -> np.ndarray | None:
        """Each raw window's change (``sensorwatch.models.change``): above the recipe's
        ``change_factor``, an alarm may open. None for a version trained before changes were fitted."""
        if self.spec.change_scale is None or self.spec.change_level is None:
            return None
        mean, std, _ = self.spec.arrays()
        z = np.clip((np.asarray(windows, np.float32) - mean) / std, -Z_LIMIT, Z_LIMIT)
        return window_change(z, np.asarray(self.spec.change_scale), self.spec.change_level)

    def reconstruct(self, windows: np.ndarray) -> np.ndarray:
        """The model's reconstruction of raw windows (n, W, C), in the readings' own units: what a
        reviewer compares each channel with. Eager and unbatched; for a few windows, not a stream."""
        mean, std, _ = self.spec.arrays()
        z = np.clip((np.asarray(windows, np.float32) - mean) / std, -Z_LIMIT, Z_LIMIT)
        recon = keras.ops.convert_to_numpy(self.model(z, training=False))
        return recon * std + mean

    def warm_up(self) -> Detector:
        """Compile the forward pass for every batch shape before the first poll."""
        self._compiled().warm_up()  # type: ignore[attr-defined]
        return self

    def _compiled(self) -> Forward:
        if self._forward is None:
            self._forward = compile_forward(self.model, *self.spec.arrays(), reduce=self.spec.score)
        return self._forward

    def new_threshold(self) -> Threshold:
        """A fresh copy of the fitted threshold, with its own stream state (one per asset)."""
        return threshold_from_dict(self.spec.threshold)
