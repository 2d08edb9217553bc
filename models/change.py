"""Change: how far a window's level steps inside it, the evidence an alarm may open on.

A fault reaches a process as a change (a valve closes, a bearing starts to knock); a process also
drifts in normal operation further than a short training stretch showed (a temperature creeps, a
vibration level wanders). Both take the window's level away from the training data, but only a
change makes one half of a window differ from the other. The step of channel ``c`` in a window of
``W`` scaled readings, split into halves of ``h = W // 2`` and ``W - h``, is

    step_c = (mean of the second half - mean of the first)^2 * h * (W - h) / W

which is about 1 for independent readings of unit variance whatever ``W``. Each channel's step is
divided by its mean over the training windows (times ``(1 + r) / (1 - r)`` for a slow channel with
lag-1 autocorrelation ``r``, as the error scale does), and a window's change is the largest scaled
step over the 99th percentile of those of the training windows: above 1, the window steps more than
99 in 100 training windows did. The alarm rules (``change_factor``) decide what counts.

>>> w = np.zeros((2, 4, 1)); w[1, 2:, 0] = 2.0   # a flat window, and one that steps by 2
>>> window_steps(w)[:, 0].tolist()
[0.0, 4.0]
"""

from __future__ import annotations

import numpy as np

QUANTILE = 0.99


def window_steps(z: np.ndarray) -> np.ndarray:
    """Per window and channel, the squared step between the window's halves (n, W, C) -> (n, C)."""
    window = z.shape[1]
    half = window // 2
    # Accumulated in float64 without copying the windows: a long training history stays one array.
    diff = z[:, half:].mean(axis=1, dtype=np.float64) - z[:, :half].mean(axis=1, dtype=np.float64)
    return diff * diff * (half * (window - half) / window)


def fit_change(z: np.ndarray, slowness: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """(per-channel step scale, change level) from scaled training windows (n, W, C).

    ``slowness`` multiplies each channel's scale (the error scale's ``(1 + r) / (1 - r)``).

    >>> train = np.random.default_rng(0).normal(size=(500, 8, 1))   # noise: no window steps
    >>> scale, level = fit_change(train)
    >>> step = np.r_[np.zeros(4), np.full(4, 3.0)].reshape(1, 8, 1)  # a step of 3 standard deviations
    >>> round(float((window_change(train, scale, level) > 1).mean()), 2), bool(window_change(step, scale, level)[0] > 2)
    (0.01, True)
    """
    steps = window_steps(np.asarray(z))
    scale = np.maximum(steps.mean(axis=0), 1e-6)
    if slowness is not None:
        scale = scale * slowness
    level = max(float(np.quantile((steps / scale).max(axis=1), QUANTILE)), 1e-12)
    return scale, level


def window_change(z: np.ndarray, scale: np.ndarray, level: float) -> np.ndarray:
    """Each scaled window's change: its largest scaled step over the training level (1 = the level)."""
    return (window_steps(np.asarray(z)) / scale).max(axis=1) / level
