"""Feedback from reviewed anomalies: the threshold scale tuned from reviewed alarms drops the false
positives and keeps the confirmed ones, each alarm's margin is exactly the scale it stops opening
at (and survives a state round trip), confirmed anomalies leave the retraining data, and the gate
scores a version on the reviewed stretches of the archive.

The stream is the champion's plant after its training data, with injected faults, decided on the
service's own path (``Processor``); the reviews are real runs in a real MLflow store (SQLite).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
from conftest import PLANT, TRAIN_READINGS
from hypothesis import given, settings as hypothesis_settings
from hypothesis import strategies as st

from sensorwatch.models.cadence import TimeSeries
from sensorwatch.models.training import make_windows
from sensorwatch.models.tuning import tune_scale
from sensorwatch.pipeline.jobs.review import without_confirmed
from sensorwatch.schemas.records import Reading

if TYPE_CHECKING:
    from sensorwatch.models.detector import Detector
    from sensorwatch.models.registry import Store
    from sensorwatch.pipeline.dev.simulator import Fault
    from sensorwatch.pipeline.review.runs import Anomaly
    from sensorwatch.pipeline.settings import Settings
    from sensorwatch.pipeline.stream.processor import Decisions

EXPERIMENT = "sensorwatch-anomalies"


# --- helpers ------------------------------------------------------------------------------------


@dataclass
class Alarm:
    """One alarm as its events tell it, with the stretch of window ends it covered."""

    asset: str
    event_id: str
    start_ms: int  # its event's window_start: the first reading of its first window
    end_ms: int  # the end of the window it cleared at (of the last window seen, if it never cleared)
    first_end: int  # the end (last reading) of its first window
    margin: float  # the last event's: the opened one says the margin so far, the cleared one the alarm's
    opened_margin: float
    cleared: bool


def decide(detector: Detector, readings: list[Reading], scale: float | None = None) -> list[Decisions]:
    """``readings`` through a fresh processor (at threshold ``scale``), as a file is scored."""
    from sensorwatch.pipeline.stream.processor import Processor

    processor = Processor(detector, None if scale is None else {"threshold_scale": scale})
    return [processor.process(readings), processor.flush()]


def alarms_of(decisions: list[Decisions], detector: Detector) -> list[Alarm]:
    """The alarms that opened, in order, each with its clearing (if any) folded in."""
    span_ms = (detector.spec.window - 1) * detector.spec.interval_ms
    last_end: dict[str, int] = {}
    found: dict[str, Alarm] = {}
    for d in decisions:
        for asset, end in zip(d.windows.asset_ids, d.windows.end_ms):
            last_end[asset] = int(end)
        for e in d.events:
            if e.kind == "opened":
                found[e.event_id] = Alarm(e.asset_id, e.event_id, e.start_ms, e.end_ms, e.start_ms + span_ms,
                                          e.margin, e.margin, False)
            else:
                a = found[e.event_id]
                a.end_ms, a.margin, a.cleared = e.end_ms, e.margin, True
    for a in found.values():
        if not a.cleared:
            a.end_ms = last_end[a.asset]
    return list(found.values())


def same(a: Alarm, b: Alarm) -> bool:
    """Whether two alarms (of runs at different scales) are one: same asset, overlapping stretches of
    window *ends*. Windows are 30 readings long, so an alarm that opens just after another clears
    starts (by its first reading) inside the other's last window: comparing readings would pair
    neighbours; comparing the windows each alarm decided on does not."""
    return a.asset == b.asset and a.first_end <= b.end_ms and b.first_end <= a.end_ms


def window_ratios(decisions: list[Decisions], asset: str) -> tuple[np.ndarray, np.ndarray]:
    """End times and score/threshold ratios of ``asset``'s windows, in order."""
    ends, ratios = [], []
    for d in decisions:
        mine = np.array([a == asset for a in d.windows.asset_ids], bool)
        if mine.any():
            ends.append(d.windows.end_ms[mine])
            ratios.append(d.scores[mine] / d.levels[mine])
    return np.concatenate(ends).astype(np.int64), np.concatenate(ratios)


def strongest_run(decisions: list[Decisions], alarm: Alarm, need: int) -> tuple[float, np.ndarray]:
    """The alarm's strongest run of ``need`` windows in a row (the weakest of them over the
    threshold, and their end times), worked out from the window scores alone."""
    ends, ratios = window_ratios(decisions, alarm.asset)
    inside = (ends >= alarm.first_end) & (ends <= alarm.end_ms)
    ends, ratios = ends[inside], ratios[inside]
    runs = np.lib.stride_tricks.sliding_window_view(ratios, need).min(axis=1)
    best = int(np.argmax(runs))
    return float(runs[best]), ends[best : best + need]


def overlaps_fault(alarm: Alarm, faults: list[Fault]) -> bool:
    return any(f.asset_id == alarm.asset and f.start_ms <= alarm.end_ms and f.end_ms > alarm.start_ms for f in faults)


def split_by_margin(alarms: list[Alarm], bounds: tuple[float, float]) -> tuple[list[Alarm], list[Alarm]]:
    """(false positives, confirmed): the alarms below and above the widest gap between margins
    that a scale within ``bounds`` can fall into, as a reviewer who finds the weak ones spurious."""
    ranked = sorted(alarms, key=lambda a: a.margin)
    cuts = [i for i in range(1, len(ranked)) if ranked[i - 1].margin * 1.01 < min(ranked[i].margin, bounds[1])]
    assert cuts, f"no margin gap to tune into: {[a.margin for a in ranked]}"
    i = max(cuts, key=lambda i: ranked[i].margin / ranked[i - 1].margin)
    return ranked[:i], ranked[i:]


# --- the stream: the champion's plant with faults, decided at scale 1 ------------------------------


@dataclass
class Stream:
    detector: Detector
    readings: list[Reading]
    faults: list[Fault]
    decisions: list[Decisions]  # at scale 1
    alarms: list[Alarm]


@pytest.fixture(scope="module")
def stream(champion) -> Stream:
    from sensorwatch.models.registry import load_detector
    from sensorwatch.pipeline.dev.simulator import Simulator, readings

    detector = load_detector(champion.store, "champion")
    sim = Simulator(**PLANT)
    sim.normal(TRAIN_READINGS)
    frame, faults = sim.with_faults(2400, faults_per_asset=3)
    # Normal readings after the last fault, so every alarm clears and its margin is its whole run's.
    frame = pd.concat([frame, sim.normal(200)], ignore_index=True)
    rows = list(readings(frame))
    decisions = decide(detector, rows)
    alarms = alarms_of(decisions, detector)
    assert len(alarms) >= 4 and all(a.cleared for a in alarms), alarms
    return Stream(detector, rows, faults, decisions, alarms)


# --- 1. the threshold scale tuned from reviewed alarms ---------------------------------------------


@pytest.mark.integration
def test_the_tuned_scale_drops_the_false_positives_and_keeps_every_confirmed_alarm(stream: Stream) -> None:
    false, confirmed = split_by_margin(stream.alarms, (0.5, 3.0))
    assert false and confirmed
    tuning = tune_scale([a.margin for a in confirmed], [a.margin for a in false], 1.0, (0.5, 3.0))
    assert tuning.changed and tuning.scale > 1.0, tuning.why
    assert (tuning.kept, tuning.dropped, tuning.still_firing) == (len(confirmed), len(false), 0), tuning.why
    print(f"\n{len(stream.alarms)} alarms, margins {sorted(round(a.margin, 3) for a in stream.alarms)}; "
          f"{len(false)} false positives, {len(confirmed)} confirmed; {tuning.why}")

    tuned = alarms_of(decide(stream.detector, stream.readings, tuning.scale), stream.detector)
    for a in false:
        assert not any(same(a, b) for b in tuned), f"false positive {a} opens again at {tuning.scale}"
    for a in confirmed:
        again = [b for b in tuned if same(a, b)]
        assert again, f"confirmed {a} no longer opens at {tuning.scale}"
        # A margin is the alarm's own, not the scale's: measured again at the new scale, it is the same.
        assert max(b.margin for b in again) == pytest.approx(a.margin, rel=1e-5)
    # A higher scale only removes alarms: every one still opening is a confirmed one.
    assert all(any(same(b, a) for a in confirmed) for b in tuned)


@pytest.mark.integration
def test_an_alarm_opens_just_below_its_margin_and_not_just_above(stream: Stream) -> None:
    recipe = stream.detector.spec.recipe
    # With no suppression after an alarm and no re-arm bar (the plant preset), whether a run of
    # windows opens an alarm depends on those windows alone, not on what an earlier alarm did at
    # that scale, so the margin is exact for every alarm. (With suppress_windows, an earlier
    # alarm's suppression could hold a run shut.) Checked on the alarm whose margin grew most after
    # it opened (the opening run is not its strongest) and on the weakest.
    assert recipe.suppress_windows == 0 and recipe.rearm_ratio == 0
    grew = max(stream.alarms, key=lambda a: a.margin / a.opened_margin)
    weakest = min(stream.alarms, key=lambda a: a.margin)
    assert grew.margin > 1.5 * grew.opened_margin, "an alarm whose strongest run came after it opened"
    for alarm in {a.event_id: a for a in (grew, weakest)}.values():
        # The margin is the alarm's strongest run of min_windows windows, worked out from the scores.
        best, _ = strongest_run(stream.decisions, alarm, recipe.min_windows)
        assert alarm.margin == pytest.approx(best, rel=1e-6)
        mine = [r for r in stream.readings if r.asset_id == alarm.asset]
        below = alarms_of(decide(stream.detector, mine, alarm.margin * 0.98), stream.detector)
        above = alarms_of(decide(stream.detector, mine, alarm.margin * 1.02), stream.detector)
        assert any(same(alarm, b) for b in below), f"{alarm} does not open at 0.98 × its margin"
        assert not any(same(alarm, b) for b in above), f"{alarm} still opens at 1.02 × its margin"


@pytest.mark.integration
def test_the_margin_survives_a_state_round_trip_mid_alarm(stream: Stream) -> None:
    from sensorwatch.pipeline.stream import state
    from sensorwatch.pipeline.stream.processor import Processor

    alarm = max(stream.alarms, key=lambda a: a.margin / a.opened_margin)  # its margin grows while it is open
    mine = [r for r in stream.readings if r.asset_id == alarm.asset]
    whole = [e for d in decide(stream.detector, mine) for e in d.events]
    cleared = next(e for e in whole if e.event_id == alarm.event_id and e.kind == "cleared")
    assert cleared.margin == alarm.margin
    need = stream.detector.spec.recipe.min_windows
    _, run = strongest_run(stream.decisions, alarm, need)
    # Cut inside the strongest run (part of it in the snapshot, the rest after it), and after it
    # (the margin reached before the snapshot) while the alarm is still open. A window is decided
    # once readings a grace period newer have come; the ones between wait in the snapshot.
    grace = Processor(stream.detector).windower.grace_ms
    cuts = ((int(run[1]) + grace, run[0], run[-1]), ((int(run[-1]) + alarm.end_ms) // 2, run[-1], alarm.end_ms))
    for cut_ms, done, to_come in cuts:
        first = Processor(stream.detector)
        before = [first.process([r for r in mine if r.ts_ms <= cut_ms])]
        decided = window_ratios(before, alarm.asset)[0]
        assert done in decided and to_come not in decided, "the snapshot is taken mid-run, mid-alarm"
        assert [e.kind for d in before for e in d.events if e.event_id == alarm.event_id] == ["opened"]
        second = Processor(stream.detector)
        second.load_state(alarm.asset, state.decode(state.encode(first.export_state(alarm.asset))))
        after = [second.process([r for r in mine if r.ts_ms > cut_ms]), second.flush()]
        resumed = [e for d in before + after for e in d.events]
        assert [(e.event_id, e.kind, e.margin) for e in resumed] == [(e.event_id, e.kind, e.margin) for e in whole]
        # No run decided after the cut alone reaches the margin: a restored processor that lost the
        # run so far (or the best one) would say a smaller one.
        ends, ratios = window_ratios(after, alarm.asset)
        later = np.lib.stride_tricks.sliding_window_view(ratios[ends <= alarm.end_ms], need).min(axis=1)
        assert later.max() < alarm.margin


@pytest.mark.integration
def test_the_margin_holds_when_the_scale_changes_while_the_alarm_is_open(stream: Stream) -> None:
    from dataclasses import replace

    from sensorwatch.models.registry import with_scale
    from sensorwatch.pipeline.stream.processor import Processor

    # A tuned scale reaches a running service mid-alarm (Processor.rescale keeps open alarms): the
    # margin stays in units of the unscaled threshold, so the alarm says the same one.
    alarm = max(stream.alarms, key=lambda a: a.margin / a.opened_margin)
    mine = [r for r in stream.readings if r.asset_id == alarm.asset]
    opened = next(e for d in decide(stream.detector, mine) for e in d.events
                  if e.event_id == alarm.event_id and e.kind == "opened")
    p = Processor(stream.detector)
    cut_ms = opened.end_ms + p.windower.grace_ms  # the opening window decided, its strongest run to come
    decisions = [p.process([r for r in mine if r.ts_ms <= cut_ms])]
    assert any(e.kind == "opened" and e.event_id == alarm.event_id for d in decisions for e in d.events)
    scale = round(alarm.opened_margin * 0.9, 6)  # lower than the margin so far: the alarm stays open
    p.rescale(replace(stream.detector, spec=with_scale(stream.detector.spec, str(scale))))
    assert p.recipe.threshold_scale == scale
    decisions += [p.process([r for r in mine if r.ts_ms > cut_ms]), p.flush()]
    cleared = next(e for d in decisions for e in d.events if e.event_id == alarm.event_id and e.kind == "cleared")
    assert cleared.margin == pytest.approx(alarm.margin, rel=1e-6)


# --- 2. confirmed anomalies leave the training data ---------------------------------------------


def test_without_confirmed_drops_exactly_the_confirmed_readings_and_cuts_the_series_there() -> None:
    series = {"a": TimeSeries(np.arange(10) * 1000, np.arange(10.0)[:, None]),
              "b": TimeSeries(np.arange(4) * 1000, np.arange(4.0)[:, None])}
    confirmed = pd.DataFrame({"asset_id": ["a", "a", "a", "c"], "start_ms": [2000, 8500, 20_000, 0],
                              "end_ms": [3500, 9000, 30_000, 9000]})
    pieces, dropped, touched = without_confirmed(series, confirmed)
    assert [p.ts_ms.tolist() for p in pieces] == [[0, 1000], [4000, 5000, 6000, 7000, 8000], [0, 1000, 2000, 3000]]
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
        series[f"p{k}"] = TimeSeries(ts, np.c_[np.full(len(ts), k), np.arange(len(ts))].astype(np.float64))
    for _ in range(draw(st.integers(0, 6))):
        asset = draw(st.sampled_from([*series, "elsewhere"]))
        start = draw(st.integers(-5, 320)) * 1000 + draw(st.sampled_from([0, 500]))
        rows.append((asset, start, start + draw(st.integers(0, 40)) * 1000))
    return series, pd.DataFrame(rows, columns=["asset_id", "start_ms", "end_ms"])


@hypothesis_settings(max_examples=200, deadline=None, derandomize=True)
@given(histories(), st.integers(2, 5))
def test_no_training_window_holds_a_confirmed_reading_or_bridges_a_removed_stretch(history, window: int) -> None:
    series, confirmed = history
    pieces, dropped, touched = without_confirmed(series, confirmed)
    names = list(series)

    def inside(asset: str, ts: int) -> bool:
        spans = confirmed[confirmed["asset_id"] == asset]
        return bool(((spans["start_ms"] <= ts) & (spans["end_ms"] >= ts)).any())

    kept = [(names[int(k)], int(i)) for p in pieces for k, i in p.values]
    wanted = [(a, i) for a, s in series.items() for i, t in enumerate(s.ts_ms.tolist()) if not inside(a, t)]
    assert kept == wanted  # every reading outside the spans is kept, in order, and none inside
    assert dropped == sum(len(s) for s in series.values()) - len(wanted)
    assert touched == sum(
        1 for r in confirmed.itertuples() if r.asset_id in series
        and ((series[r.asset_id].ts_ms >= r.start_ms) & (series[r.asset_id].ts_ms <= r.end_ms)).any()
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


# --- 2b and 3: reviews in MLflow, the archive, retraining and the gate ----------------------------


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
    from sensorwatch.models.registry import load_detector
    from sensorwatch.models.register import log_training
    from sensorwatch.pipeline.archive import ArchiveSink, read_archive
    from sensorwatch.pipeline.jobs.train import store_of
    from sensorwatch.pipeline.review.sink import ReviewSink
    from sensorwatch.pipeline.review.verdicts import Reviews
    from sensorwatch.pipeline.settings import Settings
    from sensorwatch.pipeline.stream.processor import Processor
    from sensorwatch.pipeline.stream.step import StepOutput

    root = tmp_path_factory.mktemp("feedback")
    # The stream's readings are of 1970-01-01: retraining for 1970-01-02 (two days back, the
    # second held out) trains on all of them.
    settings = Settings(
        tracking_uri=f"sqlite:///{root}/mlflow.db", artifact_root=str(root / "artifacts"), model_name="feedback",
        archive_uri=str(root / "archive"), review_experiment=EXPERIMENT, preset="plant", epochs=1, train_stride=10,
        retrain_lookback_days=2, seed=3,
    )

    def apart(a: Alarm) -> bool:
        return not any(b is not a and b.asset == a.asset and b.start_ms <= a.end_ms and a.start_ms <= b.end_ms
                       for b in stream.alarms)

    # Each reviewed alarm on an asset of its own, and apart from that asset's other alarms: scoring
    # one's stretch of the archive again then finds that alarm alone.
    spurious: dict[str, Alarm] = {}
    for a in stream.alarms:
        if not overlaps_fault(a, stream.faults) and apart(a):
            spurious.setdefault(a.asset, a)
    on_fault = [a for a in stream.alarms if overlaps_fault(a, stream.faults) and apart(a) and a.asset not in spurious]
    assert on_fault and spurious, "the stream needs an alarm on a fault and one on none, on other assets"
    real = max(on_fault, key=lambda a: a.margin)
    assets = {real.asset, *spurious}  # the plant of those assets alone: fewer runs to log, less to train on

    store = store_of(settings)
    log_training(champion.trained, store, alias="champion")
    processor = Processor(load_detector(store, "champion"))
    processor.windower.keep_released = True
    archive = ArchiveSink(settings.archive_uri, processor)
    sink = ReviewSink(store, processor, experiment=EXPERIMENT, drain_s=120)
    opened: dict[tuple[str, int], str] = {}  # (asset, start) → event id, in this store's version
    events = 0
    for decisions in (processor.process([r for r in stream.readings if r.asset_id in assets]), processor.flush()):
        out = StepOutput(polled=0, decisions=decisions)
        archive.write(out)
        sink.write(out)
        events += len(decisions.events)
        opened |= {(e.asset_id, e.start_ms): e.event_id for e in decisions.events if e.kind == "opened"}
    archive.flush()
    sink.close()
    assert (sink.logged, sink.dropped) == (events, 0)

    reviews = Reviews(store, EXPERIMENT)
    confirmed = reviews.label(opened[real.asset, real.start_ms], "confirmed", by="test")
    false = [reviews.label(opened[a.asset, a.start_ms], "false-positive", by="test") for a in spurious.values()]
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
    total = sum(len(f) for f in reviewed.archived.values())
    assert int(run.data.params["readings"]) == total - inside  # what the model was trained on
    assert int(run.data.params["series"]) == len(reviewed.archived) + 1  # its asset's series cut in two


@pytest.mark.integration
def test_the_gate_scores_a_version_on_the_reviewed_stretches(reviewed: Reviewed) -> None:
    from dataclasses import replace

    from sensorwatch.models.registry import load_detector, with_scale
    from sensorwatch.pipeline.jobs.gate import score_reviewed
    from sensorwatch.pipeline.jobs.review import reviewed_spans

    spans = reviewed_spans(reviewed.settings)
    assert sorted(spans["verdict"]) == ["confirmed", *["false-positive"] * len(reviewed.false)]
    champion = load_detector(reviewed.store, "champion")
    n, recall, precision = score_reviewed(champion, reviewed.settings, spans)
    # The champion alarms again on every reviewed stretch: of its alarms there, one is at the
    # confirmed anomaly.
    assert (n, recall) == (1 + len(reviewed.false), 1.0)
    assert precision == pytest.approx(1 / (1 + len(reviewed.false)))

    # At the scale tuned from these verdicts, it alarms on the confirmed one alone.
    tuning = tune_scale([reviewed.confirmed.margin], [a.margin for a in reviewed.false], 1.0, (0.5, 3.0))
    assert tuning.dropped == len(reviewed.false), tuning.why
    tuned = replace(champion, spec=with_scale(champion.spec, str(tuning.scale)))
    assert score_reviewed(tuned, reviewed.settings, spans) == (n, 1.0, 1.0)


@pytest.mark.integration
def test_the_gate_counts_each_alarm_once_when_reviewed_anomalies_of_an_asset_lie_close(
    stream: Stream, reviewed: Reviewed
) -> None:
    from sensorwatch.pipeline.jobs.gate import score_reviewed

    pad_ms = 10 * stream.detector.spec.window * stream.detector.spec.interval_ms  # score_reviewed's room
    ranked = sorted(stream.alarms, key=lambda a: (a.asset, a.start_ms))
    pairs = [(a, b) for a, b in zip(ranked, ranked[1:])
             if a.asset == b.asset and a.asset in reviewed.archived
             and a.end_ms < b.start_ms and a.start_ms < b.start_ms - pad_ms < a.end_ms]
    if not pairs:
        pytest.fail("no two alarms of one asset with the second's padded stretch starting inside the first")
    first, second = pairs[0]
    spans = pd.DataFrame([(first.asset, first.start_ms, first.end_ms, "confirmed"),
                          (second.asset, second.start_ms, second.end_ms, "false-positive")],
                         columns=["asset_id", "start_ms", "end_ms", "verdict"])
    # One alarm at each: one of the two at a confirmed anomaly.
    assert score_reviewed(stream.detector, reviewed.settings, spans) == (2, 1.0, 0.5)
