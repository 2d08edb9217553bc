"""Reading sensor CSV files: SKAB's ``;``-separated files and plain CSV with a timestamp column."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sensorwatch.pipeline.errors import SourceError

TIME_COLUMNS = ("datetime", "timestamp", "ts", "time", "date")
LABEL_COLUMNS = ("anomaly", "changepoint", "label", "labels", "is_anomaly")


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


def read_sensor_csv(path: str | Path, time_column: str | None = None) -> SensorFrame:
    """Read one CSV: a time column (ISO-8601 or epoch ms), numeric channels, optional labels.

    Label columns (``anomaly``, ``changepoint``, ...) are kept apart and never used as channels.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    try:
        df = pd.read_csv(path, sep=_separator(path))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: not a readable CSV file ({str(exc).splitlines()[0]})") from None
    lower = {c.lower().strip(): c for c in df.columns}
    tcol = time_column or next((lower[c] for c in TIME_COLUMNS if c in lower), None)
    if tcol is None or tcol not in df.columns:
        raise SourceError(f"{path}: no time column (looked for {', '.join(TIME_COLUMNS)})")
    ts = _parse_times(df[tcol], path, tcol)
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


def _parse_times(col: pd.Series, path: Path, name: str) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(col):
        return col.to_numpy(np.int64)
    parsed = pd.to_datetime(col, errors="coerce", utc=True, format="mixed")
    if parsed.isna().any():
        row = int(np.argmax(parsed.isna().to_numpy()))
        raise SourceError(f"{path}: row {row + 2} has an unreadable time {col.iloc[row]!r} in {name!r}")
    return parsed.dt.as_unit("ms").astype("int64").to_numpy(np.int64)
