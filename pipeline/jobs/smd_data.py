"""The Server Machine Dataset's files: which machines it holds, each machine's two halves
(``train/<machine>.csv.gz``, ``test/...``) and its test half's labels per row, from the inclusive
``[start, end]`` time intervals of ``labels.json``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from sensorwatch.pipeline.errors import SourceError


def smd_machines(data_dir: str | Path) -> list[str]:
    """The machines with a train half, a test half and labels, sorted (``machine-1-2`` ...)."""
    root = Path(data_dir)
    if not (root / "labels.json").is_file() or not (root / "train").is_dir():
        raise SourceError(
            f"no SMD data at {root}: --data must be the folder with train/, test/ and labels.json"
        )
    labelled = json.loads((root / "labels.json").read_text())
    names = sorted(
        p.name.removesuffix(".csv.gz")
        for p in (root / "train").glob("*.csv.gz")
        if (root / "test" / p.name).is_file() and f"test/{p.name}" in labelled
    )
    if not names:
        raise SourceError(f"no SMD machine under {root} has a train half, a test half and labels")
    return names


def _frame(path: Path):
    """One half: its ISO times (UTC) as epoch ms and its channels ``c0``…``c37``."""
    from sensorwatch.pipeline.data.csvfiles import SensorFrame

    table = pd.read_csv(path)
    ts = pd.to_datetime(table.pop("timestamp"), utc=True).dt.as_unit("ms").astype("int64")
    ts_ms, values = ts.to_numpy(), table.to_numpy(np.float32)
    return SensorFrame(path, ts_ms, list(table.columns), values, pd.DataFrame(index=table.index))


def read_machine(data_dir: Path, name: str):
    """(train, test, test labels 0/1): the two halves as ``SensorFrame`` and the labels per row."""
    train, test = (_frame(data_dir / half / f"{name}.csv.gz") for half in ("train", "test"))
    intervals = json.loads((data_dir / "labels.json").read_text())[f"test/{name}.csv.gz"]
    labels = np.zeros(len(test), np.int8)
    for start, end in intervals:
        lo, hi = (pd.Timestamp(t).value // 1_000_000 for t in (start, end))
        labels[(test.ts_ms >= lo) & (test.ts_ms <= hi)] = 1
    return train, test, labels
