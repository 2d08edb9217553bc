"""Reading sensor CSV files: SKAB's ``;``-separated files and plain CSV with a timestamp column.

Times are ISO-8601 text or numbers since 1970. A numeric time column's unit (``s``, ``ms``,
``us``, ``ns``) is told from its magnitude: epoch times between 1973 and 2100 fall in ranges that
do not overlap from one unit to the next. Times that fit no single range (relative times,
counters) must have their unit declared.

A file comes as it was exported: its rows are sorted by time, and a row whose time an earlier
row already had is dropped, as the service drops a duplicate reading (the first one stays); both
are counted (``SensorFrame.note``), and ``strict`` refuses such a file instead. Text times with a
UTC offset keep it; naive ones are UTC, or local times of ``timezone``: the hour a clock change
repeats is told apart by the order of the rows (pandas' ``ambiguous="infer"``, else the first
of a repeated time is the earlier one), and a time in the hour it skips is read with the offset
before the change (a clock that had not moved on yet).

>>> [unit for unit, (low, high) in EPOCH_RANGES.items() if low <= 1_600_000_000.25 <= high]
['s']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from sensorwatch.pipeline.errors import SourceError, UserError

TIME_COLUMNS = ("datetime", "timestamp", "ts", "time", "date")
LABEL_COLUMNS = ("anomaly", "changepoint", "label", "labels", "is_anomaly")

TimeUnit = Literal["s", "ms", "us", "ns"]
TIME_UNITS: tuple[str, ...] = get_args(TimeUnit)
PER_MS = {"s": 1e-3, "ms": 1.0, "us": 1e3, "ns": 1e6}  # units in one millisecond
# Epoch times from 1973-03-03 (1e8 s) to 2100-01-01 (4_102_444_800 s), in each unit.
EPOCH_RANGES = {
    unit: (100_000_000_000 * per_ms, 4_102_444_800_000 * per_ms) for unit, per_ms in PER_MS.items()
}
LATEST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: later times are a wrong unit, not data
# A text time that ends in a UTC offset (or Z, UTC, GMT) after its clock time.
OFFSET = r"(?i)\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?\s*(?:z|utc|gmt|[+-]\d\d(?::?\d\d)?)$"


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
        ]
        return f"{self.path}: {', '.join(s for s in said if s)}" if any(said) else None


def _separator(path: Path) -> str:
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        header = fh.readline()
    return ";" if header.count(";") > header.count(",") else ","


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``Europe/Berlin``, ``UTC``), or one line saying it is none.

    >>> time_zone("Europe/Berlin").key
    'Europe/Berlin'
    >>> time_zone("Mars/Olympus")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sensorwatch.pipeline.errors.UserError: timezone: no time zone 'Mars/Olympus' (give an IANA ...)
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(
            f"timezone: no time zone {name!r} (give an IANA name such as Europe/Berlin or UTC)"
        ) from None


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
    by time and a repeated time is kept once (the first), both counted in the frame's ``note``;
    with ``strict`` they are refused, naming the first such row (the file's line number). Label
    columns (``anomaly``, ``changepoint``, ...) are kept apart and never used as channels.
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
    tcol = time_column or next((lower[c] for c in TIME_COLUMNS if c in lower), None)
    if tcol is None or tcol not in df.columns:
        raise SourceError(f"{path}: no time column (looked for {', '.join(TIME_COLUMNS)})")
    ts, skipped = _parse_times(df[tcol], path, tcol, time_unit, zone)
    labels = df[[c for c in df.columns if c.lower().strip() in LABEL_COLUMNS]]
    channels = [c for c in df.columns if c != tcol and c not in labels.columns]
    bad = [c for c in channels if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise SourceError(f"{path}: column {bad[0]!r} is not numeric")
    if not channels:
        raise SourceError(f"{path}: no numeric channel columns")
    values = df[channels].to_numpy(np.float32)
    if not np.isfinite(values).all():
        row, col = np.argwhere(~np.isfinite(values))[0]
        raise SourceError(f"{path}: row {row + 2} column {channels[col]!r} is empty or not finite")
    order, repeats, moved = _in_time_order(ts, df[tcol], path, strict)
    return SensorFrame(
        path,
        ts[order],
        [str(c) for c in channels],
        values[order],
        labels.iloc[order].reset_index(drop=True),
        repeats,
        moved,
        skipped,
    )


def _parse_times(
    col: pd.Series, path: Path, name: str, unit: TimeUnit | None, zone: ZoneInfo | None
) -> tuple[np.ndarray, int]:
    """Epoch ms of every row, and how many local times fell in the hour a clock change skips."""
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return _numeric_times(col, path, name, unit), 0
    skipped = 0
    if zone is None:
        parsed = pd.to_datetime(col, errors="coerce", utc=True, format="mixed")
    else:
        text = col.astype(str).str.strip()
        aware = text.str.contains(OFFSET).to_numpy()
        parsed = pd.Series(pd.NaT, index=col.index, dtype="datetime64[us, UTC]")
        if aware.any():
            parsed[aware] = pd.to_datetime(text[aware], errors="coerce", utc=True, format="mixed")
        if not aware.all():
            local = pd.to_datetime(text[~aware], errors="coerce", format="mixed")
            parsed[~aware], skipped = _localize(local, zone)
    if parsed.isna().any():
        row = int(np.argmax(parsed.isna().to_numpy()))
        raise SourceError(
            f"{path}: row {row + 2} has an unreadable time {col.iloc[row]!r} in {name!r}"
        )
    return parsed.dt.as_unit("ms").astype("int64").to_numpy(np.int64), skipped


def _localize(local: pd.Series, zone: ZoneInfo) -> tuple[pd.Series, int]:
    """Naive local times of ``zone`` in UTC, and how many fell in a skipped hour.

    A repeated (autumn) hour is resolved from the order of the rows where pandas can infer it;
    where it cannot (one pass of the hour is missing), the first row of a wall time is the
    earlier (summer) one. A time in a skipped (spring) hour is read with the offset before it.
    """
    if local.dt.tz is not None:  # one offset in every row, in a form OFFSET does not know
        return local.dt.tz_convert("UTC"), 0
    try:
        aware = local.dt.tz_localize(zone, ambiguous="infer", nonexistent="NaT")
    except ValueError:
        first = ~local.duplicated(keep="first").to_numpy()
        aware = local.dt.tz_localize(zone, ambiguous=first, nonexistent="NaT")
    gap = aware.isna() & local.notna()
    out = aware.dt.tz_convert("UTC")
    if gap.any():  # fold=0: a time the clock skipped has the offset from before the change
        out[gap] = [
            pd.Timestamp(t.to_pydatetime().replace(tzinfo=zone)).tz_convert("UTC")
            for t in local[gap]
        ]
    return out, int(gap.sum())


def infer_time_unit(low: float, high: float) -> TimeUnit | None:
    """The unit in which both ``low`` and ``high`` are epoch times of 1973–2100, if there is one.

    >>> infer_time_unit(1_583_748_873, 1_583_752_000.5), infer_time_unit(1.6e12, 1.7e12)
    ('s', 'ms')
    >>> infer_time_unit(0, 35_000_400) is None, infer_time_unit(1.6e9, 1.6e12) is None
    (True, True)
    """
    for unit, (first, last) in EPOCH_RANGES.items():
        if first <= low and high <= last:
            return unit  # type: ignore[return-value]
    return None


def _numeric_times(col: pd.Series, path: Path, name: str, unit: TimeUnit | None) -> np.ndarray:
    """Epoch numbers in ``unit`` (or the inferred one) → epoch ms, to the nearest millisecond."""
    raw = col.to_numpy()
    if not np.isfinite(raw.astype(np.float64)).all():
        row = int(np.argmax(~np.isfinite(raw.astype(np.float64))))
        raise SourceError(f"{path}: row {row + 2} has no time in {name!r}")
    low, high = float(raw.min()), float(raw.max())
    if unit is None:
        unit = infer_time_unit(low, high)
        if unit is None:
            raise SourceError(
                f"{path}: cannot tell the unit of the numbers in {name!r} ({low:.15g} to {high:.15g} are not "
                f"epoch times of 1973-2100 in any one unit): declare it (--time-unit {'|'.join(TIME_UNITS)})"
            )
    elif unit not in PER_MS:
        raise ValueError(f"unknown time unit {unit!r}; choose from {', '.join(TIME_UNITS)}")
    per_ms = PER_MS[unit]
    extreme = max(low, high, key=abs)
    if abs(extreme) / per_ms > LATEST_MS:
        raise SourceError(
            f"{path}: the numbers in {name!r} reach {extreme:.15g}, beyond year 9999 in {unit}: is the unit right?"
        )
    if np.issubdtype(
        raw.dtype, np.integer
    ):  # exact, where float64 would lose the last digits of ns
        ints = raw.astype(np.int64)
        return ints * 1000 if unit == "s" else (ints + int(per_ms) // 2) // int(per_ms)
    return np.round(raw.astype(np.float64) / per_ms).astype(np.int64)


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


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"
