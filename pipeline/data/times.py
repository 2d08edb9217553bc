"""Times of sensor files: ISO-8601 text, with or without a UTC offset, or numbers since 1970.

A numeric time column's unit (``s``, ``ms``, ``us``, ``ns``) is told from its magnitude: epoch
times between 1973 and 2100 fall in ranges that do not overlap from one unit to the next. Times
that fit no single range (relative times, counters) must have their unit declared. Text times
with a UTC offset keep it; naive ones are UTC, or local times of a zone: the hour a clock change
repeats is told apart by the order of the rows (pandas' ``ambiguous="infer"``, else the first of a
repeated time is the earlier one), and a time in the hour it skips is read with the offset before
the change (a clock that had not moved on yet).

>>> [unit for unit, (low, high) in EPOCH_RANGES.items() if low <= 1_600_000_000.25 <= high]
['s']
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from sensorwatch.pipeline.errors import SourceError, UserError

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


def parse_times(
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
