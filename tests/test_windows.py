"""Windowing in event-time order: strides, re-ordering within grace, late data, duplicates, gaps."""

import numpy as np
import pytest

from sensorwatch.pipeline.stream.windows import Windower
from sensorwatch.schemas.records import Reading


def r(ts: int, asset: str = "p1") -> Reading:
    return Reading(asset, ts, {"a": float(ts), "b": -float(ts)})


def ends(batch) -> list[int]:
    return batch.end_ms.tolist()


def test_window_and_stride() -> None:
    w = Windower(["a", "b"], window=3, stride=2)
    out = w.add([r(t) for t in range(1, 9)])
    assert ends(out) == [3, 5, 7]
    assert out.windows[0, :, 0].tolist() == [1.0, 2.0, 3.0]
    assert out.windows[0, :, 1].tolist() == [-1.0, -2.0, -3.0]
    assert out.start_ms.tolist() == [1, 3, 5]


def test_windows_continue_across_batches_and_ring_wrap() -> None:
    w = Windower(["a", "b"], window=3)
    got = []
    for t in range(1, 30):
        got += ends(w.add([r(t)]))
    assert got == list(range(3, 30))
    last = w.add([r(30)])
    assert last.windows[0, :, 0].tolist() == [28.0, 29.0, 30.0]


@pytest.mark.parametrize("sizes", [[1] * 40, [7, 33], [40], [3, 29, 8]])
def test_windows_and_saved_state_do_not_depend_on_how_readings_were_split(sizes) -> None:
    """The ring takes a poll's readings as a block; its windows, and the state a checkpoint saves,
    are those of one reading at a time, whatever the poll sizes."""
    readings = [r(t) for t in range(1, 41)]
    one = Windower(["a", "b"], window=5, stride=2)
    expected = np.concatenate([one.add([x]).windows for x in readings])
    split = Windower(["a", "b"], window=5, stride=2)
    got, at = [], 0
    for size in sizes:
        got.append(split.add(readings[at : at + size]).windows)
        at += size
    np.testing.assert_array_equal(np.concatenate(got), expected)
    mine, theirs = split.export("p1"), one.export("p1")
    assert mine.keys() == theirs.keys()
    for key in mine:
        np.testing.assert_array_equal(np.asarray(mine[key]), np.asarray(theirs[key]), err_msg=key)


def test_assets_are_independent() -> None:
    w = Windower(["a", "b"], window=2)
    out = w.add([r(1, "x"), r(1, "y"), r(2, "y"), r(2, "x")])
    assert sorted(zip(out.asset_ids, ends(out))) == [("x", 2), ("y", 2)]


def test_out_of_order_within_grace_is_reordered() -> None:
    w = Windower(["a", "b"], window=2, grace_ms=2)
    out = w.add([r(1), r(3), r(2), r(5)])
    # 1, 2, 3 are released once 5 has been seen (5 - grace 2 = 3); 5 waits for its grace.
    assert ends(out) == [2, 3]
    assert out.windows[0, :, 0].tolist() == [1.0, 2.0]
    assert ends(w.flush()) == [5]


def test_late_and_duplicate_readings_are_returned_not_lost() -> None:
    w = Windower(["a", "b"], window=2, grace_ms=0)
    out = w.add([r(1), r(2), r(3)])
    assert ends(out) == [2, 3]
    out = w.add([r(2), r(3), r(0), r(4)])
    assert [x.ts_ms for x in out.duplicates] == [2, 3]
    assert [x.ts_ms for x in out.late] == [0]
    assert ends(out) == [4]
    assert out.released == 1


def test_duplicate_while_waiting_for_grace() -> None:
    w = Windower(["a", "b"], window=2, grace_ms=10)
    out = w.add([r(1), r(1)])
    assert len(out.duplicates) == 1 and out.released == 0


def test_gap_resets_the_buffer() -> None:
    w = Windower(["a", "b"], window=3, max_gap_ms=5)
    out = w.add([r(t) for t in (1, 2, 3, 20, 21, 22, 23)])
    assert out.gaps == 1
    assert ends(out) == [3, 22, 23]
    assert out.windows[1, :, 0].tolist() == [20.0, 21.0, 22.0]


def test_every_reading_is_accounted_for() -> None:
    rng = np.random.default_rng(3)
    ts = rng.integers(0, 400, size=2000)
    w = Windower(["a", "b"], window=5, grace_ms=7)
    a = w.add([r(int(t), f"a{t % 3}") for t in ts[:1000]])
    b = w.add([r(int(t), f"a{t % 3}") for t in ts[1000:]])
    c = w.flush()
    placed = sum(x.released + len(x.late) + len(x.duplicates) for x in (a, b, c))
    assert placed == 2000


def test_bad_window_rejected() -> None:
    with pytest.raises(ValueError):
        Windower(["a"], window=1)


def test_late_is_judged_against_the_newest_reading_seen() -> None:
    w = Windower(["a", "b"], window=2, grace_ms=3)
    out = w.add([r(10), r(8), r(6), r(11)])  # 8 is within grace of 10, 6 is not
    assert [x.ts_ms for x in out.late] == [6]
    assert out.released == 1 and ends(out) == []  # 8 is out; 10 and 11 wait for their grace
    assert ends(w.flush()) == [10, 11]
