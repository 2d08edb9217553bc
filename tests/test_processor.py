"""The shared scoring path on a real (untrained) Keras model: decisions, alarms, events."""

import numpy as np
import pytest

from models.autoencoder import build_autoencoder
from models.detector import Detector
from models.spec import DetectorSpec
from models.thresholds import AlarmRules
from pipeline.processor import Processor
from pipeline.windows import Windower
from schemas.records import Reading

CHANNELS = ["a", "b", "c"]


def detector(threshold: float) -> Detector:
    spec = DetectorSpec(CHANNELS, 4, [0.0] * 3, [1.0] * 3, [1.0] * 3, {"method": "reference", "value": threshold})
    return Detector(build_autoencoder(4, 3, units=8), spec, version="3")


def processor(threshold: float, min_windows: int = 2) -> Processor:
    return Processor(detector(threshold), Windower(CHANNELS, 4), AlarmRules(min_windows, merge_windows=5))


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
    assert e.window_start == "1970-01-01T00:00:00.000Z" and e.window_end == "1970-01-01T00:00:00.004Z"
    assert sum(e.contributions.values()) == pytest.approx(1.0, abs=1e-3)
    assert max(e.contributions, key=e.contributions.get) == "a"


def test_assets_have_their_own_alarm() -> None:
    p = processor(0.0, min_windows=3)
    out = p.process(readings("x", 6) + readings("y", 5))
    assert [e.asset_id for e in out.events] == ["x"]
    out = p.process([Reading("y", 5, {"a": 1.0, "b": 0.0, "c": 0.0})])
    assert [e.asset_id for e in out.events] == ["y"]


def test_model_must_fit_the_windows() -> None:
    with pytest.raises(ValueError):
        Processor(detector(1.0), Windower(["a", "b"], 4), AlarmRules())


def test_alarm_rules_see_the_scores_the_threshold_saw() -> None:
    # Every window is anomalous (threshold 0); the alarm opens on the first window and its level
    # then follows the (unsmoothed) scores as an EWMA over clear_span windows.
    rules = AlarmRules(min_windows=1, merge_windows=0, clear_ratio=0.5, clear_span=3)
    p = Processor(detector(0.0), Windower(CHANNELS, 4), rules)
    out = p.process(readings("x", 7))
    level = float(out.scores[0])
    for s in out.scores[1:]:
        level += 0.5 * (float(s) - level)
    assert p._tracks["x"].alarm.level == pytest.approx(level, rel=1e-6)
