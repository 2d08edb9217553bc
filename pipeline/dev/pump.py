"""One simulated pump: how its channels follow its hidden load, and how that load moves.

The load holds set-points, with steps and ramps between them (``extend_schedule``), and wanders
slowly (``load_wander``); the channels follow it the way the pump affinity laws suggest
(``Pump.channels``, in the simulator's ``CHANNELS`` order), the temperature through a thermal lag
(``lag``). Each pump draws from streams of its own, so how a run is split into calls does not
change what it draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class Pump:
    """One pump's coefficients and the state its signals carry from one call to the next."""

    schedule_rng: np.random.Generator  # one stream per purpose, so how a run is split into calls
    wander_rng: np.random.Generator  # does not change what it draws
    noise_rng: np.random.Generator
    coef: (
        np.ndarray
    )  # flow per load, static head, head per load², no-load current, current per load³,
    #                   vibration at rest, vibration per load², ambient temperature, temperature rise
    tau_s: float  # thermal time constant
    knots_t: list[float] = field(default_factory=list)  # set-point schedule: seconds since start
    knots_v: list[float] = field(default_factory=list)
    wander: float = 0.0
    heat: float = 0.0  # lagged load that drives the temperature

    def channels(self, load: np.ndarray, heat: np.ndarray, ambient: np.ndarray) -> np.ndarray:
        q, p0, p2, i0, i3, v0, v2, t0, rise = self.coef
        return np.stack(
            [
                v0 + v2 * load**2,
                i0 + i3 * load**3,
                p0 + p2 * load**2,
                t0 + ambient + rise * heat,
                q * load,
            ],
            axis=1,
        )

    def span(self) -> np.ndarray:
        """Each channel's swing between light (0.35) and full load: the unit faults are sized in."""
        low, full = self.channels(np.array([0.35, 1.0]), np.array([0.35, 1.0]), np.zeros(2))
        return full - low


def lag(state: float, x: np.ndarray, rate: float) -> tuple[float, np.ndarray]:
    """First-order lag y[k] = a·y[k-1] + (1-a)·x[k] from ``state``, a = exp(-rate); returns (last, y)."""
    # pandas' ewm runs the recursion in compiled code; the state rides in front as its first value.
    y = (
        pd.Series(np.concatenate([[state], x]))
        .ewm(alpha=1 - np.exp(-rate), adjust=False)
        .mean()
        .to_numpy()[1:]
    )
    return float(y[-1]), y


def load_wander(
    pump: Pump, n: int, interval_s: float, std: float = 0.03, tau_s: float = 900.0
) -> np.ndarray:
    """A slow random wander of the load: an AR(1) process of standard deviation ``std``."""
    a = np.exp(-interval_s / tau_s)
    # lag feeds (1 - a)·x, so x is the innovation scaled up by 1 / (1 - a).
    shocks = pump.wander_rng.standard_normal(n) * std * np.sqrt(1 - a * a) / (1 - a)
    pump.wander, y = lag(pump.wander, shocks, interval_s / tau_s)
    return y


def extend_schedule(pump: Pump, from_s: float, until_s: float) -> None:
    """Cover [from_s, until_s] with set-point holds (2–15 min), each ending in a step or a ramp.

    A step takes the drive 10–30 s, as a variable-speed drive accelerates a pump; a ramp 1–5 min.
    """
    keep = max(
        0, int(np.searchsorted(pump.knots_t, from_s)) - 1
    )  # older knots are never read again
    del pump.knots_t[:keep], pump.knots_v[:keep]
    rng = pump.schedule_rng
    while pump.knots_t[-1] <= until_s:
        hold_end = pump.knots_t[-1] + rng.uniform(120, 900)
        change = (
            rng.uniform(10, 30) if rng.random() < 0.5 else rng.uniform(60, 300)
        )  # drive step or ramp
        step = rng.choice([-1, 1]) * rng.uniform(0.2, 0.5)
        level = pump.knots_v[-1] + step
        if not 0.35 <= level <= 0.95:  # turn back at the ends of the operating range
            level = pump.knots_v[-1] - step
        pump.knots_t += [hold_end, hold_end + change]
        pump.knots_v += [pump.knots_v[-1], float(np.clip(level, 0.35, 0.95))]
