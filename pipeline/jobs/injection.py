"""The gate's synthetic faults in the held-out day: where they go (``Injection``), the copy of
the day they are written into (``injected_copy``, with ``sensorwatch.models.faults``), and their
picture: one of each kind, the real readings and the injected copy, where each version's alarms
opened (matplotlib's object API on the Agg canvas, no pyplot state).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sensorwatch.models.faults import Fault, inject_series, spread

if TYPE_CHECKING:
    from sensorwatch.models.spec import DetectorSpec
    from sensorwatch.pipeline.jobs.figures import Figures

INJECT_STREAM = 23  # the seed's purpose tag for the gate's faults (with the settings' seed)

COLOURS = {"champion": "tab:green", "challenger": "tab:purple"}


@dataclass(frozen=True)
class Injection:
    """Where the gate's faults go: the first ``gap`` readings of each asset stay clean, faults
    stay ``gap`` readings apart, and an alarm up to ``tolerance_ms`` after a fault ended (a window
    still holding its readings) is that fault's."""

    seed: int
    gap: int
    tolerance_ms: int

    @classmethod
    def of(cls, seed: int, *specs: DetectorSpec) -> Injection:
        """Room for every version's window and alarm rules: an alarm of one fault opens and
        closes before the next fault starts."""

        def reach(spec: DetectorSpec) -> int:
            r = spec.recipe
            return spec.window + (r.min_windows + r.merge_windows + r.suppress_windows) * r.stride

        gap = 2 * max(reach(s) for s in specs)
        tolerance = 2 * max(s.window * s.interval_ms for s in specs)
        return cls(seed, gap, tolerance)


def injected_copy(
    frames: dict[str, pd.DataFrame], channels: list[str], how: Injection
) -> tuple[dict[str, pd.DataFrame], list[Fault]]:
    """A copy of ``frames`` with faults of every kind written into each asset's ``channels``, as
    many as fit (the same for the same frames and seed), and the faults."""
    out: dict[str, pd.DataFrame] = {}
    faults: list[Fault] = []
    index = {asset: i for i, asset in enumerate(sorted(frames))}
    for asset, frame in frames.items():
        frame = frame.sort_values("ts_ms", kind="stable")
        names = [c for c in channels if c in frame.columns]
        x = frame[names].to_numpy(np.float64).copy()
        gap = max(how.gap, len(x) // 14)  # a long day spreads its faults over the day
        rng = np.random.default_rng([how.seed, INJECT_STREAM, index[asset]])
        ts = frame["ts_ms"].to_numpy(np.int64)
        faults += inject_series(x, ts, spread(x), asset, rng, names, first=how.gap, gap=gap)
        copy = frame.copy()
        copy[names] = x
        out[asset] = copy
    return out, faults


def injected_faults_png(
    original: dict[str, pd.DataFrame],
    injected: dict[str, pd.DataFrame],
    faults: list[Fault],
    figures: dict[str, Figures],
) -> bytes:
    """A PNG of the first injected fault of each kind: its channel before and after injection
    around it, the fault shaded, each version's alarms on that asset as bars below."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown: dict[str, int] = {}
    for i, fault in enumerate(faults):
        shown.setdefault(fault.kind, i)
    fig = Figure(figsize=(10, 2.3 * max(1, len(shown))), layout="constrained")
    axes = fig.subplots(max(1, len(shown)), 1, squeeze=False)[:, 0]
    for ax, i in zip(axes, shown.values()):
        fault = faults[i]
        channel = fault.channels[0]
        before, after = original[fault.asset_id], injected[fault.asset_id]
        ts = after["ts_ms"].to_numpy(np.int64)
        step = int(np.median(np.diff(ts))) if len(ts) > 1 else 1000
        pad = max(fault.end_ms - fault.start_ms, 120 * step)
        lo, hi = fault.start_ms - pad, fault.end_ms + pad
        near = (ts >= lo) & (ts <= hi)
        minutes = (ts[near] - fault.start_ms) / 60_000
        truth = before.sort_values("ts_ms", kind="stable")[channel].to_numpy()[near]
        ax.plot(minutes, truth, color="0.6", lw=0.8, label="real readings")
        ax.plot(
            minutes, after[channel].to_numpy()[near], color="tab:blue", lw=0.9, label="injected"
        )
        ax.axvspan(0, (fault.end_ms - fault.start_ms) / 60_000, color="tab:red", alpha=0.12)
        verdicts = []
        for row, (role, each) in enumerate(figures.items()):
            found = each.hits[i] if i < len(each.hits) else False
            verdicts.append(f"{role} {each.version} {'found it' if found else 'missed it'}")
            for asset, start, end in each.alarms:
                if asset == fault.asset_id and start <= hi and end >= lo:
                    ax.hlines(
                        0.04 + 0.06 * row,
                        (max(start, lo) - fault.start_ms) / 60_000,
                        (min(end, hi) - fault.start_ms) / 60_000,
                        transform=ax.get_xaxis_transform(),
                        colors=COLOURS.get(role, "k"),
                        lw=4,
                        label=f"{role} alarm",
                    )
        ax.set_title(
            f"{fault.kind} on {fault.asset_id} {', '.join(fault.channels)}: " + "; ".join(verdicts),
            fontsize=9,
        )
        ax.set_ylabel(channel, fontsize=8)
        ax.tick_params(labelsize=7)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=7, loc="upper right")
    axes[-1].set_xlabel("minutes from the fault's start", fontsize=8)
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return buffer.getvalue()
