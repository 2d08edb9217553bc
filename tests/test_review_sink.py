"""The review sink in memory: which window goes with which event, and a bounded buffer that counts
what it drops while MLflow is out of reach (a tracking URI where nothing listens)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from sensorwatch.models.registry import Store
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
    flagged = Flagger()(_output(ids, scores, alarm, events), detector=None)
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
    flag = Flagger()
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
