"""The shared scoring path on a real (untrained) Keras model: decisions, alarms, events."""

import functools

import numpy as np
import pytest

from sensorwatch.models.autoencoder import build_autoencoder
from sensorwatch.models.detector import Detector
from sensorwatch.models.recipe import Recipe
from sensorwatch.models.spec import DetectorSpec
from sensorwatch.pipeline.stream.processor import Processor
from sensorwatch.schemas.records import Reading

CHANNELS = ["a", "b", "c"]
# Plain decisions: every window scored, an alarm after min_windows, no clearing rules, no grace.
PLAIN = Recipe(
    window=4,
    score="mean",
    min_windows=2,
    merge_windows=5,
    suppress_windows=0,
    clear_ratio=0.0,
    rearm_ratio=0.0,
    grace_intervals=0,
)


def detector(threshold: float, recipe: Recipe = PLAIN, channels: list[str] = CHANNELS) -> Detector:
    n = len(channels)
    spec = DetectorSpec(
        channels,
        [0.0] * n,
        [1.0] * n,
        [1.0] * n,
        {"method": "reference", "value": threshold},
        recipe=recipe,
        interval_ms=1,
    )
    return Detector(_model(recipe.window, n), spec, version="3")


@functools.cache
def _model(window: int, channels: int):
    """One untrained model per shape for every detector here: its forward pass is compiled once
    (compiled passes are kept per model), whatever threshold or recipe a test gives it."""
    return build_autoencoder(window, channels, units=8)


def processor(threshold: float, min_windows: int = 2) -> Processor:
    return Processor(detector(threshold), {"min_windows": min_windows})


def readings(asset: str, n: int, scale: float = 1.0) -> list[Reading]:
    return [Reading(asset, t, {"a": scale * t, "b": 0.0, "c": -scale}) for t in range(n)]


def test_scores_match_the_model() -> None:
    p = processor(1e9)
    out = p.process(readings("x", 6))
    assert out.scores.shape == (3,)
    z = out.windows.windows
    recon = np.asarray(p.detector.model(z))
    expected = ((recon - z) ** 2).mean(axis=1).mean(axis=1)
    np.testing.assert_allclose(out.scores, expected, rtol=1e-4)
    assert not out.anomalous.any() and not out.events


def test_alarm_opens_after_min_windows_once() -> None:
    p = processor(0.0, min_windows=2)  # every window is anomalous
    out = p.process(readings("x", 8, scale=5.0))
    assert out.anomalous.all()
    assert out.alarm.tolist() == [False, True, True, True, True]
    assert len(out.events) == 1
    e = out.events[0]
    assert e.asset_id == "x" and e.model_version == "3" and e.windows == 2
    assert (
        e.window_start == "1970-01-01T00:00:00.000Z" and e.window_end == "1970-01-01T00:00:00.004Z"
    )
    assert sum(e.contributions.values()) == pytest.approx(1.0, abs=1e-3)
    assert max(e.contributions, key=e.contributions.get) == "a"


def test_assets_have_their_own_alarm() -> None:
    p = processor(0.0, min_windows=3)
    out = p.process(readings("x", 6) + readings("y", 5))
    assert [e.asset_id for e in out.events] == ["x"]
    out = p.process([Reading("y", 5, {"a": 1.0, "b": 0.0, "c": 0.0})])
    assert [e.asset_id for e in out.events] == ["y"]


def test_a_trained_model_takes_decision_overrides_only() -> None:
    p = Processor(detector(1.0), {"stride": 2, "max_gap_s": 0.5})
    assert p.recipe.stride == 2 and p.windower.stride == 2 and p.windower.max_gap_ms == 500
    with pytest.raises(ValueError, match="window cannot change without training again"):
        Processor(detector(1.0), {"window": 8})


def test_the_version_recipe_decides_and_travels_with_a_swap() -> None:
    p = Processor(detector(0.0, PLAIN.updated(min_windows=1)))
    assert len(p.process(readings("x", 5)).events) == 1  # min_windows 1: the first window alarms
    newer = detector(0.0, PLAIN.updated(min_windows=4, stride=2))
    newer.version = "4"
    p.swap_detector(newer)
    assert p.rules.min_windows == 4 and p.windower.stride == 2
    out = p.process([Reading("y", t, {"a": 1.0, "b": 0.0, "c": 0.0}) for t in range(12)])
    assert out.alarm.tolist() == [False, False, False, True, True]  # windows at 3, 5, 7, 9, 11
    assert [e.model_version for e in out.events] == ["4"]


def test_a_swap_to_another_window_restarts_the_buffers() -> None:
    p = Processor(detector(1e9))
    p.process(readings("x", 3))
    p.swap_detector(detector(1e9, PLAIN.updated(window=6)))
    assert p.windower.window == 6
    assert len(p.process(readings("x", 9)[3:]).windows) == 1  # 6 new readings: one window


def test_alarm_rules_see_the_scores_the_threshold_saw() -> None:
    # Every window is anomalous (threshold 0); the alarm opens on the first window and its level
    # then follows the (unsmoothed) scores as an EWMA over clear_span windows.
    rules = {"min_windows": 1, "merge_windows": 0, "clear_ratio": 0.5, "clear_span": 3}
    p = Processor(detector(0.0), rules)
    out = p.process(readings("x", 7))
    level = float(out.scores[0])
    for s in out.scores[1:]:
        level += 0.5 * (float(s) - level)
    assert p._tracks["x"].alarm.level == pytest.approx(level, rel=1e-6)
