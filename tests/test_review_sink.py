"""The review sink in memory: which window goes with which event, and a bounded buffer that counts
what it drops while MLflow is out of reach (a tracking URI where nothing listens)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from sensorwatch.models.mlflow_store import Store
from sensorwatch.pipeline.review.sink import Flagger, ReviewSink
from sensorwatch.pipeline.stream.batch import WindowBatch
from sensorwatch.pipeline.stream.processor import Decisions
from sensorwatch.pipeline.stream.step import StepOutput
from sensorwatch.schemas.records import AnomalyEvent, Reading, iso_ms

W, C = 4, 2


def _output(asset_ids, scores, alarm, events) -> StepOutput:
    n = len(asset_ids)
    ends = np.arange(n, dtype=np.int64) * 1000 + 10_000
    windows = np.stack([np.full((W, C), float(i)) for i in range(n)]) if n else np.zeros((0, W, C))
    batch = WindowBatch(list(asset_ids), ends - 3000, ends, windows.astype(np.float32))
    scores = np.asarray(scores, float)
    errors = np.stack([np.array([s, s / 2]) for s in scores]) if n else np.zeros((0, C))
    decisions = Decisions(
        batch, scores, np.ones(n), scores > 1, np.asarray(alarm, bool), list(events), errors=errors
    )
    return StepOutput(polled=n, decisions=decisions)


def _event(asset: str, start_ms: int, end_ms: int, kind: str) -> AnomalyEvent:
    return AnomalyEvent(
        asset, iso_ms(start_ms), iso_ms(end_ms), 5.0, 1.0, {"a": 0.7, "b": 0.3}, "1", kind=kind
    )


def test_each_event_carries_the_worst_window_of_its_own_alarm() -> None:
    # Windows end at 10 s, 11 s, ...: asset p alarms over windows 0-2 (worst: 1) and again over 5-6
    # (worst: 6) within one poll; q alarms over window 4, which stays open.
    ids = ["p", "p", "p", "p", "q", "p", "p", "p"]
    scores = [3.0, 9.0, 2.0, 0.1, 4.0, 2.5, 7.0, 0.2]
    alarm = [1, 1, 1, 0, 1, 1, 1, 0]
    events = [
        _event("p", 7000, 10_000, "opened"),
        _event("p", 7000, 13_000, "cleared"),
        _event("q", 11_000, 14_000, "opened"),
        _event("p", 12_000, 15_000, "opened"),
        _event("p", 12_000, 17_000, "cleared"),
    ]
    flagged = Flagger(hold=False)(_output(ids, scores, alarm, events), detector=None)
    assert [(f.event.asset_id, f.event.kind) for f in flagged] == [
        ("p", "opened"),
        ("p", "cleared"),
        ("q", "opened"),
        ("p", "opened"),
        ("p", "cleared"),
    ]
    worst = [int(f.window[0, 0]) for f in flagged]  # each window is filled with its index
    assert worst == [0, 1, 4, 5, 6]  # so far at each opening; the whole alarm's at each clearing
    assert flagged[1].errors.tolist() == [9.0, 4.5]


def test_an_alarm_open_across_polls_keeps_its_worst_window_until_it_clears() -> None:
    flag = Flagger(hold=False)
    first = flag(
        _output(["p", "p"], [2.0, 8.0], [1, 1], [_event("p", 7000, 10_000, "opened")]),
        detector=None,
    )
    flag(_output(["p"], [3.0], [1], []), detector=None)
    last = flag(
        _output(["p"], [0.1], [0], [_event("p", 7000, 10_000 + 0, "cleared")]), detector=None
    )
    assert (
        first[0].window[0, 0] == 0.0 and last[0].window[0, 0] == 1.0
    )  # the 8.0 window of the first poll
    assert flag(_output(["p"], [0.1], [0], []), detector=None) == []


def _series(asset: str, scores: list[float], level: float = 1.0, first_ms: int = 0) -> StepOutput:
    """One poll of an asset's windows at stride 1 (a reading a second, W readings each): reading
    k's value is k, window k ends at reading k + W - 1."""
    n = len(scores)
    ends = first_ms + (np.arange(n, dtype=np.int64) + W - 1) * 1000
    base = first_ms // 1000 + np.arange(n)[:, None] + np.arange(W)[None, :]
    windows = np.repeat(base[:, :, None], C, axis=2).astype(np.float32)
    batch = WindowBatch([asset] * n, ends - (W - 1) * 1000, ends, windows)
    s = np.asarray(scores, float)
    errors = np.stack([s, s / 2], axis=1)
    decisions = Decisions(batch, s, np.full(n, level), s > level, s > level, [], errors=errors)
    return StepOutput(polled=n, decisions=decisions)


def test_a_cleared_alarm_waits_for_what_follows_and_carries_its_context() -> None:
    # 80 windows of one asset, a reading a second; the alarm spans windows 40-44.
    scores = [0.5] * 40 + [3.0, 5.0, 9.0, 4.0, 2.0] + [0.5] * 35
    flag, step = Flagger(), _series("p", scores)
    ends = step.decisions.windows.end_ms
    opened = _event("p", int(ends[40]) - 3000, int(ends[40]), "opened")
    cleared = _event("p", int(ends[40]) - 3000, int(ends[45]), "cleared")
    first = _series("p", scores[:46])
    first.decisions.events[:] = [opened, cleared]
    got = flag(first, detector=None)
    assert [f.event.kind for f in got] == ["opened"]  # the cleared one waits for what follows
    assert got[0].context.ts_ms[-1] == ends[45]  # the opened one: what came before, at once
    rest = _series("p", scores[46:], first_ms=46 * 1000)
    released = flag(rest, detector=None)
    assert [f.event.kind for f in released] == ["cleared"]
    context = released[0].context
    # Each reading once, in order (value k at second k), from 4 windows before the alarm's start
    # to at least 2 windows after its end; every window's score and threshold.
    assert np.all(np.diff(context.ts_ms) == 1000)
    assert context.rows[:, 0].tolist() == (context.ts_ms // 1000).tolist()
    assert context.ts_ms[0] <= cleared.start_ms - 4 * W * 1000 + 1000
    assert context.ts_ms[-1] >= cleared.end_ms + 2 * W * 1000
    assert context.scores.max() == 9.0 and set(context.levels) == {1.0}
    assert released[0].worst_ms == (int(ends[42]) - (W - 1) * 1000, int(ends[42]))
    assert released[0].window[0, 0] == 42.0  # the 9.0 window's first reading


def test_an_alarm_opened_and_cleared_in_one_poll_goes_opened_first_with_its_whole_context() -> None:
    # One large poll (as a replay gives): the history holds it whole until its events are flagged.
    scores = [0.5] * 200 + [3.0, 9.0] + [0.5] * 200
    step = _series("p", scores)
    ends = step.decisions.windows.end_ms
    step.decisions.events[:] = [
        _event("p", int(ends[200]) - 3000, int(ends[200]), "opened"),
        _event("p", int(ends[200]) - 3000, int(ends[202]), "cleared"),
    ]
    got = Flagger()(step, detector=None)
    assert [f.event.kind for f in got] == ["opened", "cleared"]  # the run ends cleared
    start = int(ends[200]) - 3000
    assert got[1].context.ts_ms[0] == start - 4 * W * 1000  # before the alarm, not the poll's end
    assert got[1].context.ts_ms[-1] == int(ends[202]) + 2 * W * 1000


def test_a_held_alarm_goes_when_the_sink_closes() -> None:
    flag = Flagger()
    step = _series("p", [0.5, 3.0, 0.5])
    step.decisions.events[:] = [
        _event("p", 1000, 3000, "opened"),
        _event("p", 1000, 5000, "cleared"),
    ]
    assert [f.event.kind for f in flag(step, detector=None)] == ["opened"]
    assert [f.event.kind for f in flag.release()] == ["cleared"] and flag.release() == []


def test_with_mlflow_out_of_reach_the_buffer_holds_the_newest_and_counts_what_it_drops() -> None:
    store = Store(
        "http://127.0.0.1:9", model_name="m", timeout_s=1, retries=0
    )  # nothing listens there
    sink = ReviewSink(store, SimpleNamespace(detector=None), buffer=3, drain_s=0.5)
    try:
        for i in range(5):
            sink.write(_output(["p"], [5.0], [1], [_event(f"p{i}", 7000, 10_000, "opened")]))
        assert sink.pending == 3 and sink.dropped == 2 and sink.logged == 0
    finally:
        sink.close()
    assert sink.dropped == 5 and sink.logged == 0 and sink.pending == 0


@pytest.mark.integration
def test_a_tuned_threshold_scale_reaches_a_running_processor_and_keeps_its_alarms(
    champion, tmp_path
) -> None:
    from mlflow import MlflowClient

    from sensorwatch.models.register import log_training
    from sensorwatch.models.registry import SCALE_TAG, load_detector
    from sensorwatch.pipeline.service.reload import Reloader
    from sensorwatch.pipeline.stream.processor import Processor

    store = Store(
        f"sqlite:///{tmp_path}/mlflow.db",
        model_name="tuned",
        artifact_root=str(tmp_path / "artifacts"),
    )
    version = log_training(champion.trained, store, alias="champion").version
    processor = Processor(load_detector(store, "champion"))
    pinned = Processor(
        load_detector(store, "champion"), {"threshold_scale": 2.0}
    )  # set on purpose: it stays
    channels = processor.detector.spec.channels
    processor.process([Reading("p", 1000 * i, {c: 1.0 for c in channels}) for i in range(40)])
    tracks = dict(processor._tracks)
    reloader = Reloader(store, "champion", every_s=0)
    assert (
        reloader.maybe_swap(processor, force=True) is None
        and processor.recipe.threshold_scale == 1.0
    )

    MlflowClient(store.tracking_uri).set_model_version_tag("tuned", version, SCALE_TAG, "1.7")
    reloader.maybe_swap(processor, force=True)
    reloader.maybe_swap(pinned, force=True)
    assert processor.recipe.threshold_scale == 1.7 and processor.detector.version == version
    assert processor._tracks == tracks  # the same thresholds and alarms carry on
    assert pinned.recipe.threshold_scale == 2.0
    assert (
        load_detector(store, "champion").spec.recipe.threshold_scale == 1.7
    )  # and a fresh start takes it
