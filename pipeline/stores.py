"""Where the settings keep models: the MLflow store and the service's checked copy of the champion.

Every job that reads or writes models (train, serve, demo, gate, review, retrain) takes them from
here, so none of them has to import another job for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sensorwatch.models.mlflow_store import Store
from sensorwatch.pipeline.settings import Settings

if TYPE_CHECKING:
    from sensorwatch.models.cache import ChampionCache


def store_of(settings: Settings) -> Store:
    """The MLflow store the settings name; only the default local store is made when missing."""
    default = Settings.model_fields["tracking_uri"].default
    return Store(
        settings.tracking_uri,
        settings.model_name,
        settings.experiment,
        settings.artifact_root,
        create=settings.tracking_uri == default,
        timeout_s=settings.mlflow_timeout_s,
        retries=settings.mlflow_retries,
        runtime=settings.runtime,
        threads=settings.score_threads,
    )


def cache_of(settings: Settings) -> ChampionCache:
    """Where the service keeps its checked copy of the champion the settings name."""
    from sensorwatch.models.cache import ChampionCache

    return ChampionCache(settings.cache_dir, settings.model_name, settings.model_alias)
