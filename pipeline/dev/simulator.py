"""A plant of simulated pumps: correlated channels driven by a hidden load, with labelled faults.

Each pump's speed follows a hidden load: set-point holds, steps and ramps, a daily demand cycle
and a slow wander. The channels follow it the way the pump affinity laws suggest: flow ∝ speed,
pressure ∝ speed² above the static head, current ∝ speed³ above the no-load current, vibration
grows with speed², and temperature follows the load through a thermal lag of a few minutes. Each
pump has its own coefficients, each channel its own measurement noise.

Faults are written over the very signal ``normal()`` would have produced (their randomness comes
from a stream of its own), so a twin simulator shows exactly what a fault changed.

>>> frame = Simulator(assets=2, seed=7).normal(60)
>>> frame.shape, list(frame.columns)
((120, 7), ['asset_id', 'ts_ms', 'vibration', 'current', 'pressure', 'temperature', 'flow'])
>>> faulty, faults = Simulator(assets=2, seed=7).with_faults(900, faults_per_asset=1)
>>> [(f.asset_id, f.kind) for f in faults]
[('pump-01', 'drift'), ('pump-02', 'stuck')]
>>> int(labels(faulty, faults).sum()) == sum(f.n_readings(1000) for f in faults)
True
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

from sensorwatch.models.cadence import TimeSeries
from sensorwatch.models.faults import (  # the fault kinds, their sizes and placing are shared
    FAULT_GAP,  # noqa: F401 (read here by the tests and the benchmarks)
    FAULT_KINDS,
    FIRST_FAULT,  # noqa: F401
    Fault,
    inject,
    place,
)
from sensorwatch.pipeline.dev.pump import Pump, extend_schedule, lag, load_wander
from sensorwatch.schemas.records import Reading

CHANNELS = ["vibration", "current", "pressure", "temperature", "flow"]
DEFAULT_START_MS = (
    1_704_067_200_000  # 2024-01-01T00:00:00Z: a fixed start keeps a seed's frames equal
)
NOISE = np.array([0.05, 0.3, 0.03, 0.1, 0.8])  # measurement noise sigma per channel, CHANNELS order

_C = {name: i for i, name in enumerate(CHANNELS)}
_CHOICES = {
    "spike": ("vibration", "current", "pressure"),
    "level_shift": tuple(CHANNELS),
    "drift": tuple(CHANNELS),
    "stuck": (
        "vibration",
        "current",
        "pressure",
        "flow",
    ),  # temperature moves too slowly to show it
    "noise_burst": ("vibration", "current", "pressure", "flow"),
    "broken_correlation": ("flow",),
}


class Simulator:
    """``assets`` pumps sampled every ``interval_s`` from ``start_ms``; deterministic for ``seed``.

    Successive calls continue each pump's time base and state, so training data from
    ``normal()`` and streaming data from ``with_faults()`` look like one plant.
    """

    def __init__(
        self, assets: int = 8, seed: int = 7, interval_s: float = 1.0, start_ms: int | None = None
    ) -> None:
        if assets < 1 or interval_s <= 0:
            raise ValueError("a simulator needs at least one asset and a positive interval")
        self.seed = seed
        self.interval_s = interval_s
        self.interval_ms = max(1, round(interval_s * 1000))
        self.start_ms = DEFAULT_START_MS if start_ms is None else start_ms
        self.asset_ids = [f"pump-{i + 1:0{max(2, len(str(assets)))}d}" for i in range(assets)]
        self._next = 0  # index of the next reading of every asset
        self._pumps = [self._new_pump(i) for i in range(assets)]

    def _new_pump(self, index: int) -> Pump:
        # Every stream is keyed (seed, purpose tag, ...) so no two of them can coincide.
        rng = np.random.default_rng([self.seed, 3, index])
        nominal = np.array([120.0, 1.0, 4.0, 8.0, 30.0, 1.0, 2.5, 22.0, 25.0])
        streams = [np.random.default_rng([self.seed, 0, index, purpose]) for purpose in range(3)]
        pump = Pump(
            *streams,
            coef=nominal * rng.uniform(0.93, 1.07, nominal.size),
            tau_s=rng.uniform(120, 300),
        )
        level = rng.uniform(0.45, 0.9)
        pump.knots_t, pump.knots_v, pump.heat = [0.0], [level], level
        return pump

    def spans(self) -> pd.DataFrame:
        """Each pump's channel swing from light to full load: the unit fault sizes are drawn in."""
        return pd.DataFrame([p.span() for p in self._pumps], index=self.asset_ids, columns=CHANNELS)

    def normal(self, n_per_asset: int) -> pd.DataFrame:
        """The next ``n_per_asset`` fault-free readings of every asset, sorted by time then asset."""
        values, _ = self._advance(n_per_asset)
        return self._frame(values, self._next - n_per_asset)

    def with_faults(
        self, n_per_asset: int, faults_per_asset: int = 2, kinds: Sequence[str] = FAULT_KINDS
    ) -> tuple[pd.DataFrame, list[Fault]]:
        """The next readings with ``faults_per_asset`` faults per asset, cycling through ``kinds``."""
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown or not kinds:
            raise ValueError(
                f"unknown fault kinds {sorted(unknown)}; choose from {', '.join(FAULT_KINDS)}"
            )
        first = self._next
        values, loads = self._advance(n_per_asset)
        ts = self.start_ms + (first + np.arange(n_per_asset)) * self.interval_ms
        order = np.random.default_rng([self.seed, 2, first]).permutation(len(kinds))
        faults: list[Fault] = []
        for a, pump in enumerate(self._pumps):
            rng = np.random.default_rng([self.seed, 1, first, a])
            todo = [
                kinds[order[(a * faults_per_asset + j) % len(kinds)]]
                for j in range(faults_per_asset)
            ]
            names = [_pick_channels(kind, rng) for kind in todo]
            # a frozen sensor only shows while its true value moves: where, its noise-free signal says
            swing = pump.channels(loads[a], loads[a], np.zeros(n_per_asset)) / pump.span()
            guides = [swing[:, _C[c[0]]] if k == "stuck" else None for k, c in zip(todo, names)]
            for kind, chans, (s, e) in zip(todo, names, place(todo, guides, n_per_asset, rng)):
                _inject(values[a], kind, chans, s, e, pump, rng)
                end_ms = int(ts[s]) + (e - s) * self.interval_ms
                faults.append(Fault(self.asset_ids[a], kind, int(ts[s]), end_ms, chans))
        return self._frame(values, first), faults

    def _advance(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Values (assets, n, channels) and hidden loads (assets, n) of the next ``n`` readings."""
        if n < 1:
            raise ValueError("n_per_asset must be at least 1")
        k = self._next + np.arange(n)
        t_s = k * self.interval_s
        hour = ((self.start_ms + k * self.interval_ms) / 3_600_000) % 24
        demand = 0.08 * np.sin(2 * np.pi * (hour - 9) / 24)  # busier by day
        ambient = 2.0 * np.sin(2 * np.pi * (hour - 14) / 24)
        values, loads = (
            np.empty((len(self._pumps), n, len(CHANNELS))),
            np.empty((len(self._pumps), n)),
        )
        for a, pump in enumerate(self._pumps):
            extend_schedule(pump, t_s[0], t_s[-1])
            setpoint = np.interp(t_s, pump.knots_t, pump.knots_v)
            wander = load_wander(pump, n, self.interval_s)
            load = np.clip(setpoint + demand + wander, 0.25, 1.05)
            pump.heat, heat = lag(pump.heat, load, self.interval_s / pump.tau_s)
            noise = pump.noise_rng.standard_normal((n, len(CHANNELS))) * NOISE
            values[a], loads[a] = np.round(pump.channels(load, heat, ambient) + noise, 4), load
        self._next += n
        return values, loads

    def _frame(self, values: np.ndarray, first: int) -> pd.DataFrame:
        assets, n, _ = values.shape
        ts = self.start_ms + (first + np.arange(n, dtype=np.int64)) * self.interval_ms
        frame = pd.DataFrame(values.transpose(1, 0, 2).reshape(n * assets, -1), columns=CHANNELS)
        frame.insert(0, "ts_ms", np.repeat(ts, assets))
        frame.insert(0, "asset_id", np.tile(np.array(self.asset_ids, dtype=object), n))
        return frame


def _pick_channels(kind: str, rng: np.random.Generator) -> tuple[str, ...]:
    count = 2 if kind == "noise_burst" and rng.random() < 0.5 else 1
    return tuple(rng.choice(_CHOICES[kind], size=count, replace=False).tolist())


def _inject(
    x: np.ndarray,
    kind: str,
    names: tuple[str, ...],
    s: int,
    e: int,
    pump: Pump,
    rng: np.random.Generator,
) -> None:
    """Write fault ``kind`` on channels ``names`` into rows s:e of one asset's values ``x``, in place
    (``sensorwatch.models.faults``: sized in the pump's span; a blockage cuts the flow)."""
    cols = [_C[c] for c in names]
    sign = 1.0 if kind == "spike" and names[0] != "pressure" else rng.choice([-1.0, 1.0])
    inject(x, kind, cols, s, e, pump.span(), rng, float(sign))
    x[s:e, cols] = np.round(x[s:e, cols], 4)


def labels(frame: pd.DataFrame, faults: Sequence[Fault]) -> np.ndarray:
    """A boolean per row of ``frame``: whether a fault covers it."""
    out = np.zeros(len(frame), dtype=bool)
    assets, ts = frame["asset_id"].to_numpy(), frame["ts_ms"].to_numpy()
    for f in faults:
        out |= (assets == f.asset_id) & (ts >= f.start_ms) & (ts < f.end_ms)
    return out


def series_by_asset(frame: pd.DataFrame) -> list[TimeSeries]:
    """Each asset's readings (times and CHANNELS values, float32), assets in sorted order: training input."""
    return [
        TimeSeries(g["ts_ms"].to_numpy(np.int64), g[CHANNELS].to_numpy(np.float32))
        for _, g in frame.groupby("asset_id", sort=True)
    ]


def normal_series(assets: int, readings: int, seed: int) -> tuple[list[TimeSeries], list[str]]:
    """``readings`` normal readings of each of ``assets`` simulated pumps, one series per asset,
    and the channels: what ``sensorwatch train`` trains on without files."""
    return series_by_asset(Simulator(assets=assets, seed=seed).normal(readings)), list(CHANNELS)


def readings(frame: pd.DataFrame) -> Iterator[Reading]:
    """The rows of a frame (``asset_id``, ``ts_ms`` and channel columns) as readings, in row order.

    >>> next(readings(pd.DataFrame({"asset_id": ["p"], "ts_ms": [0], "flow": [1.5]})))
    Reading(asset_id='p', ts_ms=0, values={'flow': 1.5})
    """
    channels = [c for c in frame.columns if c not in ("asset_id", "ts_ms")]
    values = frame[channels].to_numpy(np.float64).tolist()
    for asset, ts, row in zip(frame["asset_id"].tolist(), frame["ts_ms"].tolist(), values):
        yield Reading(asset, int(ts), dict(zip(channels, row)))
