"""Reviews in MLflow feed retraining and the gate: the stream's alarms go through the service's
sinks (archive, review runs in a real MLflow store, SQLite), one is reviewed as confirmed and
others as false positives; retraining leaves out the confirmed anomaly's readings, and the gate
scores a version on the reviewed stretches of the archive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
from alarmstream import Alarm, Stream, overlaps_fault

from sensorwatch.pipeline.review.tuning import tune_scale

if TYPE_CHECKING:
    from sensorwatch.models.mlflow_store import Store
    from sensorwatch.pipeline.review.runs import Anomaly
    from sensorwatch.pipeline.settings import Settings

EXPERIMENT = "sensorwatch-anomalies"


@dataclass
class Reviewed:
    settings: Settings
    store: Store
    confirmed: Anomaly  # reviewed as confirmed
    false: list[Anomaly]  # reviewed as false positives
    archived: dict[str, pd.DataFrame]  # the archive's readings, per asset


@pytest.fixture(scope="module")
def reviewed(stream: Stream, champion, tmp_path_factory) -> Reviewed:
    """The stream through the service's sinks (archive, review runs in MLflow) with the champion
    registered in a store of its own; one alarm on a fault labelled confirmed, and alarms on no
    fault labelled false-positive (the stream of their assets only)."""
    from sensorwatch.models.register import log_training
    from sensorwatch.models.registry import load_detector
    from sensorwatch.pipeline.archive import ArchiveSink, read_archive
    from sensorwatch.pipeline.review.sink import ReviewSink
    from sensorwatch.pipeline.review.verdicts import Reviews
    from sensorwatch.pipeline.settings import Settings
    from sensorwatch.pipeline.stores import store_of
    from sensorwatch.pipeline.stream.processor import Processor
    from sensorwatch.pipeline.stream.step import StepOutput

    root = tmp_path_factory.mktemp("feedback")
    # The stream's readings are of 1970-01-01: retraining for 1970-01-02 (two days back, the
    # second held out) trains on all of them.
    settings = Settings(
        tracking_uri=f"sqlite:///{root}/mlflow.db",
        artifact_root=str(root / "artifacts"),
        model_name="feedback",
        archive_uri=str(root / "archive"),
        review_experiment=EXPERIMENT,
        preset="plant",
        epochs=1,
        train_stride=10,
        retrain_lookback_days=2,
        seed=3,
    )

    def apart(a: Alarm) -> bool:
        return not any(
            b is not a and b.asset == a.asset and b.start_ms <= a.end_ms and a.start_ms <= b.end_ms
            for b in stream.alarms
        )

    # Each reviewed alarm on an asset of its own, and apart from that asset's other alarms: scoring
    # one's stretch of the archive again then finds that alarm alone.
    spurious: dict[str, Alarm] = {}
    for a in stream.alarms:
        if not overlaps_fault(a, stream.faults) and apart(a):
            spurious.setdefault(a.asset, a)
    on_fault = [
        a
        for a in stream.alarms
        if overlaps_fault(a, stream.faults) and apart(a) and a.asset not in spurious
    ]
    assert on_fault and spurious, (
        "the stream needs an alarm on a fault and one on none, on other assets"
    )
    real = max(on_fault, key=lambda a: a.margin)
    assets = {
        real.asset,
        *spurious,
    }  # the plant of those assets alone: fewer runs to log, less to train on

    store = store_of(settings)
    log_training(champion.trained, store, alias="champion")
    processor = Processor(load_detector(store, "champion"))
    processor.windower.keep_released = True
    archive = ArchiveSink(settings.archive_uri, processor)
    sink = ReviewSink(store, processor, experiment=EXPERIMENT, drain_s=120)
    opened: dict[tuple[str, int], str] = {}  # (asset, start) → event id, in this store's version
    events = 0
    for decisions in (
        processor.process([r for r in stream.readings if r.asset_id in assets]),
        processor.flush(),
    ):
        out = StepOutput(polled=0, decisions=decisions)
        archive.write(out)
        sink.write(out)
        events += len(decisions.events)
        opened |= {
            (e.asset_id, e.start_ms): e.event_id for e in decisions.events if e.kind == "opened"
        }
    archive.flush()
    sink.close()
    assert (sink.logged, sink.dropped) == (events, 0)

    reviews = Reviews(store, EXPERIMENT)
    confirmed = reviews.label(opened[real.asset, real.start_ms], "confirmed", by="test")
    false = [
        reviews.label(opened[a.asset, a.start_ms], "false-positive", by="test")
        for a in spurious.values()
    ]
    return Reviewed(settings, store, confirmed, false, read_archive(settings.archive_uri))


@pytest.mark.integration
def test_retraining_leaves_out_the_readings_of_the_confirmed_anomaly(reviewed: Reviewed) -> None:
    from mlflow import MlflowClient

    from sensorwatch.pipeline.jobs import retrain

    a = reviewed.confirmed
    assert a.verdict == "confirmed" and a.start_ms < a.end_ms
    frame = reviewed.archived[a.asset]
    inside = int(((frame["ts_ms"] >= a.start_ms) & (frame["ts_ms"] <= a.end_ms)).sum())
    assert inside > 0

    version = retrain.train(reviewed.settings, "1970-01-02")
    client = MlflowClient(tracking_uri=reviewed.store.tracking_uri)
    run = client.get_run(client.get_model_version("feedback", version).run_id)
    # Only the confirmed anomaly leaves: the false positives' readings are normal data to learn.
    assert run.data.tags["sensorwatch.confirmed_anomalies_left_out"] == "1"
    assert run.data.tags["sensorwatch.readings_left_out"] == str(inside)
    # The short stretches the service flagged that nobody reviewed leave too; the false
    # positives' readings are normal data to learn.
    flagged = int(run.data.tags["sensorwatch.flagged_readings_left_out"])
    assert int(run.data.tags["sensorwatch.flagged_stretches_left_out"]) > 0 and flagged > 0
    total = sum(len(f) for f in reviewed.archived.values())
    assert int(run.data.params["readings"]) == total - inside - flagged  # what it trained on
    # its asset's series cut in two at the confirmed one, and cut again at each flagged stretch
    assert int(run.data.params["series"]) > len(reviewed.archived) + 1


@pytest.mark.integration
def test_the_gate_scores_a_version_on_the_reviewed_stretches(reviewed: Reviewed) -> None:
    from dataclasses import replace

    from sensorwatch.models.registry import load_detector, with_scale
    from sensorwatch.pipeline.review.spans import reviewed_spans, score_reviewed

    spans = reviewed_spans(reviewed.settings)
    assert sorted(spans["verdict"]) == ["confirmed", *["false-positive"] * len(reviewed.false)]
    champion = load_detector(reviewed.store, "champion")
    n, recall, precision = score_reviewed(champion, reviewed.settings, spans)
    # The champion alarms again on every reviewed stretch: of its alarms there, one is at the
    # confirmed anomaly.
    assert (n, recall) == (1 + len(reviewed.false), 1.0)
    assert precision == pytest.approx(1 / (1 + len(reviewed.false)))

    # At the scale tuned from these verdicts, it alarms on the confirmed one alone.
    tuning = tune_scale(
        [reviewed.confirmed.margin], [a.margin for a in reviewed.false], 1.0, (0.5, 3.0)
    )
    assert tuning.dropped == len(reviewed.false), tuning.why
    tuned = replace(champion, spec=with_scale(champion.spec, str(tuning.scale)))
    assert score_reviewed(tuned, reviewed.settings, spans) == (n, 1.0, 1.0)


@pytest.mark.integration
def test_the_gate_counts_each_alarm_once_when_reviewed_anomalies_of_an_asset_lie_close(
    stream: Stream, reviewed: Reviewed
) -> None:
    from sensorwatch.pipeline.review.spans import score_reviewed

    pad_ms = (
        10 * stream.detector.spec.window * stream.detector.spec.interval_ms
    )  # score_reviewed's room
    ranked = sorted(stream.alarms, key=lambda a: (a.asset, a.start_ms))
    pairs = [
        (a, b)
        for a, b in zip(ranked, ranked[1:])
        if a.asset == b.asset
        and a.asset in reviewed.archived
        and a.end_ms < b.start_ms
        and a.start_ms < b.start_ms - pad_ms < a.end_ms
    ]
    if not pairs:
        pytest.fail(
            "no two alarms of one asset with the second's padded stretch starting inside the first"
        )
    first, second = pairs[0]
    spans = pd.DataFrame(
        [
            (first.asset, first.start_ms, first.end_ms, "confirmed"),
            (second.asset, second.start_ms, second.end_ms, "false-positive"),
        ],
        columns=["asset_id", "start_ms", "end_ms", "verdict"],
    )
    # One alarm at each: one of the two at a confirmed anomaly.
    assert score_reviewed(stream.detector, reviewed.settings, spans) == (2, 1.0, 0.5)


def test_flagged_stretches_leave_unless_reviewed_or_long() -> None:
    """What the service flagged and nobody reviewed leaves the training data when it is short;
    a reviewed stretch goes by its verdict, a long one stays as a change of the process."""
    from sensorwatch.pipeline.review.spans import SPAN_COLUMNS, flagged_spans

    ts = np.arange(0, 400_000, 1000, dtype=np.int64)  # a reading a second, windows of 10 s
    anomalous = np.zeros(len(ts), dtype=object)
    anomalous[:9] = None  # no window ends before the tenth reading
    for first, last in ((50, 54), (100, 102), (200, 299)):  # windows ending there: anomalous
        anomalous[first : last + 1] = True
    frame = pd.DataFrame({"ts_ms": ts, "window_start_ms": ts - 9000, "anomalous": anomalous})
    reviewed = pd.DataFrame([("p", 95_000, 96_000, "false-positive", "e1")], columns=SPAN_COLUMNS)

    spans, kept = flagged_spans(
        {"p": frame, "q": frame.drop(columns="anomalous")}, 60_000, reviewed
    )
    # Windows 50..54 cover 41..54 s; 100..102 overlaps the false positive; 200..299 spans 108 s.
    assert spans[["asset_id", "start_ms", "end_ms"]].values.tolist() == [["p", 41_000, 54_000]]
    assert kept == 1
    spans, kept = flagged_spans({"p": frame}, 120_000, reviewed.iloc[:0])
    assert spans[["start_ms", "end_ms"]].values.tolist() == [
        [41_000, 54_000],
        [91_000, 102_000],
        [191_000, 299_000],
    ]
    assert kept == 0
