"""What training fits after the network, to turn its errors into scores and decisions: each
channel's error scale (slow channels weighted down by their lag-1 autocorrelation), the windows a
threshold is fitted on (all of them where the validation windows are too few for its quantile), and
the threshold itself, its parameters fitted to the data's cadence."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from sensorwatch.models.compiled import compile_forward
from sensorwatch.models.recipe import Recipe
from sensorwatch.models.thresholds import fitting_params, make_threshold

log = logging.getLogger("sensorwatch.models")


def autocorrelation(series: Sequence[np.ndarray]) -> np.ndarray:
    """Lag-1 autocorrelation of each channel of scaled (zero-mean) series, pooled, clipped to [0, 0.999].

    >>> t = np.arange(200.0)
    >>> autocorrelation([np.c_[np.sin(t / 20), (-1.0) ** t]]).round(2).tolist()
    [1.0, 0.0]
    """
    num = sum((s[1:] * s[:-1]).sum(axis=0) for s in series)
    den = sum((s * s).sum(axis=0) for s in series)
    return np.clip(num / np.maximum(den, 1e-12), 0.0, 0.999)


def fit_error_scale(model, mean, x_train, recipe: Recipe, autocorr: np.ndarray) -> np.ndarray:
    """Per-channel error scale from the training windows (already scaled: an identity scaler here)."""
    zeros, ones = np.zeros_like(mean), np.ones_like(mean)
    _, err_train = compile_forward(model, zeros, ones, ones, recipe.score)(x_train)
    error_scale = np.maximum(err_train.mean(axis=0), 1e-6)
    slowness = channel_slowness(recipe, autocorr)
    return error_scale if slowness is None else error_scale * slowness


def channel_slowness(recipe: Recipe, autocorr: np.ndarray) -> np.ndarray | None:
    """``(1 + r) / (1 - r)`` per channel for the autocorrelation-aware scale, else None."""
    return (1 + autocorr) / (1 - autocorr) if recipe.error_scale == "autocorr" else None


def fit_windows(x_train: np.ndarray, x_val: np.ndarray, on: str) -> np.ndarray:
    """The windows a threshold is fitted on: the validation part or all of them."""
    return x_val if on == "validation" or x_val is x_train else np.concatenate([x_train, x_val])


def fit_on_enough(recipe: Recipe, validation_windows: int) -> Recipe:
    """The recipe, its threshold fitted on every training window where it asks for the validation
    windows but they are too few to estimate its quantile ``q``: that takes at least ``1 / (1 - q)``
    scores (1,000 for the 99.9th percentile), or the top of the fitted scores is the top of a small
    sample, such as a part of one cycle of a slow daily or weekly pattern. Recorded on the version.

    >>> moving = Recipe(threshold_on="validation", threshold_params={"quantile": 0.999})
    >>> fit_on_enough(moving, 999).threshold_on, fit_on_enough(moving, 1000).threshold_on
    ('all', 'validation')
    """
    if recipe.threshold_on != "validation" or recipe.threshold != "reference":
        return recipe
    q = float(recipe.threshold_params.get("quantile", 0.99))
    if q >= 1.0 or validation_windows >= 1.0 / (1.0 - q) - 1e-9:
        return recipe
    log.info(
        "threshold fitted on all windows: %d validation windows are fewer than the %d its "
        "quantile %.4g needs",
        validation_windows,
        round(1.0 / (1.0 - q)),
        q,
    )
    return recipe.updated(threshold_on="all")


def fit_threshold(
    model, mean, error_scale, x_train, x_val, recipe: Recipe, interval_ms: int
) -> tuple[dict[str, Any], np.ndarray]:
    """The threshold fitted on validation (or all) window scores, and those scores (its parameters
    fitted to the data's cadence: ``fitting_params``)."""
    zeros, ones = np.zeros_like(mean), np.ones_like(mean)
    fit_on = fit_windows(x_train, x_val, recipe.threshold_on)
    scores, _ = compile_forward(model, zeros, ones, error_scale, recipe.score)(fit_on)
    params = fitting_params(recipe.threshold, recipe.threshold_params, interval_ms, recipe.stride)
    return make_threshold(recipe.threshold, **params).fit(scores).to_dict(), scores
