"""The simulated plant: shapes, determinism, physics-like correlations, and labelled faults."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sensorwatch.pipeline.dev.simulator import (
    CHANNELS,
    FAULT_GAP,
    FAULT_KINDS,
    FIRST_FAULT,
    NOISE,
    Fault,
    Simulator,
    labels,
    readings,
)
from sensorwatch.schemas.reading_encoder import encode_reading
from sensorwatch.schemas.readings import Limits, parse_reading


def _asset(frame: pd.DataFrame, asset: str) -> pd.DataFrame:
    return frame[frame["asset_id"] == asset].reset_index(drop=True)


def test_normal_frame_shape_order_and_time_grid() -> None:
    frame = Simulator(assets=3, seed=1, interval_s=2.0, start_ms=1_000).normal(50)
    assert list(frame.columns) == ["asset_id", "ts_ms", *CHANNELS]
    assert len(frame) == 150 and frame[CHANNELS].notna().all().all()
    assert list(frame["asset_id"][:3]) == ["pump-01", "pump-02", "pump-03"]
    assert frame["ts_ms"].is_monotonic_increasing
    assert (np.diff(_asset(frame, "pump-02")["ts_ms"]) == 2_000).all()
    assert frame["ts_ms"].iloc[0] == 1_000


def test_same_seed_same_plant_other_seed_other_plant() -> None:
    a = Simulator(assets=2, seed=5).with_faults(1_500)
    b = Simulator(assets=2, seed=5).with_faults(1_500)
    c = Simulator(assets=2, seed=6).with_faults(1_500)
    pd.testing.assert_frame_equal(a[0], b[0])
    assert a[1] == b[1]
    assert not np.allclose(a[0][CHANNELS], c[0][CHANNELS])


def test_successive_calls_continue_one_time_base() -> None:
    sim = Simulator(assets=2, seed=3)
    first = sim.normal(400)
    second, _ = sim.with_faults(1_000, faults_per_asset=1)
    whole = Simulator(assets=2, seed=3).normal(1_400)
    assert second["ts_ms"].iloc[0] == first["ts_ms"].iloc[-1] + 1_000
    # the state carries over: the join is as smooth as the inside of one long call
    pd.testing.assert_frame_equal(first, whole.iloc[:800])
    for asset in ("pump-01", "pump-02"):
        jump = abs(
            _asset(second, asset)["temperature"].iloc[0]
            - _asset(first, asset)["temperature"].iloc[-1]
        )
        assert jump < 1.0


def test_channels_follow_the_load_like_a_pump() -> None:
    pump = _asset(Simulator(assets=1, seed=11).normal(20_000), "pump-01")
    corr = pump[CHANNELS].corr()
    assert corr.loc["flow", "current"] > 0.9
    assert corr.loc["flow", "pressure"] > 0.9
    assert corr.loc["flow", "vibration"] > 0.9
    # temperature follows the load through a lag of minutes: it matches a smoothed flow best
    smoothed = pump["flow"].ewm(alpha=1 - np.exp(-1 / 200), adjust=False).mean()
    assert pump["temperature"].corr(smoothed) > pump["temperature"].corr(pump["flow"]) + 0.02
    assert pump["temperature"].corr(smoothed) > 0.9
    # the load moves within minutes too (steps and ramps), not only over the day
    assert pump["flow"].rolling(900).std().median() > 5


def test_pumps_differ_but_share_the_physics() -> None:
    frame = Simulator(assets=4, seed=2).normal(5_000)
    means = frame.groupby("asset_id")["flow"].mean()
    assert means.nunique() == 4
    for _, pump in frame.groupby("asset_id"):
        assert pump["flow"].corr(pump["current"]) > 0.9


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind_changes_only_its_window_and_measurably(kind: str) -> None:
    faulty, faults = Simulator(assets=3, seed=4).with_faults(
        3_000, faults_per_asset=2, kinds=(kind,)
    )
    clean = Simulator(assets=3, seed=4).normal(3_000)
    changed = ~np.isclose(faulty[CHANNELS].to_numpy(), clean[CHANNELS].to_numpy())
    inside = labels(faulty, faults)
    assert len(faults) == 6 and {f.kind for f in faults} == {kind}
    assert not changed[~inside].any()  # nothing outside the labelled rows moved
    for fault in faults:
        rows = labels(faulty, [fault])
        cols = [CHANNELS.index(c) for c in fault.channels]
        other = [i for i in range(len(CHANNELS)) if i not in cols]
        assert not changed[rows][:, other].any()  # nor any channel the label does not name
        delta = np.abs(
            faulty[CHANNELS].to_numpy()[rows][:, cols] - clean[CHANNELS].to_numpy()[rows][:, cols]
        )
        sigmas = delta / NOISE[cols]
        if kind == "stuck":
            frozen = faulty[list(fault.channels)].to_numpy()[rows]
            assert (frozen == frozen[0]).all()
            assert sigmas.max() > 5  # the true value moved away from the frozen one
        elif kind == "drift":
            assert sigmas[-1].max() > 20 and sigmas[0].max() < 1  # grows from nothing
        else:
            assert np.sqrt((sigmas**2).mean()) > 6, (kind, fault)


def test_stuck_sensors_freeze_while_their_true_value_moves() -> None:
    swings = []
    for seed in range(4):
        sim = Simulator(assets=4, seed=seed)
        spans = sim.spans()
        faulty, faults = sim.with_faults(4_000, faults_per_asset=2, kinds=("stuck",))
        clean = Simulator(assets=4, seed=seed).normal(4_000)
        for fault in faults:
            rows = labels(faulty, [fault])
            channel = fault.channels[0]
            true = clean.loc[rows, channel]
            swings.append((true.max() - true.min()) / spans.loc[fault.asset_id, channel])
    assert np.mean(np.array(swings) >= 0.3) >= 0.8
    assert np.median(swings) >= 0.3


def test_faults_are_placed_apart_and_late_enough() -> None:
    sim = Simulator(assets=4, seed=9)
    sim.normal(500)
    frame, faults = sim.with_faults(6_000, faults_per_asset=5)
    first_ts = frame["ts_ms"].iloc[0]
    for asset in sim.asset_ids:
        mine = sorted((f for f in faults if f.asset_id == asset), key=lambda f: f.start_ms)
        assert len(mine) == 5
        assert mine[0].start_ms >= first_ts + FIRST_FAULT * 1_000
        assert mine[-1].end_ms <= frame["ts_ms"].iloc[-1] + 1_000
        for before, after in zip(mine, mine[1:]):
            assert after.start_ms - before.end_ms >= FAULT_GAP * 1_000
        for fault in mine:
            length = fault.n_readings(1_000)
            assert 5 <= length <= 10 if fault.kind == "spike" else 60 <= length <= 300
    assert {f.kind for f in faults} == set(FAULT_KINDS)  # every kind shows up across the plant
    assert labels(frame, faults).sum() == sum(f.n_readings(1_000) for f in faults)


def test_too_few_readings_for_the_faults_is_an_error() -> None:
    with pytest.raises(ValueError, match="too few"):
        Simulator(assets=1).with_faults(500, faults_per_asset=3)
    with pytest.raises(ValueError, match="unknown fault kinds"):
        Simulator(assets=1).with_faults(500, faults_per_asset=1, kinds=("meltdown",))


def test_readings_round_trip_through_the_message_schema() -> None:
    frame = Simulator(assets=2, seed=1).normal(3)
    items = list(readings(frame))
    assert [r.asset_id for r in items] == list(frame["asset_id"])
    assert items[0].values == {c: float(frame[c].iloc[0]) for c in CHANNELS}
    parsed = parse_reading(
        encode_reading(items[1]), limits=Limits(65_536, 300_000), now_ms=items[1].ts_ms
    )
    assert parsed == items[1]


def test_fault_is_a_frozen_label() -> None:
    fault = Fault("pump-01", "spike", 0, 7_000, ("current",))
    assert fault.n_readings(1_000) == 7
    with pytest.raises(AttributeError):
        fault.kind = "drift"  # type: ignore[misc]
