"""Confirmed anomalies leave the retraining data (``without_confirmed``): exactly their readings
are dropped, and a series is cut where they were, so no training window bridges a removed stretch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from sensorwatch.models.cadence import TimeSeries
from sensorwatch.models.training import make_windows
from sensorwatch.pipeline.review.spans import without_confirmed


def test_without_confirmed_drops_exactly_the_confirmed_readings_and_cuts_the_series_there() -> None:
    series = {
        "a": TimeSeries(np.arange(10) * 1000, np.arange(10.0)[:, None]),
        "b": TimeSeries(np.arange(4) * 1000, np.arange(4.0)[:, None]),
    }
    confirmed = pd.DataFrame(
        {
            "asset_id": ["a", "a", "a", "c"],
            "start_ms": [2000, 8500, 20_000, 0],
            "end_ms": [3500, 9000, 30_000, 9000],
        }
    )
    pieces, dropped, touched = without_confirmed(series, confirmed)
    assert [p.ts_ms.tolist() for p in pieces] == [
        [0, 1000],
        [4000, 5000, 6000, 7000, 8000],
        [0, 1000, 2000, 3000],
    ]
    # Three readings of "a" are inside a span (ends included); the span past the data and the one
    # on an asset with no data touch nothing.
    assert (dropped, touched) == (3, 2)


@st.composite
def histories(draw):
    """Assets with irregular readings (values: asset number, reading index) and confirmed spans,
    some on no data or on an asset without any."""
    series, rows = {}, []
    for k in range(draw(st.integers(1, 3))):
        steps = draw(st.lists(st.integers(1, 5), min_size=1, max_size=60))
        ts = np.cumsum(steps).astype(np.int64) * 1000
        series[f"p{k}"] = TimeSeries(
            ts, np.c_[np.full(len(ts), k), np.arange(len(ts))].astype(np.float64)
        )
    for _ in range(draw(st.integers(0, 6))):
        asset = draw(st.sampled_from([*series, "elsewhere"]))
        start = draw(st.integers(-5, 320)) * 1000 + draw(st.sampled_from([0, 500]))
        rows.append((asset, start, start + draw(st.integers(0, 40)) * 1000))
    return series, pd.DataFrame(rows, columns=["asset_id", "start_ms", "end_ms"])


@hypothesis_settings(max_examples=200, deadline=None, derandomize=True)
@given(histories(), st.integers(2, 5))
def test_no_training_window_holds_a_confirmed_reading_or_bridges_a_removed_stretch(
    history, window: int
) -> None:
    series, confirmed = history
    pieces, dropped, touched = without_confirmed(series, confirmed)
    names = list(series)

    def inside(asset: str, ts: int) -> bool:
        spans = confirmed[confirmed["asset_id"] == asset]
        return bool(((spans["start_ms"] <= ts) & (spans["end_ms"] >= ts)).any())

    kept = [(names[int(k)], int(i)) for p in pieces for k, i in p.values]
    wanted = [
        (a, i)
        for a, s in series.items()
        for i, t in enumerate(s.ts_ms.tolist())
        if not inside(a, t)
    ]
    assert kept == wanted  # every reading outside the spans is kept, in order, and none inside
    assert dropped == sum(len(s) for s in series.values()) - len(wanted)
    assert touched == sum(
        1
        for r in confirmed.itertuples()
        if r.asset_id in series
        and (
            (series[r.asset_id].ts_ms >= r.start_ms) & (series[r.asset_id].ts_ms <= r.end_ms)
        ).any()
    )
    for p in pieces:
        asset, index = names[int(p.values[0, 0])], p.values[:, 1].astype(int)
        assert (p.ts_ms == series[asset].ts_ms[index]).all()
        for w in make_windows(p.values, window):
            rows = w[:, 1].astype(int)
            assert (np.diff(rows) == 1).all(), "a window bridges a removed stretch"
    # Pieces are cut only at removed readings: two pieces of an asset in a row have one between them.
    for p, q in zip(pieces, pieces[1:]):
        if p.values[0, 0] == q.values[0, 0]:
            assert q.values[0, 1] - p.values[-1, 1] > 1


def test_an_outage_between_two_runs_is_not_missing_readings_but_a_sparse_run_is() -> None:
    """Great Expectations' suite: two dense runs 13 hours apart (a stream that stopped overnight)
    pass; the same hours with every other reading missing fail on missing readings, by name."""
    from sensorwatch.schemas.training_data import TrainingDataRules, validate_training_data

    def frame(ts_s: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"ts_ms": (ts_s * 1000).astype("int64"), "x": np.sin(ts_s / 50.0)})

    rules = TrainingDataRules(channels=["x"], ranges={"x": (-2.0, 2.0)}, interval_ms=1000.0)
    run = np.arange(3000)
    outage = frame(np.concatenate([run, run + 3000 + 13 * 3600]))
    assert validate_training_data({"a": outage, "b": outage.copy()}, rules).success

    sparse = validate_training_data({"a": frame(np.arange(0, 6000, 2))}, rules)
    assert not sparse.success
    assert any("run_step_intervals" in line for line in sparse.failures), sparse.failures
