"""Threshold methods and alarm rules: fitted levels, streaming behaviour, round trips."""

import numpy as np
import pytest

from sensorwatch.models.alarms import AlarmRules
from sensorwatch.models.recipe import Recipe
from sensorwatch.models.thresholds import (
    METHODS,
    ReferenceThreshold,
    ZScoreThreshold,
    ewma,
    make_threshold,
    threshold_from_dict,
)
from sensorwatch.models.thresholds.dynamic import DynamicThreshold, choose_epsilon
from sensorwatch.models.thresholds.likelihood import LikelihoodThreshold
from sensorwatch.models.thresholds.spot import SpotThreshold, fit_gpd, gpd_quantile

RNG = np.random.default_rng(11)
NORMAL = np.exp(RNG.normal(0.0, 0.3, 1000))  # positive, skewed: like reconstruction errors

# A plain alarm: no suppression, clearing, re-arming, change or drift rule unless a test sets one.
PLAIN = Recipe(
    suppress_windows=0, clear_ratio=0.0, rearm_ratio=0.0, change_factor=0.0, drift_windows=0
)


def alarm_rules(**changes: object) -> AlarmRules:
    """The alarm rules of the plain recipe with ``changes`` (a bad value raises ``ValueError``)."""
    return AlarmRules.of(PLAIN.updated(**changes))


def test_every_method_is_registered_and_round_trips() -> None:
    assert set(METHODS) == {"reference", "zscore", "spot", "dynamic", "likelihood"}
    for method in METHODS:
        fitted = make_threshold(method).fit(NORMAL)
        copy = threshold_from_dict(fitted.to_dict())
        assert copy.level() == pytest.approx(fitted.level())
        stream = np.r_[NORMAL[:50], 20.0, 20.0, 20.0]
        assert [fitted.update(s) for s in stream] == [copy.update(s) for s in stream]


def test_unknown_method_and_unfitted_use_fail() -> None:
    with pytest.raises(ValueError, match="unknown threshold method"):
        make_threshold("nope")
    for method in METHODS:
        with pytest.raises(RuntimeError):
            make_threshold(method).level()
    with pytest.raises(ValueError):
        ReferenceThreshold().fit(np.array([]))


def test_reference_is_a_quantile_times_a_margin() -> None:
    t = ReferenceThreshold(quantile=0.5, factor=2.0).fit(np.array([1.0, 2.0, 3.0]))
    assert t.level() == 4.0
    assert (t.update(3.9), t.update(4.1)) == (False, True)


def test_reference_follows_a_lasting_rise_of_the_typical_score_only() -> None:
    rng = np.random.default_rng(3)
    fit = dict(quantile=0.99, factor=2.0)
    t = ReferenceThreshold(**fit, follow=1000).fit(NORMAL)
    fitted = t.level()
    # A fault shorter than half the span is flagged for its whole length at the fitted level.
    assert all(t.update(float(s)) for s in 20 * np.exp(rng.normal(0.0, 0.3, 450)))
    assert t.level() == fitted
    assert not any(t.update(float(s)) for s in NORMAL[:600])
    # Scores that stay 20x higher for longer: flagged at first, then judged against their level.
    raised = 20 * np.exp(rng.normal(0.0, 0.3, 3000))
    hits = np.array([t.update(float(s)) for s in raised])
    assert hits[:400].all() and hits[-1000:].mean() < 0.05
    # The new level is the typical score (20) times the training spread (q99 / median, about 2).
    assert t.level() == pytest.approx(20 * t.spread, rel=0.05) and t.level() > 8 * fitted
    assert t.update(float(20 * raised.max()))  # a fault on top of the new level still counts
    # Without ``follow`` (and in versions fitted before it) the fitted level never moves.
    old = ReferenceThreshold(**fit).fit(NORMAL)
    assert "follow" not in old.to_dict() and all(old.update(float(s)) for s in raised)


def test_a_long_span_keeps_at_most_100_scores_a_block_and_still_follows() -> None:
    from sensorwatch.models.thresholds import fitting_params

    # A day at one reading a second: blocks of 4,320 windows, every 44th score kept.
    params = fitting_params("reference", Recipe().threshold_params, interval_ms=1000)
    assert params == {"factor": 2.0, "follow": 86_400}
    t = ReferenceThreshold(**params).fit(NORMAL)
    fitted = t.level()
    raised = 20 * np.exp(np.random.default_rng(8).normal(0.0, 0.3, 52_000))
    hits = np.array([t.update(float(s)) for s in raised])
    assert t._block is not None and t._block.size <= 100
    assert hits[:43_000].all()  # under half the span: judged by the fitted threshold
    assert hits[-1000:].mean() < 0.05 and t.level() > 8 * fitted  # then by the new level


def test_reference_follow_state_survives_a_checkpoint_mid_block() -> None:
    from sensorwatch.models.thresholds.base import Threshold
    from sensorwatch.pipeline.stream.state import decode, encode

    def restored(t: Threshold) -> Threshold:
        saved = decode(encode(t.export()))
        copy = threshold_from_dict(saved["params"])
        for name, value in saved["vars"].items():
            setattr(copy, name, value)
        return copy

    t = ReferenceThreshold(factor=2.0, follow=400).fit(NORMAL)
    stream = np.r_[NORMAL, 8 * NORMAL, 8 * NORMAL][: 2 * 1000 + 7] * np.exp(
        np.random.default_rng(5).normal(0.0, 0.5, 2007)
    )
    head = [t.update(float(s)) for s in stream[:1313]]  # stops inside a block
    copy = restored(t)
    assert copy.level() == t.level()
    assert [t.update(float(s)) for s in stream[1313:]] == [
        copy.update(float(s)) for s in stream[1313:]
    ]
    assert any(head) and t.level() > ReferenceThreshold(factor=2.0).fit(NORMAL).level()


def test_reference_follow_is_refused_below_zero_and_ignores_a_nan() -> None:
    with pytest.raises(ValueError, match="follow"):
        ReferenceThreshold(follow=-1)
    t = ReferenceThreshold(follow=20).fit(NORMAL)
    assert not t.update(float("nan"))
    assert all(not t.update(1.0) for _ in range(40)) and t.level() == pytest.approx(
        ReferenceThreshold().fit(NORMAL).level()
    )


def test_smoothing_ignores_a_single_spike_but_not_a_shift() -> None:
    assert ewma(np.array([0.0, 3.0, 3.0]), 2).tolist() == pytest.approx([0.0, 2.0, 8 / 3])
    t = ReferenceThreshold(quantile=1.0, factor=1.5, smooth=9).fit(np.ones(100))  # level 1.5
    assert not any(t.update(s) for s in [1.0, 1.0, 3.0, 1.0, 1.0])
    assert any(t.update(3.0) for _ in range(5))


def test_zscore_reads_in_robust_standard_deviations_of_log_scores() -> None:
    t = ZScoreThreshold(k=3.0).fit(NORMAL)
    assert t.z(float(np.median(NORMAL))) == pytest.approx(0.0, abs=1e-3)
    assert t.scale == pytest.approx(0.3, rel=0.1)
    assert t.level() == pytest.approx(np.exp(t.center + 3.0 * t.scale))
    assert t.update(np.exp(0.5)) is False and t.update(np.exp(1.2)) is True


def test_gpd_fit_recovers_shape_and_scale() -> None:
    lomax = RNG.pareto(4.0, 20_000)  # GPD with shape 1/4, scale 1/4
    gamma, sigma = fit_gpd(lomax)
    assert gamma == pytest.approx(0.25, abs=0.05) and sigma == pytest.approx(0.25, rel=0.1)
    # Exponential excesses: the level exceeded with probability q is t - sigma · ln(q n / N_t).
    assert gpd_quantile(1.0, 0.0, 2.0, 1e-3, 1000, 10) == pytest.approx(1.0 - 2.0 * np.log(0.1))


def test_spot_places_its_level_at_the_risk_q() -> None:
    t = SpotThreshold(q=1e-3).fit(RNG.exponential(1.0, 20_000))
    assert t.level() == pytest.approx(-np.log(1e-3), rel=0.1)  # the exact 1e-3 quantile is 6.9


def test_spot_learns_from_normal_peaks_only() -> None:
    t = SpotThreshold(q=1e-3).fit(RNG.exponential(1.0, 2000))
    peaks = len(t.peaks)
    assert t.update(100.0) is True and len(t.peaks) == peaks  # anomalies leave the model alone
    assert t.update(t.t + 0.1) is False and len(t.peaks) == peaks + 1


def test_dspot_follows_a_slow_drift_that_spot_flags() -> None:
    train = 1.0 + RNG.normal(0, 0.05, 500)
    drift = 1.0 + np.linspace(0, 2, 1000) + RNG.normal(0, 0.05, 1000)
    spot, dspot = SpotThreshold(q=1e-3).fit(train), SpotThreshold(q=1e-3, depth=20).fit(train)
    assert sum(spot.update(s) for s in drift) > 500
    assert sum(dspot.update(s) for s in drift) < 20
    assert dspot.update(drift[-1] + 5.0) is True


def test_dynamic_epsilon_separates_a_clear_outlier_run() -> None:
    scores = np.r_[np.ones(100), 5.0, 5.0, np.ones(100)] + np.tile([0.0, 0.1], 101)
    eps = choose_epsilon(scores, np.arange(2.0, 10.5, 0.5))
    assert 1.1 < eps < 5.0


def test_dynamic_flags_a_jump_and_prunes_weak_runs() -> None:
    t = DynamicThreshold(history=300, prune=0.13).fit(1.0 + RNG.normal(0, 0.05, 300))
    assert not any(t.update(s) for s in 1.0 + RNG.normal(0, 0.05, 50))
    assert any(t.update(3.0) for _ in range(3))
    # A run barely above eps, not 13 % above the highest normal score, is pruned.
    weak = DynamicThreshold(history=300, prune=0.5).fit(1.0 + RNG.normal(0, 0.05, 300))
    assert not any(weak.update(weak.max_normal * 1.2) for _ in range(3))


def test_likelihood_level_is_where_the_next_window_turns_anomalous() -> None:
    t = LikelihoodThreshold(history=500, short=5, tail=1e-3).fit(NORMAL)
    for s in NORMAL[:20]:
        t.update(float(s))
    level = t.level()
    assert t.likelihood(level * 0.999) < 1 - 1e-3 < t.likelihood(level * 1.001)
    twin = threshold_from_dict(t.to_dict())  # the stream so far travels in its parameters
    assert (twin.update(level * 0.999), t.update(level * 1.001)) == (False, True)


def test_likelihood_calibrates_each_asset_to_its_own_recent_scores() -> None:
    fitted = LikelihoodThreshold(history=300, tail=1e-4).fit(NORMAL)
    # An asset whose errors sit 4x higher for good (a new operating point): anomalous once the
    # short average holds two of its windows, then calibrated to it within its history; an asset
    # copied from the same fit is not moved.
    moved, kept = threshold_from_dict(fitted.to_dict()), threshold_from_dict(fitted.to_dict())
    higher = 4.0 * np.exp(RNG.normal(0.0, 0.3, 900))
    flags = [moved.update(float(s)) for s in higher]
    assert all(flags[1:10]) and not any(flags[-300:])
    assert kept.level() == pytest.approx(fitted.level())
    assert moved.update(20.0 * 4.0) is True and kept.update(4.0 * 4.0) is True
    with pytest.raises(ValueError):
        LikelihoodThreshold(tail=0.0)


def test_alarm_rules_min_merge_and_suppress() -> None:
    state = alarm_rules(min_windows=2, merge_windows=1, suppress_windows=2).new_state()
    steps = [state.step(bool(a)) for a in (1, 1, 0, 1, 0, 0, 1, 1, 0, 1, 1)]
    assert steps == [False, True, True, True, True, False, False, False, False, False, True]
    state = alarm_rules(min_windows=3, merge_windows=0).new_state()
    opened = []
    for a in (1, 1, 1, 1, 0, 1, 1, 1):
        state.step(bool(a))
        opened.append(state.opened)
    assert opened == [False, False, True, False, False, False, False, True]
    with pytest.raises(ValueError):
        alarm_rules(min_windows=0)


def test_alarm_clears_when_the_score_falls_far_below_its_level() -> None:
    # Every window is above the threshold; only the score's fall from the alarm's level clears it.
    # clear_span 3: level += 0.5 · (score − level). Scores 8, 8, 8 → level 8; 3 → level 5.5, and
    # 3 < 0.6 · 5.5 = 3.3 counts as normal; merge_windows 1 keeps it open one window more; then
    # 2 → level 3.75, and 2 < 0.6 · 3.75 = 2.25 is the second normal window in a row: it clears.
    rules = alarm_rules(min_windows=1, merge_windows=1, clear_ratio=0.6, clear_span=3)
    state = rules.new_state()
    steps = [state.step(True, s) for s in (8.0, 8.0, 8.0, 3.0, 2.0)]
    assert steps == [True, True, True, True, False]
    assert state.level == pytest.approx(3.75)
    # The level follows the score: a fall that is slow enough never clears the alarm.
    slow = rules.new_state()
    assert all(slow.step(True, s) for s in (8.0, 8.0, 8.0, 6.0, 4.5, 3.4, 2.6))
    # Without the rule the same scores keep it open.
    plain = alarm_rules(min_windows=1, merge_windows=1).new_state()
    assert all(plain.step(True, s) for s in (8.0, 8.0, 8.0, 3.0, 2.0))


def test_rearm_bar_holds_back_the_aftermath_and_decays() -> None:
    # Cleared at level 10 (clear_span so long the level stays put): the bar is 0.5 · 10 = 5,
    # halving every 2 windows. Scores of 3 stay below it until it has decayed under 3.
    rules = alarm_rules(
        min_windows=1,
        merge_windows=0,
        clear_ratio=0.5,
        clear_span=10**6,
        rearm_ratio=0.5,
        rearm_half_life=2,
    )
    state = rules.new_state()
    assert state.step(True, 10.0) and not state.step(True, 2.0)  # 2 < 0.5 · 10: cleared
    bars, steps = [], []
    for _ in range(3):
        steps.append(state.step(True, 3.0))
        bars.append(round(state.bar, 2))
    # The bar starts at 5.0 (half of the level, 10.0) and is multiplied by 2**-0.5 every window.
    assert bars == [3.54, 2.5, 1.77] and steps == [False, True, True]


def test_rearm_bar_keeps_a_steady_aftermath_quiet() -> None:
    rules = alarm_rules(
        min_windows=2,
        merge_windows=0,
        clear_ratio=0.3,
        clear_span=10**6,
        rearm_ratio=0.3,
        rearm_half_life=0,
    )
    state = rules.new_state()
    alarm = [state.step(True, s) for s in [20.0] * 5 + [5.0] * 50]
    assert alarm[:5] == [False, True, True, True, True] and not any(alarm[5:])
    assert (
        state.step(True, 7.0) is False and state.step(True, 7.0) is True
    )  # a new rise opens after min_windows


def test_alarm_rules_reject_bad_values() -> None:
    for bad in (
        {"clear_ratio": 1.0},
        {"clear_ratio": -0.1},
        {"rearm_ratio": -1.0},
        {"clear_span": 0},
        {"rearm_half_life": -1},
    ):
        with pytest.raises(ValueError):
            alarm_rules(**bad)
