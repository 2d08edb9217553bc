"""Feedback from reviewed anomalies, on the stream: the threshold scale tuned from reviewed alarms
drops the false positives and keeps the confirmed ones, and each alarm's margin is exactly the
scale it stops opening at (and survives a state round trip and a change of scale mid-alarm).

The stream (``alarmstream``) is the champion's plant after its training data, with injected faults,
decided on the service's own path (``Processor``).
"""

from __future__ import annotations

import numpy as np
import pytest
from alarmstream import (
    Stream,
    alarms_of,
    decide,
    same,
    split_by_margin,
    strongest_run,
    window_ratios,
)

from sensorwatch.pipeline.review.tuning import tune_scale


@pytest.mark.integration
def test_the_tuned_scale_drops_the_false_positives_and_keeps_every_confirmed_alarm(
    stream: Stream,
) -> None:
    false, confirmed = split_by_margin(stream.alarms, (0.5, 3.0))
    assert false and confirmed
    tuning = tune_scale([a.margin for a in confirmed], [a.margin for a in false], 1.0, (0.5, 3.0))
    assert tuning.changed and tuning.scale > 1.0, tuning.why
    assert (tuning.kept, tuning.dropped, tuning.still_firing) == (len(confirmed), len(false), 0), (
        tuning.why
    )
    print(
        f"\n{len(stream.alarms)} alarms, margins {sorted(round(a.margin, 3) for a in stream.alarms)}; "
        f"{len(false)} false positives, {len(confirmed)} confirmed; {tuning.why}"
    )

    tuned = alarms_of(decide(stream.detector, stream.readings, tuning.scale), stream.detector)
    for a in false:
        assert not any(same(a, b) for b in tuned), (
            f"false positive {a} opens again at {tuning.scale}"
        )
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
    assert grew.margin > 1.5 * grew.opened_margin, (
        "an alarm whose strongest run came after it opened"
    )
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

    alarm = max(
        stream.alarms, key=lambda a: a.margin / a.opened_margin
    )  # its margin grows while it is open
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
    cuts = (
        (int(run[1]) + grace, run[0], run[-1]),
        ((int(run[-1]) + alarm.end_ms) // 2, run[-1], alarm.end_ms),
    )
    for cut_ms, done, to_come in cuts:
        first = Processor(stream.detector)
        before = [first.process([r for r in mine if r.ts_ms <= cut_ms])]
        decided = window_ratios(before, alarm.asset)[0]
        assert done in decided and to_come not in decided, (
            "the snapshot is taken mid-run, mid-alarm"
        )
        assert [e.kind for d in before for e in d.events if e.event_id == alarm.event_id] == [
            "opened"
        ]
        second = Processor(stream.detector)
        second.load_state(alarm.asset, state.decode(state.encode(first.export_state(alarm.asset))))
        after = [second.process([r for r in mine if r.ts_ms > cut_ms]), second.flush()]
        resumed = [e for d in before + after for e in d.events]
        assert [(e.event_id, e.kind, e.margin) for e in resumed] == [
            (e.event_id, e.kind, e.margin) for e in whole
        ]
        # No run decided after the cut alone reaches the margin: a restored processor that lost the
        # run so far (or the best one) would say a smaller one.
        ends, ratios = window_ratios(after, alarm.asset)
        later = np.lib.stride_tricks.sliding_window_view(ratios[ends <= alarm.end_ms], need).min(
            axis=1
        )
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
    opened = next(
        e
        for d in decide(stream.detector, mine)
        for e in d.events
        if e.event_id == alarm.event_id and e.kind == "opened"
    )
    p = Processor(stream.detector)
    cut_ms = (
        opened.end_ms + p.windower.grace_ms
    )  # the opening window decided, its strongest run to come
    decisions = [p.process([r for r in mine if r.ts_ms <= cut_ms])]
    assert any(
        e.kind == "opened" and e.event_id == alarm.event_id for d in decisions for e in d.events
    )
    scale = round(
        alarm.opened_margin * 0.9, 6
    )  # lower than the margin so far: the alarm stays open
    p.rescale(replace(stream.detector, spec=with_scale(stream.detector.spec, str(scale))))
    assert p.recipe.threshold_scale == scale
    decisions += [p.process([r for r in mine if r.ts_ms > cut_ms]), p.flush()]
    cleared = next(
        e
        for d in decisions
        for e in d.events
        if e.event_id == alarm.event_id and e.kind == "cleared"
    )
    assert cleared.margin == pytest.approx(alarm.margin, rel=1e-6)
