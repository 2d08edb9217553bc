"""The picture a reviewer judges an anomaly by: the alarm in its context (the score against the
threshold over time, each channel's readings well before and after, where the alarm opened and
cleared), the worst window's reconstruction, each channel's error against the threshold, the
channels that drove it marked; where no context was kept, the worst window alone.

Rendered with matplotlib's object API on the Agg canvas (no pyplot state), so the review worker
can draw off the scoring thread.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from sensorwatch.pipeline.review.context import Context

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


def context_png(
    context: Context,
    span_ms: tuple[int, int],
    cleared: bool,
    worst: tuple[np.ndarray, np.ndarray, tuple[int, int]] | None,
    errors: np.ndarray,
    channels: Sequence[str],
    threshold: float,
    title: str,
    top: int = 2,
) -> bytes:
    """A PNG of an alarm in its context: the score against the threshold over time, each channel's
    readings well before and after, the alarm's span (where it opened and cleared) shaded, the
    worst window's reconstruction drawn where it lies, and the error per channel of that window.

    ``worst`` is the worst window's readings (W, C), its reconstruction (W, C) and its first and
    last reading's time; ``span_ms`` the alarm's first and last reading's time.

    >>> ts = np.arange(100) * 1000
    >>> c = Context(ts, np.zeros((100, 2)), ts, np.ones(100), np.full(100, 2.0))
    >>> png = context_png(c, (40_000, 60_000), True, None, np.array([3.0, 0.1]), ["a", "b"], 2.0, "t")
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import DateFormatter
    from matplotlib.figure import Figure

    def at(ms: np.ndarray | list[int]) -> np.ndarray:
        return np.asarray(ms, np.int64).astype("datetime64[ms]")

    errors = np.nan_to_num(np.asarray(errors, float), nan=0.0, posinf=np.finfo(np.float32).max)
    order = np.argsort(-errors)
    shown = sorted(order[:MOST_CHANNELS])
    marked = set(order[:top].tolist())
    rows = len(shown) + 1
    height = 1.2 + 0.95 * rows
    fig = Figure(figsize=(12, height), dpi=72)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(
        rows,
        2,
        width_ratios=(4, 1),
        left=0.1,
        right=0.98,
        bottom=0.55 / height,
        top=1 - 0.6 / height,
        wspace=0.18,
        hspace=0.18,
    )
    more = len(channels) - len(shown)
    fig.suptitle(
        title + (f"  ({more} quieter channels not shown)" if more > 0 else ""), fontsize=10
    )
    opened, closed = at(span_ms)

    def mark(ax, legend: bool = False) -> None:
        ax.axvspan(opened, closed, color="#f5b7b1", alpha=0.45, lw=0, label="alarm")
        ax.axvline(opened, color="#c0392b", lw=1.0, label="opened")
        ax.axvline(
            closed,
            color="#27ae60" if cleared else "#c0392b",
            lw=1.0,
            ls="-" if cleared else ":",
            label="cleared" if cleared else "open so far",
        )
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_formatter(DateFormatter("%H:%M:%S"))

    ax = fig.add_subplot(grid[0, 0])
    ax.plot(at(context.score_ms), context.scores, color="#2c3e50", lw=1.2, label="score")
    ax.step(
        at(context.score_ms),
        context.levels,
        where="post",
        color="#c0392b",
        lw=1.1,
        ls="--",
        label="threshold",
    )
    if len(context.scores) and np.nanmax(context.scores) > 50 * max(
        np.nanmax(context.levels), 1e-12
    ):
        ax.set_yscale("symlog", linthresh=max(float(np.nanmax(context.levels)) / 10, 1e-6))
    mark(ax)
    ax.set_ylabel("score", fontsize=8, rotation=0, ha="right", va="center")
    ax.legend(fontsize=7, loc="upper left", ncols=5, frameon=False)
    ax.tick_params(labelbottom=False)
    first = ax
    for row, c in enumerate(shown, start=1):
        ax = fig.add_subplot(grid[row, 0], sharex=first)
        hot = c in marked
        ax.plot(
            at(context.ts_ms),
            context.rows[:, c],
            color="#c0392b" if hot else "#2c3e50",
            lw=1.2,
            label="reading",
        )
        if worst is not None:
            _, recon, (w0, w1) = worst
            times = at(np.linspace(w0, w1, len(recon)).round())
            ax.plot(
                times,
                recon[:, c],
                color="#7f8c8d",
                lw=1.1,
                ls="--",
                label="reconstruction (worst window)",
            )
        mark(ax)
        ax.set_ylabel(
            channels[c] + (" ◀" if hot else ""),
            fontsize=8,
            color="#c0392b" if hot else "black",
            rotation=0,
            ha="right",
            va="center",
        )
        if row == 1:
            ax.legend(fontsize=7, loc="upper left", ncols=2, frameon=False)
        if row < rows - 1:
            ax.tick_params(labelbottom=False)
    ax.set_xlabel("time (UTC)", fontsize=8)
    bars = fig.add_subplot(grid[1:, 1])
    names = [channels[c] for c in shown][::-1]
    values = [errors[c] for c in shown][::-1]
    colors = ["#c0392b" if c in marked else "#95a5a6" for c in shown][::-1]
    bars.barh(names, values, color=colors)
    bars.axvline(threshold, color="black", ls=":", lw=1.2, label=f"threshold {threshold:.3g}")
    if max(values, default=0.0) > 50 * max(threshold, 1e-12):
        bars.set_xscale("symlog", linthresh=max(threshold / 10, 1e-6))
    bars.set_title("error per channel, worst window", fontsize=9)
    bars.tick_params(labelsize=7)
    bars.legend(fontsize=7, loc="lower right", frameon=False)
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
