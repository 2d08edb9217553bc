"""Reading sensor CSV files: SKAB's ``;``-separated files and plain CSV with a timestamp column.

Times are ISO-8601 text or numbers since 1970. A numeric time column's unit (``s``, ``ms``,
``us``, ``ns``) is told from its magnitude: epoch times between 1973 and 2100 fall in ranges that
do not overlap from one unit to the next. Times that fit no single range (relative times,
counters) must have their unit declared.

>>> [unit for unit, (low, high) in EPOCH_RANGES.items() if low <= 1_600_000_000.25 <= high]
['s']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd

from sensorwatch.pipeline.errors import SourceError

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


@dataclass(frozen=True)
class SensorFrame:
    """A file's readings: event times (epoch ms), channel names, values (rows × channels), labels."""

    path: Path
    ts_ms: np.ndarray
    channels: list[str]
    values: np.ndarray
    labels: pd.DataFrame

    def __len__(self) -> int:
        return len(self.ts_ms)


def _separator(path: Path) -> str:
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        header = fh.readline()
    return ";" if header.count(";") > header.count(",") else ","


def read_sensor_csv(
    path: str | Path, time_column: str | None = None, time_unit: TimeUnit | None = None
) -> SensorFrame:
    """Read one CSV: a time column (ISO-8601 or epoch numbers), numeric channels, optional labels.

    ``time_unit`` is the unit of a numeric time column (``s``, ``ms``, ``us`` or ``ns``); without
    it the unit is inferred from the magnitudes, and a column that fits no unit is refused. Times
    must rise: a repeated time or one that goes backwards is refused with the row (the file's line
    number). Label columns (``anomaly``, ``changepoint``, ...) are kept apart and never used as
    channels.
    """
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
    ts = _parse_times(df[tcol], path, tcol, time_unit)
    _check_order(ts, df[tcol], path)
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
    return SensorFrame(path, ts, [str(c) for c in channels], values, labels.reset_index(drop=True))


def _parse_times(col: pd.Series, path: Path, name: str, unit: TimeUnit | None) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return _numeric_times(col, path, name, unit)
    parsed = pd.to_datetime(col, errors="coerce", utc=True, format="mixed")
    if parsed.isna().any():
        row = int(np.argmax(parsed.isna().to_numpy()))
        raise SourceError(
            f"{path}: row {row + 2} has an unreadable time {col.iloc[row]!r} in {name!r}"
        )
    return parsed.dt.as_unit("ms").astype("int64").to_numpy(np.int64)


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


def _check_order(ts: np.ndarray, col: pd.Series, path: Path) -> None:
    """Refuse times that go backwards, then times that repeat, naming the first row and the count."""
    step = np.diff(ts)
    back = np.flatnonzero(step < 0)
    if back.size:
        i = int(back[0]) + 1
        more = f" and at {_rows(back.size - 1)} more" if back.size > 1 else ""
        raise SourceError(
            f"{path}: times go backwards at row {i + 2} ({col.iloc[i]} after {col.iloc[i - 1]})"
            f"{more}; sort the file by time"
        )
    same = np.flatnonzero(step == 0)
    if same.size:
        i = int(same[0]) + 1
        verb = "repeats" if same.size == 1 else "repeat"
        raise SourceError(
            f"{path}: {_rows(same.size)} {verb} an earlier time (first: row {i + 2}, {col.iloc[i]})"
        )


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"
