"""The change rule: the in-window step statistic, its fit, the alarm gate, and how a version carries it."""

import numpy as np
import pytest

from sensorwatch.models.alarms import AlarmRules
from sensorwatch.models.change import fit_change, window_change, window_steps
from sensorwatch.models.presets import preset
from sensorwatch.models.recipe import Recipe
from sensorwatch.models.spec import DetectorSpec

# A plain alarm: no suppression, clearing, re-arming, change or drift rule unless a test sets one.
PLAIN = Recipe(
    suppress_windows=0, clear_ratio=0.0, rearm_ratio=0.0, change_factor=0.0, drift_windows=0
)


def alarm_rules(**changes: object) -> AlarmRules:
    """The alarm rules of the plain recipe with ``changes`` (a bad value raises ``ValueError``)."""
    return AlarmRules.of(PLAIN.updated(**changes))


def test_step_is_the_squared_difference_of_the_halves_in_reading_variances() -> None:
    # W = 4, halves of 2: step = (mean(3, 5) - mean(1, 1))^2 * 2 * 2 / 4 = 3^2 = 9
    w = np.array([[1.0, 1.0, 3.0, 5.0]]).reshape(1, 4, 1)
    assert window_steps(w).tolist() == [[9.0]]
    # W = 5, halves of 2 and 3: (mean(2, 2, 2) - mean(0, 0))^2 * 2 * 3 / 5 = 4 * 1.2 = 4.8
    w = np.array([[0.0, 0.0, 2.0, 2.0, 2.0]]).reshape(1, 5, 1)
    assert window_steps(w)[0, 0] == pytest.approx(4.8)
    # A ramp steps too; a flat window does not, wherever its level sits.
    assert window_steps(np.full((1, 6, 1), 40.0)).tolist() == [[0.0]]


def test_fit_scales_each_channel_and_weighs_slow_ones_down() -> None:
    # Two training windows (W = 2), two channels: steps (1-0)^2/2 = 0.5 and (3-0)^2/2 = 4.5 on
    # channel 0 (mean 2.5), 0 and 2 on channel 1 (mean 1).
    z = np.array([[[0.0, 0.0], [1.0, 0.0]], [[0.0, 0.0], [3.0, 2.0]]])
    scale, level = fit_change(z)
    assert scale.tolist() == [2.5, 1.0]
    # Per window the largest scaled step: max(0.2, 0) = 0.2 and max(1.8, 2) = 2; their 99th percentile.
    assert level == pytest.approx(0.2 + 0.99 * 1.8)
    assert window_change(z, scale, level).tolist() == pytest.approx([0.2 / level, 2.0 / level])
    slow_scale, _ = fit_change(z, slowness=np.array([1.0, 10.0]))
    assert slow_scale.tolist() == [2.5, 10.0]


def test_an_alarm_opens_only_near_a_change() -> None:
    rules = alarm_rules(min_windows=2, merge_windows=0, change_factor=1.0, change_within=3)
    drift = rules.new_state()
    # Above the threshold throughout, never a change: a drift, no alarm.
    assert not any(drift.step(True, 5.0, 0.5) for _ in range(20))
    late = rules.new_state()
    # A change at window 0, the threshold crossed from window 2: windows 2 and 3 are within 3 of
    # it and open the alarm; it stays open without further changes.
    steps = [
        late.step(a, 5.0, c)
        for a, c in [(False, 2.0), (False, 0.0), (True, 0.0), (True, 0.0), (True, 0.0), (True, 0.0)]
    ]
    assert steps == [False, False, False, True, True, True]
    too_late = rules.new_state()
    # The same change, the threshold crossed only at window 4 (beyond change_within): no alarm.
    steps = [
        too_late.step(a, 5.0, c) for a, c in [(False, 2.0)] + [(False, 0.0)] * 3 + [(True, 0.0)] * 4
    ]
    assert not any(steps)


def test_a_drift_that_lasts_drift_windows_opens_an_alarm_all_the_same() -> None:
    """A slowly growing fault never steps inside a window: held back, but only for drift_windows."""
    rules = alarm_rules(
        min_windows=2, merge_windows=0, change_factor=1.0, change_within=3, drift_windows=5
    )
    state = rules.new_state()
    steps = [state.step(True, 5.0, 0.5) for _ in range(8)]
    # Held for windows 0-3; from window 4 (the fifth held in a row) they count, and two open it.
    assert steps == [False] * 5 + [True] * 3
    broken = rules.new_state()
    # A window back at normal starts the count again.
    steps = [broken.step(a, 5.0, 0.5) for a in [True] * 4 + [False] + [True] * 4]
    assert not any(steps)
    assert broken.held == 4


def test_without_a_change_figure_or_with_the_rule_off_nothing_is_held_back() -> None:
    gated = alarm_rules(min_windows=1, merge_windows=0, change_factor=1.0).new_state()
    assert gated.step(True, 5.0) is True  # no change figure (an older version): it passes
    off = alarm_rules(min_windows=1, merge_windows=0, change_factor=0.0).new_state()
    assert off.step(True, 5.0, 0.0) is True
    with pytest.raises(ValueError):
        alarm_rules(change_factor=-1.0)
    with pytest.raises(ValueError):
        alarm_rules(change_within=0)
    with pytest.raises(ValueError):
        alarm_rules(drift_windows=-1)


def test_the_change_state_survives_a_restart_and_old_state_loads() -> None:
    rules = alarm_rules(min_windows=2, merge_windows=0, change_factor=1.0, change_within=5)
    state = rules.new_state()
    state.step(False, 0.0, 3.0)
    saved = state.export()
    restored = rules.new_state().load(saved)
    assert (
        restored.since_change == 0
        and restored.step(True, 5.0, 0.0) is False
        and restored.step(True, 5.0, 0.0) is True
    )
    old = {k: v for k, v in saved.items() if k != "since_change"}
    assert (
        rules.new_state().load(old).since_change > rules.change_within
    )  # as if no change was seen


def test_the_recipe_carries_the_rule_as_decision_fields_and_presets_keep_theirs() -> None:
    assert (
        Recipe().alarm_rules().change_factor == 1.25 and Recipe().alarm_rules().change_within == 200
    )
    assert Recipe.split({"change_factor": 0.0, "change_within": 50}) == (
        {"change_factor": 0.0, "change_within": 50},
        {},
    )
    assert preset("plant").change_factor == 0.0 and preset("published").change_factor == 0.0


def test_a_spec_stores_the_change_fit_and_old_specs_have_none() -> None:
    spec = DetectorSpec(
        ["a", "b"], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0], change_scale=[2.0, 3.0], change_level=1.5
    )
    again = DetectorSpec.from_dict(spec.to_dict())
    assert again.change_scale == [2.0, 3.0] and again.change_level == 1.5
    old = {k: v for k, v in spec.to_dict().items() if k not in ("change_scale", "change_level")}
    assert DetectorSpec.from_dict(old).change_scale is None
    with pytest.raises(ValueError, match="change_scale"):
        DetectorSpec(["a"], [0.0], [1.0], [1.0], change_scale=[1.0, 2.0])


def _streaming(change_factor: float):
    from sensorwatch.models.autoencoder import build_autoencoder
    from sensorwatch.models.detector import Detector
    from sensorwatch.pipeline.stream.processor import Processor
    from sensorwatch.schemas.records import Reading

    # Window 4, threshold 0: every window is anomalous; an alarm needs 2 in a row near a change.
    recipe = Recipe(
        window=4,
        score="mean",
        min_windows=2,
        merge_windows=0,
        clear_ratio=0.0,
        rearm_ratio=0.0,
        grace_intervals=0,
        change_factor=change_factor,
        change_within=3,
    )
    spec = DetectorSpec(
        ["a"],
        [0.0],
        [1.0],
        [1.0],
        {"method": "reference", "value": 0.0},
        recipe=recipe,
        interval_ms=1,
        change_scale=[1.0],
        change_level=1.0,
    )
    processor = Processor(Detector(build_autoencoder(4, 1, units=4), spec, version="1"))

    def feed(values: list[float], start: int) -> list[bool]:
        return processor.process(
            [Reading("x", start + i, {"a": v}) for i, v in enumerate(values)]
        ).alarm.tolist()

    return feed


def test_the_streaming_path_holds_a_drift_back_and_opens_on_a_step() -> None:
    # A level of 5 throughout: far from training, but no window steps (change 0): no alarm.
    feed = _streaming(change_factor=1.0)
    assert not any(feed([5.0] * 10, 0))
    # A step to 9: the windows around it step by (9-5)^2 = 16 > 1; the alarm opens.
    assert any(feed([9.0] * 4, 10))
    # With the rule off the same drift raises the alarm at once.
    assert _streaming(change_factor=0.0)([5.0] * 10, 0)[1:] == [True] * 6
