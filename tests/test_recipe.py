"""The recipe: one set of fields from settings to training to serving, presets, cadence rules."""

from __future__ import annotations

import numpy as np
import pytest

from sensorwatch.models.cadence import TimeSeries, learn_interval, split_at_gaps
from sensorwatch.models.presets import PRESETS
from sensorwatch.models.recipe import DECISION_FIELDS, RECIPE_FIELDS, Recipe
from sensorwatch.models.spec import DetectorSpec
from sensorwatch.pipeline.settings import Settings


def test_the_default_settings_train_the_default_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in RECIPE_FIELDS | {"preset"}:
        monkeypatch.delenv(f"SENSORWATCH_{name.upper()}", raising=False)
    assert Settings().recipe() == PRESETS["default"] == Recipe()


def test_every_recipe_field_is_a_documented_setting() -> None:
    for name in RECIPE_FIELDS:
        field = Settings.model_fields[name]
        assert field.description and field.description.endswith((".", ")")), name
    assert DECISION_FIELDS < RECIPE_FIELDS


def test_environment_and_flags_set_recipe_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENSORWATCH_MIN_WINDOWS", "4")
    monkeypatch.setenv("SENSORWATCH_THRESHOLD_PARAMS", '{"quantile": 0.995, "factor": 1.2}')
    recipe = Settings(window=30).recipe()
    assert (recipe.window, recipe.min_windows, recipe.threshold_params) == (
        30,
        4,
        {"quantile": 0.995, "factor": 1.2},
    )
    assert Settings(window=30).recipe_overrides()["window"] == 30


def test_a_preset_is_a_starting_point_that_fields_override() -> None:
    published = Settings(preset="published")
    assert published.recipe() == PRESETS["published"]
    assert Settings(preset="published", min_windows=7).recipe() == PRESETS["published"].updated(
        min_windows=7
    )
    # A chosen preset counts as set on purpose: serving takes its decision rules.
    assert published.recipe_overrides()["merge_windows"] == 30


def test_another_threshold_method_starts_from_its_own_parameters() -> None:
    # The default recipe's {"factor": 2.0, "follow": 2000} are the reference method's: another method alone
    # takes its own defaults, parameters given with it are kept, and the preset's method keeps them.
    assert Settings(_env_file=None, threshold="likelihood").recipe().threshold_params == {}
    given = Settings(_env_file=None, threshold="zscore", threshold_params={"k": 3.0})
    assert given.recipe().threshold_params == {"k": 3.0}
    same = Settings(_env_file=None, threshold="reference").recipe()
    assert same.threshold_params == Recipe().threshold_params


def test_bad_recipe_values_are_named() -> None:
    with pytest.raises(ValueError, match="preset"):
        Settings(preset="fastest")
    with pytest.raises(ValueError, match="min_windows"):
        Recipe().updated(min_windows=0)
    with pytest.raises(ValueError, match="score"):
        Recipe().updated(score="median")


def test_cadence_rules_are_relative_unless_set_in_seconds() -> None:
    r = Recipe(max_gap_intervals=10, grace_intervals=1.5)
    assert (r.cadence(100).max_gap_ms, r.cadence(100).grace_ms) == (1000, 150)
    assert (r.cadence(3_600_000).max_gap_ms, r.cadence(3_600_000).grace_ms) == (
        36_000_000,
        5_400_000,
    )
    fixed = r.updated(max_gap_s=90.0, grace_s=0.0)
    assert (fixed.cadence(100).max_gap_ms, fixed.cadence(100).grace_ms) == (90_000, 0)


@pytest.mark.parametrize("interval_ms", [100, 1000, 60_000, 300_000, 3_600_000])
def test_the_interval_is_learned_through_jitter_and_dropped_readings(interval_ms: int) -> None:
    rng = np.random.default_rng(interval_ms)
    ts = np.arange(2000) * interval_ms + rng.integers(-interval_ms // 5, interval_ms // 5, 2000)
    ts = np.sort(np.delete(ts, rng.choice(2000, 150, replace=False)))  # 7.5 % of readings lost
    assert abs(learn_interval([ts]) - interval_ms) <= interval_ms * 0.05
    stretches = split_at_gaps(
        TimeSeries(ts, np.zeros((len(ts), 1))), Recipe().cadence(learn_interval([ts])).max_gap_ms
    )
    assert len(stretches) == 1  # neither jitter nor a dropped reading is a gap


def test_a_spec_keeps_its_recipe_and_cadence_and_reads_old_versions() -> None:
    spec = DetectorSpec(
        ["a"],
        [0.0],
        [1.0],
        [1.0],
        {"method": "reference", "value": 2.0},
        recipe=Recipe(window=12, min_windows=2),
        interval_ms=300_000,
    )
    again = DetectorSpec.from_dict(spec.to_dict())
    assert again == spec and again.cadence().max_gap_ms == 10 * 300_000
    old = {
        "channels": ["a"],
        "window": 30,
        "mean": [0.0],
        "std": [1.0],
        "error_scale": [1.0],
        "score": "mean",
    }
    legacy = DetectorSpec.from_dict(old)
    assert (legacy.window, legacy.score, legacy.interval_ms) == (30, "mean", 1000)
