"""Sensor CSV files: the unit of numeric times, and times that repeat or go backwards."""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np
import pytest

from sensorwatch.pipeline.data.csvfiles import TIME_UNITS, read_sensor_csv
from sensorwatch.pipeline.errors import SourceError

START_MS = 1_583_748_873_000  # 2020-03-09 10:14:33 UTC


def write(path: Path, times: list[object], header: str = "ts,value", sep: str = ",") -> Path:
    path.write_text(header + "\n" + "".join(f"{t}{sep}{i}\n" for i, t in enumerate(times)))
    return path


@pytest.mark.parametrize(
    ("times", "want_ms"),
    [
        ([1_583_748_873, 1_583_748_874], [START_MS, START_MS + 1000]),  # epoch seconds
        (
            [1_583_748_873.25, 1_583_748_874.5],
            [START_MS + 250, START_MS + 1500],
        ),  # fractional seconds
        (
            [1_583_748_873.001, 1_583_748_873.002],
            [START_MS + 1, START_MS + 2],
        ),  # not floored to 0.999 ms
        ([START_MS, START_MS + 100], [START_MS, START_MS + 100]),  # milliseconds
        ([START_MS * 1000 + 400, START_MS * 1000 + 2600], [START_MS, START_MS + 3]),  # microseconds
        (
            [START_MS * 10**6 + 123_456, START_MS * 10**6 + 10**9],
            [START_MS, START_MS + 1000],
        ),  # nanoseconds, exact
        ([1e8, 4_102_444_800], [10**11, 4_102_444_800_000]),  # the ends of the range: 1973 and 2100
    ],
)
def test_the_unit_of_numeric_times_is_told_from_their_magnitude(
    times: list[float], want_ms: list[int], tmp_path: Path
) -> None:
    frame = read_sensor_csv(write(tmp_path / "data.csv", times))
    assert frame.ts_ms.dtype == np.int64
    assert frame.ts_ms.tolist() == want_ms


@pytest.mark.parametrize(
    "times",
    [
        [0, 1, 2],  # relative times: seconds or milliseconds?
        [99_999_999, 100_000_000],  # starts before 1973 in seconds
        [1_600_000_000, 1_600_000_000_000],  # seconds and milliseconds in one column
        [4_200_000_000, 4_200_000_001],  # after 2100 in seconds, before 1973 in milliseconds
    ],
)
def test_numbers_that_fit_no_unit_must_have_it_declared(times: list[int], tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", times)
    with pytest.raises(
        SourceError,
        match=r"cannot tell the unit of the numbers in 'ts' .*--time-unit s\|ms\|us\|ns",
    ):
        read_sensor_csv(path)


def test_a_declared_unit_is_used_as_it_is(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", [0, 1.5, 2])
    assert read_sensor_csv(path, time_unit="s").ts_ms.tolist() == [0, 1500, 2000]
    epoch_ms = write(tmp_path / "ms.csv", [1_600_000_000_000, 1_600_000_001_000])
    assert read_sensor_csv(epoch_ms, time_unit="us").ts_ms.tolist() == [
        1_600_000_000,
        1_600_000_001,
    ]


def test_a_declared_unit_that_puts_times_past_year_9999_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", [1_600_000_000_000, 1_600_000_001_000])
    with pytest.raises(
        SourceError, match=r"reach 1600000001000, beyond year 9999 in s: is the unit right\?"
    ):
        read_sensor_csv(path, time_unit="s")


def test_a_declared_time_unit_decides_where_inference_cannot(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", [0, 1, 2])
    assert read_sensor_csv(path, time_unit="s").ts_ms.tolist() == [0, 1000, 2000]
    assert read_sensor_csv(path, time_unit="ms").ts_ms.tolist() == [0, 1, 2]
    with pytest.raises(SourceError, match="cannot tell the unit"):
        read_sensor_csv(path)


def test_a_declared_unit_leaves_text_times_alone(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", ["2020-03-09T10:14:33Z", "2020-03-09T10:14:34Z"])
    assert read_sensor_csv(path, time_unit="s").ts_ms.tolist() == [START_MS, START_MS + 1000]


def test_an_empty_numeric_time_names_its_row(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", [1_600_000_000, "", 1_600_000_002])
    with pytest.raises(SourceError, match=r"data.csv: row 3 has no time in 'ts'$"):
        read_sensor_csv(path)


def test_repeated_times_are_refused_with_the_first_row_and_the_count(tmp_path: Path) -> None:
    times = [
        "2020-03-09 10:14:33",
        "2020-03-09 10:14:34",
        "2020-03-09 10:14:34",
        "2020-03-09 10:14:35",
        "2020-03-09 10:14:36",
        "2020-03-09 10:14:36",
        "2020-03-09 10:14:36",
    ]
    path = write(tmp_path / "data.csv", times, header="datetime;value", sep=";")  # SKAB's format
    with pytest.raises(SourceError) as err:
        read_sensor_csv(path)
    assert (
        str(err.value)
        == f"{path}: 3 rows repeat an earlier time (first: row 4, 2020-03-09 10:14:34)"
    )


def test_one_repeated_numeric_time(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", [1_600_000_000, 1_600_000_001, 1_600_000_001])
    with pytest.raises(SourceError) as err:
        read_sensor_csv(path)
    assert str(err.value) == f"{path}: 1 row repeats an earlier time (first: row 4, 1600000001)"


def test_times_that_go_backwards_are_refused_with_the_first_row(tmp_path: Path) -> None:
    times = [
        "2020-03-09T10:14:33Z",
        "2020-03-09T10:14:35Z",
        "2020-03-09T10:14:34Z",
        "2020-03-09T10:14:36Z",
    ]
    path = write(tmp_path / "data.csv", times, header="timestamp,value")
    with pytest.raises(SourceError) as err:
        read_sensor_csv(path)
    assert str(err.value) == (
        f"{path}: times go backwards at row 4 (2020-03-09T10:14:34Z after 2020-03-09T10:14:35Z); sort the file by time"
    )


def test_times_that_go_backwards_twice_say_how_often(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", [1_600_000_003, 1_600_000_002, 1_600_000_001.5])
    with pytest.raises(
        SourceError, match=r"at row 3 \(1600000002.0 after 1600000003.0\) and at 1 row more; sort"
    ):
        read_sensor_csv(path)


def test_a_header_without_rows_is_no_data(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", [])
    with pytest.raises(SourceError, match=r"data.csv: no readings \(only a header\)$"):
        read_sensor_csv(path)


def test_a_directory_is_not_a_csv_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=f"^{tmp_path}: is a directory, not a CSV file$"):
        read_sensor_csv(tmp_path)


def test_the_command_line_offers_the_same_units() -> None:
    from sensorwatch.pipeline.cli.options import TimeUnit

    choices = typing.get_args(typing.get_args(typing.get_args(TimeUnit)[0])[0])
    assert choices == TIME_UNITS == ("s", "ms", "us", "ns")


def test_every_skab_file_still_reads_with_rising_times(skab_dir: Path) -> None:
    files = sorted(skab_dir.rglob("*.csv"))
    assert len(files) == 35
    for path in files:
        frame = read_sensor_csv(path)
        assert len(frame) > 0 and (np.diff(frame.ts_ms) > 0).all(), path
