"""The champion as a retrain and a promotion see it: what travels with it (its spec, read
without loading its model), the recipe a retrain starts from (the champion's own; another only
when chosen on purpose, and recorded), and what a promotion must keep (channels, window, cadence).
"""

from __future__ import annotations

import json
import logging

from sensorwatch.models.recipe import RECIPE_FIELDS, Recipe
from sensorwatch.models.spec import DetectorSpec
from sensorwatch.pipeline.errors import UserError
from sensorwatch.pipeline.settings import Settings
from sensorwatch.pipeline.stores import store_of

log = logging.getLogger("sensorwatch.pipeline")

# What a retrain may take from the settings on top of the champion's recipe: how hard it trains,
# not what the detector is or how it decides.
EFFORT_FIELDS = frozenset(
    {"epochs", "patience", "batch_size", "learning_rate", "validation", "train_stride"}
)
RECIPE_FROM_TAG = "sensorwatch.recipe_from"
RECIPE_PRESET_TAG = "sensorwatch.recipe_preset"  # the preset chosen for a retrain, if one was
RECIPE_CHANGES_TAG = "sensorwatch.recipe_changes"


def version_spec(settings: Settings, version: str) -> DetectorSpec:
    """What travels with a version (recipe, channels, cadence), read without loading its model."""
    from sensorwatch.models.mlflow_store import mlflow_for

    mlflow = mlflow_for(store_of(settings))
    info = mlflow.models.get_model_info(f"models:/{settings.model_name}/{version}")
    return DetectorSpec.from_dict(info.metadata["detector"])


def retrain_recipe(
    settings: Settings, preset: str | None = None
) -> tuple[Recipe, dict[str, str], DetectorSpec | None]:
    """The recipe a retrain trains with, what to record about it on the run, and the champion's
    spec (None without a champion). The champion's own recipe, with only the training effort
    (``EFFORT_FIELDS``) the settings set on purpose on top; with ``preset``, that preset and every
    recipe field the settings set (an explicit change, recorded with what it changes)."""
    from sensorwatch.models.presets import preset as named
    from sensorwatch.models.registry import alias_version

    version = alias_version(store_of(settings), settings.model_alias)
    champion = version_spec(settings, version) if version is not None else None
    if preset is not None:
        try:
            named(preset)
        except ValueError as exc:
            raise UserError(f"preset: {exc}") from None
        recipe = settings.model_copy(update={"preset": preset}).recipe()
        record = {
            RECIPE_FROM_TAG: f"preset {preset}, chosen for this retrain",
            RECIPE_PRESET_TAG: preset,
        }
    elif champion is None:
        recipe = settings.recipe()
        record = {RECIPE_FROM_TAG: f"preset {settings.preset} (no champion yet)"}
    else:
        effort = {f: getattr(settings, f) for f in settings.model_fields_set & EFFORT_FIELDS}
        recipe = champion.recipe.updated(**effort)
        record = {RECIPE_FROM_TAG: f"the recipe of champion version {version}"}
        ignored = sorted(
            f
            for f in (settings.model_fields_set & RECIPE_FIELDS) - EFFORT_FIELDS
            if getattr(settings, f) != getattr(recipe, f)
        )
        if ignored:
            log.warning(
                "retraining with the champion's recipe: ignoring %s set in the settings "
                "(`sensorwatch retrain --preset NAME` changes the recipe on purpose)",
                ", ".join(ignored),
            )
    if champion is not None:
        old, new = champion.recipe.model_dump(), recipe.model_dump()
        changes = {f: [old[f], new[f]] for f in new if old[f] != new[f]}
        record[RECIPE_CHANGES_TAG] = json.dumps(changes, default=str)[:5000] if changes else "none"
    return recipe, record, champion


class Misfit(UserError):
    """A promotion by hand of a version that reads readings otherwise than the champion."""


def misfit(new: DetectorSpec, current: DetectorSpec) -> str | None:
    """How ``new`` reads readings otherwise than ``current`` (channels, window, cadence), or None.

    >>> a = DetectorSpec(["x"], [0.0], [1.0], [1.0])
    >>> misfit(a, a) is None
    True
    >>> from dataclasses import replace
    >>> misfit(replace(a, recipe=a.recipe.updated(window=30), interval_ms=500), a)
    'window 30 instead of 20; cadence 500 ms instead of 1000 ms'
    """
    said = []
    if new.channels != current.channels:
        said.append(f"channels {', '.join(new.channels)} instead of {', '.join(current.channels)}")
    if new.window != current.window:
        said.append(f"window {new.window} instead of {current.window}")
    if new.interval_ms != current.interval_ms:
        said.append(f"cadence {new.interval_ms} ms instead of {current.interval_ms} ms")
    return "; ".join(said) or None
