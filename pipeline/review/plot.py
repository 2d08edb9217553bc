"""The picture a reviewer judges an anomaly by: each channel of the window with the model's
reconstruction, each channel's error against the threshold, the channels that drove it marked.

Rendered with matplotlib's object API on the Agg canvas (no pyplot state), so the review worker
can draw off the scoring thread.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

MOST_CHANNELS = (
    8  # a window of many channels shows its worst ones; the rest are counted in the title
)


def anomaly_png(
    window: np.ndarray,
    reconstruction: np.ndarray,
    errors: np.ndarray,
    channels: Sequence[str],
    threshold: float,
    title: str,
    top: int = 2,
) -> bytes:
    """A PNG of one window (W, C) and its reconstruction, per-channel ``errors`` (C) and ``threshold``.

    >>> png = anomaly_png(np.zeros((20, 3)), np.zeros((20, 3)), np.array([0.1, 5.0, 0.2]), ["a", "b", "c"], 1.0, "t")
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    errors = np.nan_to_num(np.asarray(errors, float), nan=0.0, posinf=np.finfo(np.float32).max)
    order = np.argsort(-errors)
    shown = sorted(order[:MOST_CHANNELS])
    marked = set(order[:top].tolist())
    rows = len(shown)
    height = 1.1 + 1.0 * rows
    fig = Figure(
        figsize=(10, height), dpi=72
    )  # a fixed layout: a constrained one doubles the drawing time
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(
        rows,
        2,
        width_ratios=(3, 1),
        left=0.12,
        right=0.98,
        bottom=0.5 / height,
        top=1 - 0.55 / height,
        wspace=0.25,
        hspace=0.15,
    )
    more = len(channels) - rows
    fig.suptitle(
        title + (f"  ({more} quieter channels not shown)" if more > 0 else ""), fontsize=10
    )
    steps = np.arange(window.shape[0])
    for row, c in enumerate(shown):
        ax = fig.add_subplot(grid[row, 0])
        hot = c in marked
        ax.plot(steps, window[:, c], color="#c0392b" if hot else "#2c3e50", lw=1.4, label="reading")
        ax.plot(
            steps, reconstruction[:, c], color="#7f8c8d", lw=1.1, ls="--", label="reconstruction"
        )
        ax.set_ylabel(
            channels[c] + (" ◀" if hot else ""),
            fontsize=8,
            color="#c0392b" if hot else "black",
            rotation=0,
            ha="right",
            va="center",
        )
        ax.tick_params(labelsize=7)
        if row == 0:
            ax.legend(fontsize=7, loc="upper left", ncols=2, frameon=False)
        if row < rows - 1:
            ax.set_xticklabels([])
    ax.set_xlabel("reading in window", fontsize=8)
    bars = fig.add_subplot(grid[:, 1])
    names = [channels[c] for c in shown][::-1]
    values = [errors[c] for c in shown][::-1]
    colors = ["#c0392b" if c in marked else "#95a5a6" for c in shown][::-1]
    bars.barh(names, values, color=colors)
    bars.axvline(threshold, color="black", ls=":", lw=1.2, label=f"threshold {threshold:.3g}")
    if max(values, default=0.0) > 50 * max(
        threshold, 1e-12
    ):  # a huge error would flatten every other bar
        bars.set_xscale("symlog", linthresh=max(threshold / 10, 1e-6))
    bars.set_title("error per channel", fontsize=9)
    bars.tick_params(labelsize=7)
    bars.legend(fontsize=7, loc="lower right", frameon=False)
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
