"""Any cadence through the command line: ``detect`` and ``train`` on a CSV every 5 minutes written
on Berlin's clock, and a file from which no window can form."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cadence_data import TRAIN_ROWS, signal, stamps
from helpers import sensorwatch_cli

pytestmark = pytest.mark.integration


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return sensorwatch_cli(*args, cwd=cwd, timeout=300)


def local_csv(path: Path, interval_ms: int) -> Path:
    """``write_csv``'s one channel stamped as a logger on Berlin's clock writes it: naive local
    times through the end of summer time (the hour 02:00-03:00 twice, at row 500), with one row
    written twice and two rows swapped."""
    ts, keep = stamps(interval_ms)
    change_ms = 1_603_587_600_000  # 2020-10-25 01:00 UTC: 03:00 summer time becomes 02:00
    ts = ts - ts[500] + change_ms
    local = pd.to_datetime(ts, unit="ms", utc=True).tz_convert("Europe/Berlin")
    frame = pd.DataFrame(
        {"datetime": local.strftime("%Y-%m-%d %H:%M:%S"), "value": signal(1)[:, 0]}
    )
    frame = frame[keep].reset_index(drop=True)
    frame = pd.concat([frame[:301], frame[300:301].assign(value=99.0), frame[301:]])
    frame.iloc[[350, 351]] = frame.iloc[[351, 350]].to_numpy()
    frame.to_csv(path, index=False)
    return path


def test_detect_and_train_on_a_two_column_csv_every_5_minutes(tmp_path: Path) -> None:
    data = local_csv(tmp_path / "plant.csv", 300_000)
    fixed = f"{data}: 1 row repeats an earlier time (kept the first of each), 1 row out of order (sorted)"
    done = cli(
        "detect",
        str(data),
        "--out",
        str(tmp_path / "out.csv"),
        "--epochs",
        "1",
        "--timezone",
        "Europe/Berlin",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert fixed in done.stderr.splitlines(), done.stderr
    assert done.stdout.startswith("wrote ")
    out = pd.read_csv(tmp_path / "out.csv")
    _, keep = stamps(300_000)
    assert len(out) == keep.sum() - TRAIN_ROWS  # the repeated row once, the swapped ones in place
    # The clock change repeats no time: times in UTC, rising, as far apart as the logger's.
    steps = pd.to_datetime(out["datetime"]).diff().dropna().dt.total_seconds()
    assert steps.min() > 0 and steps.max() < 2 * 300 * 1.4 + 1
    done = cli(
        "train",
        str(data),
        "--epochs",
        "1",
        "--timezone",
        "Europe/Berlin",
        "--tracking-uri",
        f"sqlite:///{tmp_path}/m.db",
        "--promote",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert fixed in done.stderr.splitlines(), done.stderr
    said = re.search(r"1 channel\(s\), one reading every ([0-9.]+) s", done.stdout)
    assert said and abs(float(said.group(1)) - 300) <= 15, (
        done.stdout
    )  # jitter and dropped readings
    # The process the training data chose is said, with the share it was chosen on.
    assert re.search(r"process (steady|moving): level share [01]\.[0-9]{2}\)", done.stdout), (
        done.stdout
    )


def test_a_file_from_which_no_window_can_form_says_why(tmp_path: Path) -> None:
    # Training rows every second, then one reading every ten minutes: each one resets the window.
    ts = np.r_[np.arange(400) * 1000, 400_000 + np.arange(1, 60) * 600_000]
    frame = pd.DataFrame({"ts": ts, "value": np.sin(np.arange(len(ts)) / 7)})
    frame.to_csv(tmp_path / "sparse.csv", index=False)
    done = cli(
        "detect",
        str(tmp_path / "sparse.csv"),
        "--out",
        str(tmp_path / "o.csv"),
        "--train-rows",
        "400",
        "--epochs",
        "1",
        "--time-unit",
        "ms",
        cwd=tmp_path,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "no window of 20 readings can form" in lines[0]
    assert "600 s apart (median), and a gap over 10 s resets the window" in lines[0]
