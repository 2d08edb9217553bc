"""Faults of known kinds written into readings: what the simulator's pumps suffer, and what the
retraining gate injects into a held-out day's real readings to measure recall without labels.

Pure numpy. A fault is sized in its channel's own spread (``span``: the simulator's swing from
light to full load, or the spread of a channel's real readings), so the same kinds mean the same
on any plant: a spike, a level shift, a drift, a stuck sensor, a noise burst, and a channel that
falls away from the others (a broken correlation).

>>> rng = np.random.default_rng(1)
>>> ts = np.arange(2000, dtype=np.int64) * 1000
>>> x = np.sin(np.arange(2000) / 50.0)[:, None] * np.ones((1, 2))
>>> faults = inject_series(x, ts, np.array([2.0, 2.0]), "p", rng, first=100, gap=100)
>>> sorted(f.kind for f in faults) == sorted(FAULT_KINDS)
True
>>> all(b.start_ms - a.end_ms >= 100_000 for a, b in zip(faults, faults[1:]))
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FAULT_KINDS = ("spike", "level_shift", "drift", "stuck", "noise_burst", "broken_correlation")
FIRST_FAULT = 100  # readings of each asset before the first fault
FAULT_GAP = 300  # normal readings between two faults of one asset
STUCK_MIN_SWING = 0.3  # a frozen sensor only shows while its true value moves (a share of its span)


@dataclass(frozen=True)
class Fault:
    """An injected fault: ``asset_id``'s ``channels`` are abnormal from ``start_ms`` to ``end_ms`` (excluded)."""

    asset_id: str
    kind: str
    start_ms: int
    end_ms: int
    channels: tuple[str, ...]

    def n_readings(self, interval_ms: int) -> int:
        """How many readings the fault covers at ``interval_ms``."""
        return (self.end_ms - self.start_ms) // interval_ms


def place(
    kinds: Sequence[str],
    guides: Sequence[np.ndarray | None],
    n: int,
    rng: np.random.Generator,
    first: int = FIRST_FAULT,
    gap: int = FAULT_GAP,
) -> list[tuple[int, int]]:
    """Start and end (excluded) rows of each fault: ≥ ``gap`` apart, none in the first ``first``.

    A spike lasts 5–10 readings, any other fault 60–300. A fault with a guide (a signal in units
    of its span) is moved, within the slack, to the nearest place where the guide swings by
    STUCK_MIN_SWING, or else where it swings most. ``ValueError`` when ``n`` readings are too few.
    """
    lengths = [
        int(rng.integers(5, 11)) if k == "spike" else int(rng.integers(60, 301)) for k in kinds
    ]
    slack = n - first - sum(lengths) - gap * (len(kinds) - 1)
    if slack < 0:
        raise ValueError(
            f"{n} readings per asset are too few for {len(kinds)} faults; need {n - slack}"
        )
    extra = np.diff(np.concatenate([[0], np.sort(rng.integers(0, slack + 1, len(kinds))), [slack]]))
    spans, cursor = [], first
    for guide, length, wanted in zip(guides, lengths, extra):
        start = cursor + min(int(wanted), slack)
        if guide is not None:
            view = np.lib.stride_tricks.sliding_window_view(
                guide[cursor : cursor + slack + length], length
            )
            ranges = view.max(axis=1) - view.min(axis=1)
            moving = np.flatnonzero(ranges >= STUCK_MIN_SWING)
            start = cursor + int(
                moving[np.argmin(np.abs(moving - wanted))] if moving.size else np.argmax(ranges)
            )
        slack -= start - cursor
        spans.append((start, start + length))
        cursor = start + length + gap
    return spans


def inject(
    x: np.ndarray,
    kind: str,
    cols: Sequence[int],
    s: int,
    e: int,
    span: np.ndarray,
    rng: np.random.Generator,
    sign: float,
    fall_from: np.ndarray | None = None,
) -> None:
    """Write fault ``kind`` on columns ``cols`` into rows s:e of one asset's values ``x`` (rows ×
    channels), in place, each sized in its channel's ``span``; ``sign`` is the direction of a
    spike, shift or drift. A broken correlation makes the channel fall away by 35–55 % of its own
    value (``fall_from`` None: a flow that a blockage cuts) or of ``fall_from`` per channel."""
    n = e - s
    for c in cols:
        if kind == "spike":
            x[s:e, c] += sign * rng.uniform(0.6, 1.0) * span[c] * rng.uniform(0.6, 1.0, n)
        elif kind == "level_shift":
            x[s:e, c] += sign * rng.uniform(0.3, 0.45) * span[c]
        elif kind == "drift":
            x[s:e, c] += sign * rng.uniform(0.5, 0.8) * span[c] * np.linspace(0, 1, n)
        elif kind == "stuck":
            x[s:e, c] = x[s, c]
        elif kind == "noise_burst":  # a loose contact, interference
            x[s:e, c] += rng.normal(0, rng.uniform(0.12, 0.2) * span[c], n)
        elif kind == "broken_correlation":  # the channel falls away while the others go on
            drop = rng.uniform(0.35, 0.55) * np.clip(np.arange(n) / max(1, min(20, n // 4)), 0, 1)
            if fall_from is None:
                x[s:e, c] *= 1 - drop
            else:
                x[s:e, c] -= drop * fall_from[c]
        else:
            raise ValueError(f"unknown fault kind {kind!r}; choose from {', '.join(FAULT_KINDS)}")


def spread(values: np.ndarray) -> np.ndarray:
    """Each channel's own spread in real readings (rows × channels): its 1st to 99th percentile,
    NaNs ignored (0 for a channel without readings).

    >>> spread(np.array([[0.0, 5.0], [10.0, 5.0]] * 50)).round(1).tolist()
    [10.0, 0.0]
    """
    if not len(values):
        return np.zeros(values.shape[1])
    with np.errstate(all="ignore"):
        low, high = np.nanpercentile(values, [1, 99], axis=0)
    return np.nan_to_num(high - low)


def inject_series(
    x: np.ndarray,
    ts_ms: np.ndarray,
    span: np.ndarray,
    asset_id: str,
    rng: np.random.Generator,
    names: Sequence[str] | None = None,
    kinds: Sequence[str] = FAULT_KINDS,
    first: int = FIRST_FAULT,
    gap: int = FAULT_GAP,
) -> list[Fault]:
    """As many of ``kinds`` (in an order ``rng`` draws) as fit into one asset's readings ``x``
    (rows × channels, times ``ts_ms``), in place, each on a channel ``rng`` picks among those
    that vary (two for half the noise bursts; a stuck sensor where its channel moves). Returns the
    faults, in time order; none when not even one fits."""
    names = list(names) if names is not None else [str(c) for c in range(x.shape[1])]
    usable = np.flatnonzero(span > 0)
    n = len(x)
    if not usable.size or n < 2:
        return []
    order = [kinds[i] for i in rng.permutation(len(kinds))]
    for count in range(len(order), 0, -1):
        todo = order[:count]
        cols = [_pick(kind, usable, rng) for kind in todo]
        guides = [
            _guide(x[:, c[0]], span[c[0]]) if k == "stuck" else None for k, c in zip(todo, cols)
        ]
        try:
            spans = place(todo, guides, n, rng, first, gap)
        except ValueError:
            continue
        faults = []
        for kind, chosen, (s, e) in zip(todo, cols, spans):
            inject(x, kind, chosen, s, e, span, rng, float(rng.choice([-1.0, 1.0])), span)
            end_ms = int(ts_ms[e]) if e < n else int(ts_ms[-1]) + 1
            faults.append(
                Fault(asset_id, kind, int(ts_ms[s]), end_ms, tuple(names[c] for c in chosen))
            )
        return faults
    return []


def _pick(kind: str, usable: np.ndarray, rng: np.random.Generator) -> list[int]:
    count = 2 if kind == "noise_burst" and usable.size > 1 and rng.random() < 0.5 else 1
    return sorted(int(c) for c in rng.choice(usable, size=count, replace=False))


def _guide(values: np.ndarray, span: float, smooth: int = 5) -> np.ndarray:
    """A channel's movement in units of its span, its noise smoothed away (a running mean)."""
    filled = np.nan_to_num(
        values, nan=float(np.nanmean(values)) if np.isfinite(values).any() else 0.0
    )
    kernel = np.ones(smooth) / smooth
    return np.convolve(filled, kernel, mode="same") / max(span, 1e-12)
