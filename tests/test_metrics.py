"""Point metrics and the NAB score on small cases worked out by hand."""

import numpy as np
import pytest

from sensorwatch.models.metrics import (
    PROFILES,
    NabTally,
    PointCounts,
    changepoints,
    nab_scores,
    nab_tally,
    nab_windows,
    point_counts,
    scaled_sigmoid,
)

S = 1000  # one second in ms


def test_point_counts_and_rates() -> None:
    c = point_counts([1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 0, 1, 0, 0, 0, 0])
    assert c == PointCounts(tp=2, fp=1, fn=1, tn=4)
    assert c.f1 == pytest.approx(2 / 3)  # 2 / (2 + (1 + 1) / 2)
    assert c.far == pytest.approx(20.0)  # 1 of 5 normal points
    assert c.mar == pytest.approx(100 / 3)  # 1 of 3 anomalous points


def test_counts_are_pooled_before_rates() -> None:
    a = point_counts([1] + [0] * 9, [1] + [0] * 9)  # perfect
    b = point_counts([1] + [0] * 9, [0] + [1] * 9)  # every normal point flagged
    pooled = a + b
    assert pooled == PointCounts(tp=1, fp=9, fn=1, tn=9)
    assert pooled.far == pytest.approx(50.0)  # 9 / 18, not the mean of 0 % and 100 %
    assert pooled.f1 == pytest.approx(1 / 6)  # 1 / (1 + 10 / 2)


def test_rates_of_empty_counts_are_zero() -> None:
    assert (PointCounts().f1, PointCounts().far, PointCounts().mar) == (0.0, 0.0, 0.0)


def test_point_counts_reject_different_lengths() -> None:
    with pytest.raises(ValueError):
        point_counts([1, 0], [1])


def test_changepoints_are_switches_and_an_anomalous_start() -> None:
    assert changepoints([0, 1, 1, 0]).tolist() == [0, 1, 0, 1]
    assert changepoints([1, 0]).tolist() == [1, 1]
    assert changepoints([]).tolist() == []


def test_windows_reach_right_and_a_window_reaching_into_the_next_cuts_it() -> None:
    assert nab_windows(np.array([100 * S])) == [(100 * S, 160 * S)]
    assert nab_windows(np.array([0, 30 * S])) == [(0, 60 * S), (60 * S, 90 * S)]
    # Touching windows: the next one already starts where this one ends.
    assert nab_windows(np.array([0, 60 * S])) == [(0, 60 * S), (60 * S, 120 * S)]


def test_scaled_sigmoid_runs_from_a_tp_to_a_fp() -> None:
    std, low_fp = PROFILES["standard"], PROFILES["low_fp"]
    assert scaled_sigmoid(0.0, std) == pytest.approx(1.0)
    assert scaled_sigmoid(1.0, std) == pytest.approx(-0.11)
    assert scaled_sigmoid(7.0, std) == pytest.approx(-0.11)  # past the end: the last grid point
    # Half-way, (A_tp + A_fp) / 2 up to the grid step: 0.445 and 0.39.
    assert scaled_sigmoid(0.5, std) == pytest.approx(0.445, abs=2e-3)
    assert scaled_sigmoid(0.5, low_fp) == pytest.approx(0.39, abs=2e-3)
    # Earlier is worth more.
    assert scaled_sigmoid(0.1, std) > scaled_sigmoid(0.4, std) > scaled_sigmoid(0.9, std)


def _file(n: int, true_rows: list[int], pred_rows: list[int]) -> NabTally:
    """A file of n rows one second apart, changepoints at the given rows."""
    ts = np.arange(n) * S
    true_cp, pred_cp = np.zeros(n, int), np.zeros(n, int)
    true_cp[true_rows], pred_cp[pred_rows] = 1, 1
    return nab_tally(true_cp, pred_cp, ts)


def test_perfect_and_null_detectors() -> None:
    assert nab_scores(_file(300, [50, 200], [50, 200])) == {
        "standard": 100.0,
        "low_fp": 100.0,
        "low_fn": 100.0,
    }
    assert nab_scores(_file(300, [50, 200], [])) == {"standard": 0.0, "low_fp": 0.0, "low_fn": 0.0}


def test_a_detection_half_way_through_its_window() -> None:
    tally = _file(200, [50], [80])  # window [50 s, 110 s], detected at 80 s: position 0.5
    assert tally.hits == (0.5,) and tally.false_positives == 0
    half_std = scaled_sigmoid(0.5, PROFILES["standard"])
    half_low_fp = scaled_sigmoid(0.5, PROFILES["low_fp"])
    scores = nab_scores(tally)
    # (S - null) / (perfect - null): standard and low FP have null -1, perfect 1; low FN null -2.
    assert scores["standard"] == pytest.approx(100 * (half_std + 1) / 2, abs=0.01)  # ≈ 72.2
    assert scores["low_fp"] == pytest.approx(100 * (half_low_fp + 1) / 2, abs=0.01)  # ≈ 69.4
    assert scores["low_fn"] == pytest.approx(100 * (half_std + 2) / 3, abs=0.01)  # ≈ 81.5


def test_false_positives_cost_a_fp_each() -> None:
    tally = _file(
        300, [100], [100, 20, 250]
    )  # a perfect hit, one switch before, one after the window
    assert tally.false_positives == 2
    scores = nab_scores(tally)
    assert scores["standard"] == pytest.approx(100 * (1 - 0.22 + 1) / 2)  # 89.0
    assert scores["low_fp"] == pytest.approx(100 * (1 - 0.44 + 1) / 2)  # 78.0
    assert scores["low_fn"] == pytest.approx(100 * (1 - 0.22 + 2) / 3, abs=0.01)  # 92.67


def test_only_the_first_detection_in_a_window_counts() -> None:
    tally = _file(300, [100], [100, 110, 120])
    assert tally.hits == (0.0,) and tally.false_positives == 0
    assert nab_scores(tally)["standard"] == 100.0


def test_a_missed_window_costs_a_fn() -> None:
    scores = nab_scores(_file(400, [50, 250], [50]))
    assert scores["standard"] == pytest.approx(50.0)  # (1 - 1 + 2) / 4
    assert scores["low_fn"] == pytest.approx(50.0)  # (1 - 2 + 4) / 6


def test_files_are_pooled_before_normalising() -> None:
    perfect = _file(100, [10], [10])
    missed = _file(400, [50, 150, 250], [])
    # (1 - 3) raw against null -4 and perfect 4: 25, not the mean of 100 and 0.
    assert nab_scores(perfect + missed)["standard"] == pytest.approx(25.0)


def test_a_detection_on_a_shared_boundary_counts_in_both_windows() -> None:
    # Windows [0, 60 s] and [60 s, 90 s]: a switch at 60 s ends the first and starts the second.
    tally = _file(200, [0, 30], [60])
    assert tally.windows == 2 and tally.hits == (1.0, 0.0) and tally.false_positives == 0
    assert nab_scores(tally)["standard"] == pytest.approx(100 * (-0.11 + 1 + 2) / 4)


def test_no_true_changepoints_means_every_switch_is_false() -> None:
    tally = _file(100, [], [10, 20])
    assert tally.windows == 0 and tally.false_positives == 2
    assert nab_scores(tally)["standard"] == 0.0  # nothing to normalise against
