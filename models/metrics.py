"""Detection-quality metrics as SKAB defines them: pooled point metrics and the NAB score.

Point metrics (outlier detection) pool the confusion counts of every file, then
``F1 = TP / (TP + (FP + FN) / 2)``, ``FAR = FP / (FP + TN) · 100`` and ``MAR = FN / (FN + TP) · 100``.

The NAB score (changepoint detection) follows SKAB's evaluation (the ``tsad`` package):

- a changepoint is predicted where the predicted label switches, and at the first row when it
  starts anomalous (``changepoints``);
- each true changepoint opens a detection window of ``window_ms`` to its right; when a window
  reaches into the next one, the next one starts where this one ends ("cut right window");
- the first predicted changepoint inside a window is a true positive, worth
  ``scaled_sigmoid(position)``: ``A_tp`` at the window's start falling to ``A_fp`` at its end;
  further ones in the same window count for nothing; a window without one is a miss (``A_fn``);
  every predicted changepoint outside all windows costs ``A_fp``;
- the raw sums of all files are normalised once: ``100 · (S − S_null) / (S_perfect − S_null)``,
  where the null detector misses every window and the perfect one hits each at its start.

>>> ts = np.arange(10) * 10_000                      # ten rows, 10 s apart
>>> true_cp = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
>>> pred = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 0])  # on at row 2 (20 s), off at row 9 (90 s)
>>> tally = nab_tally(true_cp, changepoints(pred), ts)
>>> nab_scores(tally)["standard"]                   # one perfect hit, one false positive
94.5

The window is [20 s, 80 s]: switching on at 20 s is a hit at its very start (+1), switching off
at 90 s falls outside every window (−0.11); null −1, perfect +1: 100 · 1.89 / 2 = 94.5.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

NAB_WINDOW_MS = 60_000
# tsad evaluates the scaled sigmoid on a grid of this many points across the window.
_GRID = 1000


@dataclass(frozen=True)
class Profile:
    """Weights of one NAB application profile (true positive, false positive, miss)."""

    a_tp: float
    a_fp: float
    a_fn: float


PROFILES: dict[str, Profile] = {
    "standard": Profile(1.0, -0.11, -1.0),
    "low_fp": Profile(1.0, -0.22, -1.0),
    "low_fn": Profile(1.0, -0.11, -2.0),
}


@dataclass(frozen=True)
class PointCounts:
    """Confusion counts of point labels; ``+`` pools them over files.

    >>> c = point_counts([1, 1, 0, 0], [1, 0, 1, 0])
    >>> c, round(c.f1, 2), c.far, c.mar
    (PointCounts(tp=1, fp=1, fn=1, tn=1), 0.5, 50.0, 50.0)
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: PointCounts) -> PointCounts:
        return PointCounts(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    @property
    def f1(self) -> float:
        denom = self.tp + (self.fp + self.fn) / 2
        return self.tp / denom if denom else 0.0

    @property
    def far(self) -> float:
        """False alarm rate in percent of the normal points."""
        return 100.0 * self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    @property
    def mar(self) -> float:
        """Missed alarm rate in percent of the anomalous points."""
        return 100.0 * self.fn / (self.fn + self.tp) if self.fn + self.tp else 0.0


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (first, last) index of every run of true values.

    >>> runs(np.array([0, 1, 1, 0, 1], bool))
    [(1, 2), (4, 4)]
    """
    padded = np.r_[False, np.asarray(flags, bool), False].astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def point_counts(true: Iterable[int] | np.ndarray, pred: Iterable[int] | np.ndarray) -> PointCounts:
    """Confusion counts of two equally long 0/1 label sequences."""
    t, p = np.asarray(true) == 1, np.asarray(pred) == 1
    if t.shape != p.shape:
        raise ValueError(f"true has {t.shape} labels, pred {p.shape}")
    return PointCounts(
        int((t & p).sum()), int((~t & p).sum()), int((t & ~p).sum()), int((~t & ~p).sum())
    )


def changepoints(labels: Iterable[int] | np.ndarray) -> np.ndarray:
    """Predicted changepoints of a 0/1 label sequence: 1 where it switches, and at row 0 if it is 1.

    >>> changepoints([1, 1, 0, 0, 1]).tolist()
    [1, 0, 1, 0, 1]
    """
    a = (np.asarray(labels) == 1).astype(np.int8)
    if a.size == 0:
        return a
    return np.concatenate([a[:1], np.abs(np.diff(a))]).astype(np.int8)


def nab_windows(cp_ts_ms: np.ndarray, window_ms: int = NAB_WINDOW_MS) -> list[tuple[int, int]]:
    """Detection windows ``[t, t + window_ms]`` right of each changepoint time; a window that reaches
    into the next one pushes that one's start to its own end.

    >>> nab_windows(np.array([0, 30_000, 200_000]))
    [(0, 60000), (60000, 90000), (200000, 260000)]
    """
    wins = [[int(t), int(t) + window_ms] for t in np.sort(np.asarray(cp_ts_ms, np.int64))]
    for prev, nxt in zip(wins, wins[1:]):
        if prev[1] >= nxt[0]:
            nxt[0] = prev[1]
    return [(a, b) for a, b in wins]


def scaled_sigmoid(position: float, profile: Profile) -> float:
    """Worth of a detection at ``position`` (0 = window start, 1 = window end): a scaled ``tanh``
    from ``a_tp`` to ``a_fp``, read off the same 1000-point grid tsad uses.

    >>> p = PROFILES["standard"]
    >>> scaled_sigmoid(0.0, p), scaled_sigmoid(1.0, p), round(scaled_sigmoid(0.5, p), 3)
    (1.0, -0.11, 0.444)
    """
    k = min(int(position * _GRID), _GRID - 1)
    x = -np.pi / 2 + k * np.pi / (_GRID - 1)
    half = (profile.a_tp - profile.a_fp) / 2
    return float(-half * np.tanh(x) / np.tanh(np.pi / 2) + half + profile.a_fp)


@dataclass(frozen=True)
class NabTally:
    """One file's (or several files') changepoint outcome, before normalisation.

    ``hits`` holds each detected window's relative position of its first detection; ``+`` pools files.
    """

    windows: int = 0
    hits: tuple[float, ...] = ()
    false_positives: int = 0
    delays_ms: tuple[int, ...] = field(default=(), compare=False)

    @property
    def misses(self) -> int:
        return self.windows - len(self.hits)

    def __add__(self, other: NabTally) -> NabTally:
        return NabTally(
            self.windows + other.windows,
            self.hits + other.hits,
            self.false_positives + other.false_positives,
            self.delays_ms + other.delays_ms,
        )

    def raw(self, profile: Profile) -> tuple[float, float, float]:
        """(score, null score, perfect score) under one profile."""
        score = profile.a_fp * self.false_positives + profile.a_fn * self.misses
        score += sum(scaled_sigmoid(p, profile) for p in self.hits)
        return score, profile.a_fn * self.windows, profile.a_tp * self.windows


def nab_tally(
    true_cp: np.ndarray, pred_cp: np.ndarray, ts_ms: np.ndarray, window_ms: int = NAB_WINDOW_MS
) -> NabTally:
    """Match one file's predicted changepoints (0/1 per row) to its true ones (0/1 per row)."""
    ts = np.asarray(ts_ms, np.int64)
    if not len(ts) == len(true_cp) == len(pred_cp):
        raise ValueError("true_cp, pred_cp and ts_ms must be equally long")
    pred_t = np.sort(ts[np.asarray(pred_cp) == 1])
    wins = nab_windows(ts[np.asarray(true_cp) == 1], window_ms)
    hits: list[float] = []
    delays: list[int] = []
    outside = np.ones(len(pred_t), bool)
    for start, end in wins:
        inside = (pred_t >= start) & (pred_t <= end)
        outside &= ~inside
        if inside.any():
            first = int(pred_t[np.argmax(inside)])
            hits.append((first - start) / (end - start) if end > start else 0.0)
            delays.append(first - start)
    return NabTally(len(wins), tuple(hits), int(outside.sum()), tuple(delays))


def nab_scores(tally: NabTally) -> dict[str, float]:
    """Normalised NAB scores (0 = null detector, 100 = perfect) of a pooled tally, per profile."""
    out = {}
    for name, profile in PROFILES.items():
        score, null, perfect = tally.raw(profile)
        out[name] = round(100.0 * (score - null) / (perfect - null), 2) if perfect != null else 0.0
    return out
