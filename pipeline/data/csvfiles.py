"""Reading sensor CSV files: SKAB's ``;``-separated files and plain CSV with a timestamp column
(its times read by ``times``).

A file comes as it was exported: its rows are sorted by time, and a row whose time an earlier
row already had is dropped, as the service drops a duplicate reading (the first one stays); a row
with an empty, text or non-finite value is left out, as the service leaves out a reading it cannot
use, and a column with no value at all, or only text, is no channel. All are counted (``SensorFrame.note``), and
``strict`` refuses such a file instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sensorwatch.pipeline.data.times import TimeUnit, parse_times, time_zone
from sensorwatch.pipeline.errors import SourceError

TIME_COLUMNS = ("datetime", "timestamp", "ts", "time", "date")
LABEL_COLUMNS = ("anomaly", "changepoint", "label", "labels", "is_anomaly")
ROW_NUMBERS = ("index", "id", "row", "#")  # the names of a row number written out


@dataclass(frozen=True)
class SensorFrame:
    """A file's readings: event times (epoch ms), channel names, values (rows × channels), labels."""

    path: Path
    ts_ms: np.ndarray
    channels: list[str]
    values: np.ndarray
    labels: pd.DataFrame
    repeats: int = 0  # rows dropped: their time was an earlier row's
    moved: int = 0  # rows earlier than a row before them, put in place
    skipped: int = 0  # local times in the hour a clock change skips
    empty: int = 0  # rows left out: a value empty or not finite
    blank: tuple[str, ...] = ()  # columns without any value: no channels
    # Columns that number the rows (an index written out): no channels.
    counters: tuple[str, ...] = ()
    words: tuple[str, ...] = ()  # columns of text only: no channels
    # The times of the rows left out (none of them a kept row's time), in order.
    left_out_ms: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def __len__(self) -> int:
        return len(self.ts_ms)

    @property
    def note(self) -> str | None:
        """One line on what reading the file put right, or None when nothing needed it."""
        said = [
            f"{_rows(self.repeats)} {_verb(self.repeats)} an earlier time (kept the first of each)"
            if self.repeats
            else "",
            f"{_rows(self.moved)} out of order (sorted)" if self.moved else "",
            f"{_rows(self.skipped)} in the hour a clock change skips (read as before the change)"
            if self.skipped
            else "",
            f"{_rows(self.empty)} with an empty, text or non-finite value (left out, as the "
            "service leaves out a reading it cannot use)"
            if self.empty
            else "",
            f"no value in {_columns(self.blank)} (not a channel)" if self.blank else "",
            f"{_columns(self.counters)} {'number' if len(self.counters) > 1 else 'numbers'} the "
            "rows (not a channel)"
            if self.counters
            else "",
            f"only text in {_columns(self.words)} (not a channel)" if self.words else "",
        ]
        return f"{self.path}: {', '.join(s for s in said if s)}" if any(said) else None


def _separator(path: Path) -> str:
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        header = fh.readline()
    return ";" if header.count(";") > header.count(",") else ","


def read_sensor_csv(
    path: str | Path,
    time_column: str | None = None,
    time_unit: TimeUnit | None = None,
    timezone: str | None = None,
    strict: bool = False,
) -> SensorFrame:
    """Read one CSV: a time column (ISO-8601 or epoch numbers), numeric channels, optional labels.

    ``time_unit`` is the unit of a numeric time column (``s``, ``ms``, ``us`` or ``ns``); without
    it the unit is inferred from the magnitudes, and a column that fits no unit is refused.
    ``timezone`` is the zone of text times without a UTC offset (default: UTC). Rows are sorted
    by time and a repeated time is kept once (the first); a row with an empty, text or non-finite
    value is left out (its time kept in ``left_out_ms``), and a column without any value or with
    only text is no channel.
    All are counted in the frame's ``note``; with ``strict`` they are refused, naming the first
    such row (the file's line number). Label columns (``anomaly``, ``changepoint``, ...) are kept
    apart and never used as channels.
    """
    zone = time_zone(timezone) if timezone is not None else None
    path = Path(path)
    if path.is_dir():
        raise SourceError(f"{path}: is a directory, not a CSV file")
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    try:
        df = pd.read_csv(path, sep=_separator(path))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: not a readable CSV file ({str(exc).splitlines()[0]})") from None
    if df.empty:
        raise SourceError(f"{path}: no readings (only a header)")
    lower = {c.lower().strip(): c for c in df.columns}
    tcol = (
        time_column
        or next((lower[c] for c in TIME_COLUMNS if c in lower), None)
        or _named_like_time(df)
        or _unnamed_time(df)
    )
    if tcol is None or tcol not in df.columns:
        raise SourceError(
            f"{path}: no time column (looked for {', '.join(TIME_COLUMNS)}, a text column whose "
            "name holds 'time' or 'date', and an unnamed first column)"
        )
    ts, skipped = parse_times(df[tcol], path, tcol, time_unit, zone)
    labels = df[[c for c in df.columns if c.lower().strip() in LABEL_COLUMNS]]
    candidates = [c for c in df.columns if c != tcol and c not in labels.columns]
    channels, values, counters, words = _channels(df, candidates, path, strict)
    finite = np.isfinite(values)
    if strict and not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise SourceError(
            f"{path}: row {row + 2} column {channels[col]!r} is empty or not finite "
            f"({_rows(int((~finite.all(axis=1)).sum()))} in all; --strict refuses them, without it "
            "they are left out)"
        )
    live = finite.any(axis=0)
    if not live.any():
        raise SourceError(f"{path}: no value in any channel column")
    complete = finite[:, live].all(axis=1)
    rows = np.flatnonzero(complete)
    order, repeats, moved = _in_time_order(ts[rows], df[tcol].iloc[rows], path, strict)
    order = rows[order]
    return SensorFrame(
        path,
        ts[order],
        [str(c) for c, kept in zip(channels, live) if kept],
        values[order][:, live],
        labels.iloc[order].reset_index(drop=True),
        repeats,
        moved,
        skipped,
        empty=int((~complete).sum()),
        blank=tuple(str(c) for c, kept in zip(channels, live) if not kept),
        counters=tuple(str(c) for c in counters),
        words=tuple(str(c) for c in words),
        left_out_ms=np.setdiff1d(ts[~complete], ts[order]),
    )


def _channels(
    df: pd.DataFrame, candidates: list, path: Path, strict: bool
) -> tuple[list, np.ndarray, tuple, tuple]:
    """The channel columns among ``candidates`` and their values (rows × channels, a text value
    among numbers as NaN), and the columns that are none: those that number the rows and those of
    text only; ``strict`` refuses any text column."""
    counters = tuple(c for c in candidates if numbers_rows(df[c]))
    channels = [c for c in candidates if c not in counters]
    text = [c for c in channels if not pd.api.types.is_numeric_dtype(df[c])]
    if text and strict:
        raise SourceError(
            f"{path}: column {text[0]!r} is not numeric (--strict refuses it; without it a column "
            "of text is no channel, and a text value among numbers is left out as an empty one)"
        )
    numbers = {c: pd.to_numeric(df[c], errors="coerce") for c in text}
    words = tuple(c for c in text if numbers[c].isna().all())
    channels = [c for c in channels if c not in words]
    if not channels:
        raise SourceError(f"{path}: no numeric channel columns")
    values = np.column_stack(
        [(numbers[c] if c in numbers else df[c]).to_numpy(np.float64) for c in channels]
    ).astype(np.float32)
    return channels, values, counters, words


def _named_like_time(df: pd.DataFrame) -> str | None:
    """The first text column whose name holds ``time`` or ``date`` (``timestamp_utc``, ``Date
    Time``) and whose first values read as times; a numeric one (``uptime``, ``runtime_h``) is a
    channel, and a word column (``update_status``) is not a time."""
    return next(
        (
            c
            for c in df.columns
            if any(w in str(c).lower() for w in ("time", "date"))
            and not pd.api.types.is_numeric_dtype(df[c])
            and pd.to_datetime(df[c].head(3), errors="coerce", format="mixed").notna().all()
        ),
        None,
    )


def _unnamed_time(df: pd.DataFrame) -> str | None:
    """A first column without a name (a time index written out) that does not number the rows."""
    first = df.columns[0]
    unnamed = str(first).startswith("Unnamed: ")
    return first if unnamed and not numbers_rows(df[first]) else None


def numbers_rows(col: pd.Series) -> bool:
    """Whether a column is an index written out with the data: unnamed (as pandas writes its
    index) or named as a row number is (``index``, ``id``, ``row``, ``#``), counting the rows up by
    one from any start. It says nothing of the process; a named channel that happens to count up
    stays a channel.

    >>> numbers_rows(pd.Series([0, 1, 2, 3], name="Unnamed: 0")), numbers_rows(pd.Series([5.0, 6, 7], name="id"))
    (True, True)
    >>> numbers_rows(pd.Series([0, 1, 3], name="id")), numbers_rows(pd.Series([0, 1, 2], name="flow"))
    (False, False)
    """
    name = str(col.name).strip().lower()
    if not (name.startswith("unnamed: ") or name in ROW_NUMBERS):
        return False
    if len(col) < 2 or not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return False
    return bool((np.diff(col.to_numpy(np.float64)) == 1.0).all())


def _in_time_order(
    ts: np.ndarray, col: pd.Series, path: Path, strict: bool
) -> tuple[np.ndarray, int, int]:
    """The rows to keep in time order (a repeated time: its first row, as the service keeps the
    first reading of a time), with the counts of repeated and out-of-order rows; ``strict``
    refuses either, naming the first such row."""
    repeat = pd.Series(ts).duplicated(keep="first").to_numpy()
    before = np.maximum.accumulate(ts)
    moved = ~repeat & (ts < np.r_[ts[:1], before[:-1]])
    if strict and (repeat.any() or moved.any()):
        i = int(np.argmax(repeat | moved))
        # Every row before the first offending one is in order: the one before it is the latest.
        what = (
            "repeats an earlier time"
            if repeat[i]
            else f"goes back in time (after {col.iloc[i - 1]})"
        )
        counts = f"{_rows(int(repeat.sum()))} repeated, {int(moved.sum())} out of order"
        raise SourceError(
            f"{path}: row {i + 2} ({col.iloc[i]}) {what} ({counts}; --strict refuses them, "
            "without it they are kept once and sorted)"
        )
    keep = np.flatnonzero(~repeat)
    order = keep[np.argsort(ts[keep], kind="stable")]
    return order, int(repeat.sum()), int(moved.sum())


def _verb(n: int) -> str:
    return "repeats" if n == 1 else "repeat"


def _columns(names: tuple[str, ...]) -> str:
    return f"column{'s' if len(names) > 1 else ''} {', '.join(repr(c) for c in names)}"


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"
