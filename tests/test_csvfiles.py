"""Sensor CSV files: the unit of numeric times; times that repeat, go backwards, or change clocks."""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np
import pytest

from sensorwatch.pipeline.data.csvfiles import read_sensor_csv
from sensorwatch.pipeline.data.times import TIME_UNITS
from sensorwatch.pipeline.errors import SourceError, UserError

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


def test_repeated_times_are_kept_once_the_first_and_counted(tmp_path: Path) -> None:
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
    frame = read_sensor_csv(path)
    # The values are the row numbers: the first row of each time stays, as the stream keeps the
    # first reading of a time and sets a later one aside as a duplicate.
    assert frame.values[:, 0].tolist() == [0, 1, 3, 4]
    assert frame.ts_ms.tolist() == [START_MS + i * 1000 for i in range(4)]
    assert (frame.repeats, frame.moved) == (3, 0)
    assert frame.note == f"{path}: 3 rows repeat an earlier time (kept the first of each)"
    one = read_sensor_csv(
        write(tmp_path / "one.csv", [1_600_000_000, 1_600_000_001, 1_600_000_001])
    )
    assert one.note == f"{one.path}: 1 row repeats an earlier time (kept the first of each)"


def test_rows_with_an_empty_value_are_left_out_and_counted(tmp_path: Path) -> None:
    # As the service leaves out a reading it cannot use: the row goes, its time is remembered
    # (detect writes it back, unscored), and a column without any value is no channel.
    path = tmp_path / "data.csv"
    path.write_text(
        "ts,a,b,dead,anomaly\n"
        "1600000000,0,10,,0\n"
        "1600000001,,11,,0\n"  # empty
        "1600000002,2,inf,,1\n"  # not finite
        "1600000003,3,13,,0\n"
        "1600000001,1,11,,0\n"  # the same time again, complete: this one is kept
        "1600000004,nan,14,,0\n"
    )
    frame = read_sensor_csv(path)
    assert frame.channels == ["a", "b"]
    assert frame.values.tolist() == [[0, 10], [1, 11], [3, 13]]
    assert frame.ts_ms.tolist() == [1_600_000_000_000, 1_600_000_001_000, 1_600_000_003_000]
    assert frame.labels["anomaly"].tolist() == [0, 0, 0]
    assert frame.left_out_ms.tolist() == [1_600_000_002_000, 1_600_000_004_000]
    assert (frame.empty, frame.blank, frame.repeats, frame.moved) == (3, ("dead",), 0, 1)
    assert frame.note == (
        f"{path}: 1 row out of order (sorted), 3 rows with an empty, text or non-finite value "
        "(left out, as the service leaves out a reading it cannot use), no value in column "
        "'dead' (not a channel)"
    )
    with pytest.raises(SourceError) as err:
        read_sensor_csv(path, strict=True)
    assert str(err.value) == (
        f"{path}: row 2 column 'dead' is empty or not finite (6 rows in all; --strict refuses "
        "them, without it they are left out)"
    )
    none = tmp_path / "none.csv"
    none.write_text("ts,a\n1600000000,\n1600000001,\n")
    with pytest.raises(SourceError, match=r"none.csv: no value in any channel column$"):
        read_sensor_csv(none)


def test_an_index_written_out_with_the_data_is_no_channel(tmp_path: Path) -> None:
    # pandas' to_csv writes its index as a first column without a name: a row counter is no
    # reading, and an unnamed first column of times is the time column.
    counted = tmp_path / "counted.csv"
    counted.write_text(
        ",timestamp,value,id\n0,2020-03-09 10:00:00,1.5,7\n1,2020-03-09 10:01:00,2.5,8\n"
        "2,2020-03-09 10:02:00,0.5,9\n"
    )
    frame = read_sensor_csv(counted)
    assert frame.channels == ["value"]
    assert frame.counters == ("Unnamed: 0", "id")
    assert frame.note == f"{counted}: columns 'Unnamed: 0', 'id' number the rows (not a channel)"
    timed = tmp_path / "timed.csv"
    timed.write_text(
        ",value\n2020-03-09 10:00:00,1\n2020-03-09 10:01:00,2\n2020-03-09 10:02:00,4\n"
    )
    frame = read_sensor_csv(timed)
    assert (frame.channels, frame.note) == (["value"], None)
    assert frame.ts_ms.tolist() == [START_MS - 873_000 + i * 60_000 for i in range(3)]


def test_a_text_column_named_like_a_time_is_the_time_column(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        "uptime_h,update,Date Time (UTC),flow\n1,ok,2020-03-09 10:00:00,1.5\n"
        "2,ok,2020-03-09 10:01:00,2.5\n"
    )
    frame = read_sensor_csv(path)
    assert frame.channels == ["uptime_h", "flow"]  # a number named like a time is a reading
    assert frame.ts_ms.tolist() == [START_MS - 873_000, START_MS - 813_000]
    none = tmp_path / "none.csv"
    none.write_text("uptime_h,flow\n1,1.5\n2,2.5\n")
    with pytest.raises(SourceError, match=r"none.csv: no time column \(looked for datetime, "):
        read_sensor_csv(none)


def test_a_column_of_text_is_no_channel_and_a_word_among_numbers_is_an_empty_value(
    tmp_path: Path,
) -> None:
    path = tmp_path / "plant.csv"
    path.write_text(
        "ts,status,flow\n1600000000,ON,1.5\n1600000001,ON,n/a\n1600000002,OFF,2.5\n"
        "1600000003,ON,3.5\n"
    )
    frame = read_sensor_csv(path)
    assert (frame.channels, frame.words, frame.empty) == (["flow"], ("status",), 1)
    assert frame.values[:, 0].tolist() == [1.5, 2.5, 3.5]
    assert frame.note == (
        f"{path}: 1 row with an empty, text or non-finite value (left out, as the service leaves "
        "out a reading it cannot use), only text in column 'status' (not a channel)"
    )
    with pytest.raises(SourceError) as err:
        read_sensor_csv(path, strict=True)
    assert str(err.value).startswith(f"{path}: column 'status' is not numeric (--strict refuses")


def test_rows_out_of_order_are_sorted_with_their_labels(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text(
        "timestamp,value,anomaly\n"
        "2020-03-09T10:14:33Z,0,0\n2020-03-09T10:14:35Z,1,1\n"
        "2020-03-09T10:14:34Z,2,0\n2020-03-09T10:14:36Z,3,0\n"
    )
    frame = read_sensor_csv(path)
    assert frame.ts_ms.tolist() == [START_MS + i * 1000 for i in range(4)]
    assert frame.values[:, 0].tolist() == [0, 2, 1, 3]
    assert frame.labels["anomaly"].tolist() == [0, 0, 1, 0]
    assert frame.note == f"{path}: 1 row out of order (sorted)"
    assert (
        read_sensor_csv(write(tmp_path / "sorted.csv", [1, 2, 3], "ts,value"), time_unit="s").note
        is None
    )


# Naive local times every 15 minutes across the end of summer time in Berlin (27 October 2024):
# the clock shows 02:00-02:45 twice, and steps back an hour from 02:45 to 02:00.
AUTUMN = [
    *(f"2024-10-27 01:{m:02d}" for m in (30, 45)),
    *(f"2024-10-27 02:{m:02d}" for m in (0, 15, 30, 45)),  # summer time (UTC+2)
    *(f"2024-10-27 02:{m:02d}" for m in (0, 15, 30, 45)),  # winter time (UTC+1)
    "2024-10-27 03:00",
]
AUTUMN_UTC_MS = 1_729_985_400_000 + np.arange(11) * 900_000  # 2024-10-26 23:30 UTC on


def test_an_hour_that_steps_back_without_a_zone_is_four_repeats(tmp_path: Path) -> None:
    frame = read_sensor_csv(write(tmp_path / "plant.csv", AUTUMN, header="datetime,value"))
    assert frame.values[:, 0].tolist() == [0, 1, 2, 3, 4, 5, 10]  # the second 02:00-02:45 dropped
    assert frame.note == f"{frame.path}: 4 rows repeat an earlier time (kept the first of each)"


def test_a_zone_resolves_the_repeated_hour_of_a_clock_change(tmp_path: Path) -> None:
    path = write(tmp_path / "plant.csv", AUTUMN, header="datetime,value")
    frame = read_sensor_csv(path, timezone="Europe/Berlin")
    assert frame.ts_ms.tolist() == AUTUMN_UTC_MS.tolist()  # every row, 15 minutes apart in UTC
    assert frame.values[:, 0].tolist() == list(range(11))
    assert frame.note is None
    # Most of each pass missing: the step back from 02:00 to 02:00 still tells 02:15 is winter time.
    gappy = write(tmp_path / "gappy.csv", AUTUMN[1:3] + AUTUMN[6:8] + AUTUMN[10:])
    assert (
        read_sensor_csv(gappy, timezone="Europe/Berlin").ts_ms.tolist()
        == AUTUMN_UTC_MS[[1, 2, 6, 7, 10]].tolist()
    )
    # No time of the hour shows twice, so pandas cannot infer it: the rows are read as summer time.
    once = write(tmp_path / "once.csv", AUTUMN[1:2] + AUTUMN[4:5] + AUTUMN[10:])
    got = read_sensor_csv(once, timezone="Europe/Berlin")
    assert got.ts_ms.tolist() == AUTUMN_UTC_MS[[1, 4, 10]].tolist() and got.note is None


def test_utc_offsets_are_honoured_and_a_zone_leaves_them_alone(tmp_path: Path) -> None:
    # The same instants as AUTUMN's 02:45 summer time, 02:00 and 02:15 winter time.
    times = ["2024-10-27T02:45+02:00", "2024-10-27T02:00+01:00", "2024-10-27 01:15:00Z"]
    for zone in (None, "Europe/Berlin", "Asia/Tokyo"):
        frame = read_sensor_csv(write(tmp_path / "offsets.csv", times), timezone=zone)
        assert frame.ts_ms.tolist() == AUTUMN_UTC_MS[[5, 6, 7]].tolist(), zone
        assert frame.note is None
    mixed = write(tmp_path / "mixed.csv", ["2024-10-27 03:00", "2024-10-27T02:00+01:00"])
    frame = read_sensor_csv(mixed, timezone="Europe/Berlin")  # a naive time in the zone
    assert frame.ts_ms.tolist() == AUTUMN_UTC_MS[[6, 10]].tolist()
    assert frame.note == f"{mixed}: 1 row out of order (sorted)"


def test_a_time_in_the_hour_a_clock_change_skips_is_read_as_before_it(tmp_path: Path) -> None:
    # Berlin, 31 March 2024: 02:00 local becomes 03:00; a clock still at UTC+1 writes 02:30.
    path = write(
        tmp_path / "spring.csv", ["2024-03-31 01:30", "2024-03-31 02:30", "2024-03-31 03:45"]
    )
    frame = read_sensor_csv(path, timezone="Europe/Berlin")
    assert frame.ts_ms.tolist() == [1_711_845_000_000, 1_711_848_600_000, 1_711_849_500_000]
    assert (
        frame.note == f"{path}: 1 row in the hour a clock change skips (read as before the change)"
    )


def test_strict_refuses_repeated_and_backward_times_with_the_first_row(tmp_path: Path) -> None:
    path = write(tmp_path / "plant.csv", AUTUMN, header="datetime,value")
    with pytest.raises(SourceError) as err:
        read_sensor_csv(path, strict=True)
    assert str(err.value) == (
        f"{path}: row 8 (2024-10-27 02:00) repeats an earlier time (4 rows repeated, 0 out of order; "
        "--strict refuses them, without it they are kept once and sorted)"
    )
    assert read_sensor_csv(path, strict=True, timezone="Europe/Berlin").note is None
    back = write(
        tmp_path / "back.csv", [1_600_000_003, 1_600_000_002, 1_600_000_001.5, 1_600_000_003]
    )
    with pytest.raises(SourceError) as err:
        read_sensor_csv(back, strict=True)
    assert str(err.value) == (
        f"{back}: row 3 (1600000002.0) goes back in time (after 1600000003.0) (1 row repeated, "
        "2 out of order; --strict refuses them, without it they are kept once and sorted)"
    )


@pytest.mark.parametrize("zone", ["Mars/Olympus", "europe/berlin", "", "../etc/passwd", "UTC+2"])
def test_a_zone_that_is_none_is_one_line(zone: str, tmp_path: Path) -> None:
    path = write(tmp_path / "plant.csv", AUTUMN, header="datetime,value")
    with pytest.raises(UserError) as err:
        read_sensor_csv(path, timezone=zone)
    assert str(err.value) == (
        f"timezone: no time zone {zone!r} (give an IANA name such as Europe/Berlin or UTC)"
    )


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
