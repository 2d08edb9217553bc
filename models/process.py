"""Steady or moving: what a training set says about its process, and the recipe fields that suit it.

A process that holds one operating point (a pump on a test bed) varies mostly *within* a window:
noise around a level that stays. There a window whose level sits away from the training data is
evidence of a fault, and a step inside a window is the change a fault starts with. A process that
changes operating point in normal operation (a load that steps and ramps, a server's daily
traffic) varies mostly *between* windows: its level and its steps are normal, and only how the
channels move together tells a fault from a new operating point.

The training data says which: each channel's variance (the channels standardised over the training
data) splits into the variance inside windows of ``W`` readings and the variance of the windows'
means. The *level share* is the median over channels that vary of that second part, between 0 and
1. At ``MOVING_SHARE`` (0.5) or above, most channels vary more between windows than within them,
and a recipe whose ``process`` is ``auto`` becomes ``moving``: each field of ``MOVING`` that the
recipe leaves at the default takes the moving value (no level term, errors scaled by their mean,
the threshold at the top of the validation scores, a plain alarm without the change rule, a longer
window and a wider network). Below, it becomes ``steady`` and keeps its fields. The choice and the
share are stored with the version, so a retrain of its champion keeps it.

0.5 is not fitted to a benchmark: it is where the two parts of the variance are equal. On the data
measured (README, Detection) no training set falls near it: SKAB's files have shares of 0.08–0.52
(one at 0.52), the simulated plant 0.99, SMD's machines 0.26–0.94.

>>> rng = np.random.default_rng(0)
>>> noise = rng.normal(size=(2000, 3))                       # steady: noise around one level
>>> steps = np.repeat(rng.normal(size=(20, 3)), 100, axis=0) + 0.1 * noise   # operating points
>>> round(level_share([noise], 20), 2), round(level_share([steps], 20), 2)
(0.05, 0.92)
>>> from sensorwatch.models.recipe import Recipe
>>> choose(Recipe(), [steps])[0].process, choose(Recipe(), [noise])[0].process
('moving', 'steady')
>>> choose(Recipe(window=25), [steps])[0].window   # a field set on purpose stays
25
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sensorwatch.models.recipe import Recipe

MOVING_SHARE = 0.5
_DEFAULT = Recipe()

# What a moving process changes of the default recipe (the ``plant`` preset is exactly this).
MOVING: dict[str, object] = {
    "window": 30,
    "units": 64,
    "latent": 32,
    "patience": 4,
    "batch_size": 64,
    "learning_rate": 2e-3,
    "score": "max",
    "error_scale": "train",
    "threshold_on": "validation",
    "threshold_params": {"quantile": 0.999, "factor": 1.0, "follow": 2000},
    "min_windows": 3,
    "merge_windows": 30,
    "suppress_windows": 0,
    "clear_ratio": 0.0,
    "rearm_ratio": 0.0,
    "change_factor": 0.0,
}


def level_share(scaled: Sequence[np.ndarray], window: int) -> float:
    """The median over varying channels of the share of their variance between windows of
    ``window`` readings, for standardised stretches (rows × channels); 0 without any."""
    total, sums, count, rows = None, None, 0, 0
    for z in scaled:
        z = np.asarray(z, np.float64)
        if len(z) < window:
            continue
        cum = np.cumsum(np.vstack([np.zeros((1, z.shape[1])), z]), axis=0)
        means = (cum[window:] - cum[:-window]) / window
        sums = (means**2).sum(axis=0) + (0 if sums is None else sums)
        total = (z**2).sum(axis=0) + (0 if total is None else total)
        count, rows = count + len(means), rows + len(z)
    if sums is None or total is None:
        return 0.0
    varies = total / rows > 1e-6
    if not varies.any():
        return 0.0
    return float(np.median(np.clip(sums[varies] / count / (total[varies] / rows), 0.0, 1.0)))


def choose(recipe: Recipe, scaled: Sequence[np.ndarray]) -> tuple[Recipe, float | None]:
    """The recipe a training set gets, and its level share (None when ``process`` was not auto)."""
    if recipe.process != "auto":
        return recipe, None
    share = level_share(scaled, recipe.window)
    if share < MOVING_SHARE:
        return recipe.updated(process="steady"), share
    kept = {f: v for f, v in MOVING.items() if getattr(recipe, f) == getattr(_DEFAULT, f)}
    return recipe.updated(process="moving", **kept), share
