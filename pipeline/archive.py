"""The archive: what the service saw, as Parquet, for retraining and drift checks.

Two datasets under one root (a local folder, or an object-store URI such as ``s3://bucket/path``
through ``pyarrow.fs``), both partitioned by UTC day:

- ``readings/day=YYYY-MM-DD/``: every validated reading the service windowed (``asset_id``,
  ``ts_ms``, one float column per channel);
- ``scores/day=YYYY-MM-DD/``: every scored window (``asset_id``, ``ts_ms`` of its last reading,
  ``window_start_ms``, ``score``, ``threshold``, ``anomalous``, ``model_version``).

``ArchiveSink`` is a sink of the service's checkpoint: ``write`` keeps a poll's rows, ``flush``
writes one file per dataset and day, so the offsets that follow are committed only once their
readings are in the archive. A local file appears whole (written under a dot-name, then renamed;
readers skip dot-names); an object store shows an object only once its upload is complete. A
reading written twice (a replay after a crash between the archive flush and the commit) is read
once: ``read_archive`` keeps the first row of each asset and time.
"""

from __future__ import annotations

import copy
import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from sensorwatch.pipeline.stream.processor import Processor
    from sensorwatch.pipeline.stream.step import StepOutput

log = logging.getLogger("sensorwatch.pipeline")

DAY_MS = 86_400_000


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and root path of ``uri``: a local folder (made if missing) or an object store."""
    if "://" not in uri:
        path = Path(uri).absolute()
        path.mkdir(parents=True, exist_ok=True)
        return pafs.LocalFileSystem(), path.as_posix()
    fs, root = pafs.FileSystem.from_uri(uri)
    return fs, root.rstrip("/")


def _day(day_number: int) -> str:
    """The UTC date of a day counted from the epoch, as the archive's folders name it."""
    return str(np.datetime64(day_number, "D"))


class ArchiveSink:
    """Validated readings and window scores of each poll, to Parquet at each checkpoint flush."""

    def __init__(self, uri: str, processor: Processor) -> None:
        self.uri, self.processor = uri, processor
        self.fs, self.root = filesystem(uri)
        self._readings: list[pa.Table] = []
        self._scores: list[pa.Table] = []
        self.rows_written = 0

    def write(self, out: StepOutput) -> None:
        batch = out.decisions.windows
        if batch.released_ts is not None and len(batch.released_ts):
            data: dict[str, pa.Array] = {
                "asset_id": pa.array(batch.released_ids, pa.string()),
                "ts_ms": pa.array(batch.released_ts, pa.int64()),
            }
            for j, channel in enumerate(self.processor.detector.spec.channels):
                data[channel] = pa.array(batch.released_rows[:, j].astype(np.float64))
            self._readings.append(pa.table(data))
        if len(batch):
            self._scores.append(
                pa.table(
                    {
                        "asset_id": pa.array(batch.asset_ids, pa.string()),
                        "ts_ms": pa.array(batch.end_ms, pa.int64()),
                        "window_start_ms": pa.array(batch.start_ms, pa.int64()),
                        "score": pa.array(np.asarray(out.decisions.scores, np.float64)),
                        "threshold": pa.array(np.asarray(out.decisions.levels, np.float64)),
                        "anomalous": pa.array(np.asarray(out.decisions.anomalous, bool)),
                        "model_version": pa.array(
                            [self.processor.detector.version] * len(batch), pa.string()
                        ),
                    }
                )
            )

    def flush(self) -> None:
        for name, tables in (("readings", self._readings), ("scores", self._scores)):
            if tables:
                self._write(name, pa.concat_tables(tables, promote_options="permissive"))
                tables.clear()

    def detach(self) -> Callable[[], None]:
        """The rows taken so far, handed over: the call returned writes them (on the checkpoint's
        worker thread) while this sink takes the next polls' rows."""
        part = copy.copy(self)
        part._readings, part._scores = self._readings, self._scores
        self._readings, self._scores = [], []

        def write() -> None:
            before = part.rows_written
            part.flush()
            self.rows_written += part.rows_written - before

        return write

    def _write(self, dataset: str, table: pa.Table) -> None:
        days = np.asarray(table.column("ts_ms").to_numpy(), np.int64) // DAY_MS
        for day in np.unique(days):  # integers: a poll's rows mostly share one day
            part = table.filter(pa.array(days == day))
            folder = f"{self.root}/{dataset}/day={_day(int(day))}"
            self.fs.create_dir(folder, recursive=True)
            name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"  # names sort in write order
            if isinstance(self.fs, pafs.LocalFileSystem):
                staging = f"{folder}/.{name}"
                pq.write_table(part, staging, filesystem=self.fs)
                os.replace(staging, f"{folder}/{name}")  # whole or not at all
            else:
                pq.write_table(part, f"{folder}/{name}", filesystem=self.fs)
            self.rows_written += part.num_rows

    def close(self) -> None:
        pass


def read_archive(
    uri: str, start_ms: int | None = None, end_ms: int | None = None, assets: set[str] | None = None
) -> dict[str, pd.DataFrame]:
    """The archived readings of ``[start_ms, end_ms)``, one frame per asset in the order they were
    archived (time order, as the service releases them: nothing is re-sorted, so data written out
    of order by anything else shows), with the score of the window each reading ends (NaN where
    none ended there) beside its channels."""
    fs, root = filesystem(uri)
    readings = _read(fs, f"{root}/readings", start_ms, end_ms)
    if readings.empty:
        return {}
    scores = _read(fs, f"{root}/scores", start_ms, end_ms)
    if assets is not None:
        readings = readings[readings["asset_id"].isin(assets)]
    readings = readings.drop_duplicates(["asset_id", "ts_ms"])
    if not scores.empty:
        scores = scores.drop_duplicates(["asset_id", "ts_ms"], keep="last")
        readings = readings.merge(scores, on=["asset_id", "ts_ms"], how="left")
    return {
        asset: frame.drop(columns="asset_id").reset_index(drop=True)
        for asset, frame in readings.groupby("asset_id", sort=True)
    }


def _read(
    fs: pafs.FileSystem, folder: str, start_ms: int | None, end_ms: int | None
) -> pd.DataFrame:
    info = fs.get_file_info(folder)
    if info.type == pafs.FileType.NotFound:
        return pd.DataFrame()
    days = sorted(
        i.base_name.removeprefix("day=")
        for i in fs.get_file_info(pafs.FileSelector(folder))
        if i.type == pafs.FileType.Directory and i.base_name.startswith("day=")
    )
    lo = None if start_ms is None else _day(int(start_ms) // DAY_MS)
    hi = None if end_ms is None else _day((int(end_ms) - 1) // DAY_MS)
    tables = []
    for day in days:
        if (lo is not None and day < lo) or (hi is not None and day > hi):
            continue
        files = sorted(
            i.path
            for i in fs.get_file_info(pafs.FileSelector(f"{folder}/day={day}"))
            if i.type == pafs.FileType.File and not i.base_name.startswith((".", "_"))
        )
        tables.extend(pq.read_table(f, filesystem=fs) for f in files)
    if not tables:
        return pd.DataFrame()
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    keep = np.ones(len(frame), bool)
    if start_ms is not None:
        keep &= frame["ts_ms"].to_numpy() >= start_ms
    if end_ms is not None:
        keep &= frame["ts_ms"].to_numpy() < end_ms
    return frame[keep]
