"""Reviewed anomalies choose the threshold scale: keep the confirmed ones, drop the false ones.

Each alarm carries its *margin*: the largest threshold scale at which it would still have opened
(its strongest run of ``min_windows`` windows, as a multiple of the threshold; see
``sensorwatch.pipeline.stream.tracks``). An alarm fires at scale ``s`` when ``s < margin``. So the
scale that keeps every confirmed alarm and drops the most false positives is just above the
largest false-positive margin that is below every confirmed margin, within the bounds.

>>> t = tune_scale(confirmed=[2.4, 3.1], false=[1.2, 1.6, 2.9], current=1.0, bounds=(0.5, 3.0))
>>> round(t.scale, 3), t.kept, t.dropped, t.still_firing
(1.616, 2, 2, 1)
>>> print(t.why.replace(", drops", ",\\ndrops"))
scale 1 → 1.616: keeps 2 of 2 confirmed alarms,
drops 2 of 3 false positives (1 fires with a margin above a confirmed one's)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

STEP = 1.01  # how far above a false positive's margin the scale goes: clear of it, not more


@dataclass(frozen=True)
class Tuning:
    """The scale chosen, what it does to the reviewed alarms, and why."""

    current: float
    scale: float
    bounds: tuple[float, float]
    confirmed: int
    false: int
    kept: int  # confirmed alarms that still fire at ``scale``
    dropped: int  # false positives that no longer fire
    still_firing: int  # false positives that do
    why: str

    @property
    def changed(self) -> bool:
        return abs(self.scale - self.current) > 1e-9


def fires(margin: float, scale: float) -> bool:
    """Whether an alarm of ``margin`` opens at threshold ``scale``."""
    return scale < margin


def tune_scale(
    confirmed: Sequence[float],
    false: Sequence[float],
    current: float,
    bounds: tuple[float, float] = (0.5, 3.0),
) -> Tuning:
    """The threshold scale for alarms reviewed as ``confirmed`` and ``false`` (their margins).

    No false positive below the weakest confirmed alarm: the scale stays (or comes down to keep
    every confirmed alarm). Bounds always hold: a scale they cut short is said in ``why``.

    >>> tune_scale([], [], 1.0).why
    'scale 1 stays: no reviewed alarms with a margin'
    >>> print(tune_scale([1.3], [4.0], 1.0).why.replace(", drops", ",\\ndrops"))
    scale 1 stays: keeps 1 of 1 confirmed alarms,
    drops 0 of 1 false positives (1 fires with a margin above a confirmed one's)
    >>> tune_scale([], [5.0], 1.0, (0.5, 3.0)).scale
    3.0
    """
    lo, hi = bounds
    if lo > hi:
        raise ValueError(f"bounds {bounds}: the lower is above the upper")
    confirmed = [m for m in confirmed if m > 0]
    false = [m for m in false if m > 0]
    if not confirmed and not false:
        return Tuning(
            current,
            current,
            bounds,
            0,
            0,
            0,
            0,
            0,
            f"scale {current:g} stays: no reviewed alarms with a margin",
        )
    cap = min(confirmed, default=float("inf"))  # at or above it, a confirmed alarm would not fire
    droppable = [m * STEP for m in false if m * STEP < cap]
    wanted = max([current if current < cap else cap / STEP, *droppable])
    scale = min(max(wanted, lo), hi)
    kept = sum(fires(m, scale) for m in confirmed)
    dropped = sum(not fires(m, scale) for m in false)
    firing = len(false) - dropped
    verb = (
        f"scale {current:g} stays"
        if abs(scale - current) < 1e-9
        else f"scale {current:g} → {scale:.4g}"
    )
    why = f"{verb}: keeps {kept} of {len(confirmed)} confirmed alarms, drops {dropped} of {len(false)} false positives"
    notes = []
    if firing:
        above = sum(1 for m in false if m * STEP >= cap)
        if above:
            notes.append(f"{above} fires with a margin above a confirmed one's")
    if scale != wanted:
        notes.append(f"held to the bounds {lo:g}–{hi:g}; {wanted:.4g} wanted")
    if notes:
        why += " (" + "; ".join(notes) + ")"
    return Tuning(current, scale, bounds, len(confirmed), len(false), kept, dropped, firing, why)
