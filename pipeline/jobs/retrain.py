"""Retraining, one plain function per step: what the Airflow DAGs call, and the tests too.

``validate`` → ``train`` → ``evaluate`` (``sensorwatch.pipeline.jobs.gate``) → ``promote``, each
for a logical date: the archive's last
``retrain_lookback_days`` days before it (``sensorwatch.pipeline.jobs.span``), the newest of which
is held out of training for the champion/challenger comparison (whether the recent scores drifted
is ``sensorwatch.pipeline.jobs.drift``). The training data's checks are
``sensorwatch.pipeline.jobs.validation``'s. A rerun of the same logical date registers nothing
twice.
"""

from __future__ import annotations

import getpass
import json
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sensorwatch.models.cadence import TimeSeries
from sensorwatch.pipeline.jobs.champion import (
    RECIPE_FROM_TAG,
    RECIPE_PRESET_TAG,
    Misfit,
    misfit,
    retrain_recipe,
    version_spec,
)
from sensorwatch.pipeline.jobs.span import DATE_TAG, Span, archived_frames
from sensorwatch.pipeline.jobs.train import train_and_register
from sensorwatch.pipeline.jobs.validation import ValidationFailed, log_validation, rules_from
from sensorwatch.pipeline.review.spans import flagged_spans, reviewed_spans, without_confirmed
from sensorwatch.pipeline.settings import Settings
from sensorwatch.pipeline.stores import store_of
from sensorwatch.schemas.training_data import ValidationReport, validate_training_data

if TYPE_CHECKING:
    from sensorwatch.models.detector import Detector
    from sensorwatch.models.spec import DetectorSpec

log = logging.getLogger("sensorwatch.pipeline")


def validate(
    settings: Settings, logical_date: str, champion: Detector | None = None
) -> ValidationReport:
    """Great Expectations on the training part of the span; ``ValidationFailed`` names what failed."""
    span = Span.of(logical_date, settings.retrain_lookback_days)
    champion = champion or _champion(settings)
    frames = archived_frames(settings, span.start_ms, span.holdout_ms)
    with tempfile.TemporaryDirectory() as docs:
        report = validate_training_data(frames, rules_from(champion, settings), docs=Path(docs))
        log_validation(settings, logical_date, report)
    if not report.success:
        raise ValidationFailed(f"{logical_date}: {report.summary()}")
    return report


def train(settings: Settings, logical_date: str, preset: str | None = None) -> str:
    """Train on the span (holdout excluded) and register a version tagged with the logical date;
    the version already registered for that date when there is one. It trains with the
    champion's recipe, or with ``preset`` when one is chosen (``retrain_recipe``)."""
    existing = _version_for(settings, logical_date, preset)
    if existing is not None:
        log.info(
            "version %s is already registered for %s: not training again", existing, logical_date
        )
        return existing
    recipe, record, champion = retrain_recipe(settings, preset)
    log.info("training with %s", record[RECIPE_FROM_TAG])
    span = Span.of(logical_date, settings.retrain_lookback_days)
    frames = archived_frames(settings, span.start_ms, span.holdout_ms)
    channels = _channels(frames)
    if champion is not None and set(champion.channels) <= set(channels):
        channels = list(champion.channels)  # the champion's channels, in its order
    by_asset = {
        a: TimeSeries(f["ts_ms"].to_numpy(np.int64), f[channels].to_numpy(np.float32))
        for a, f in frames.items()
    }
    reviewed = reviewed_spans(settings)
    confirmed = reviewed[reviewed["verdict"] == "confirmed"]
    series, dropped, anomalies = without_confirmed(by_asset, confirmed)
    if dropped:
        log.info(
            "left out %d readings of %d confirmed anomalies from the training data",
            dropped,
            anomalies,
        )
    flagged, long_kept = _flagged(settings, champion, frames, reviewed)
    if len(flagged):
        series, left_out, _ = without_confirmed(by_asset, pd.concat([confirmed, flagged]))
        flagged_dropped = left_out - dropped
    else:
        flagged_dropped = 0
    if flagged_dropped or long_kept:
        log.info(
            "left out %d readings of %d stretches the service flagged (not reviewed as false "
            "positives); kept %d flagged stretches longer than %g window lengths",
            flagged_dropped,
            len(flagged),
            long_kept,
            settings.retrain_leave_out_windows,
        )
    trained, version = train_and_register(
        settings,
        series,
        channels,
        f"archive:{logical_date}",
        promote=False,
        progress=False,
        tags={
            DATE_TAG: logical_date,
            "sensorwatch.role": "challenger",
            "sensorwatch.confirmed_anomalies_left_out": str(anomalies),
            "sensorwatch.readings_left_out": str(dropped),
            "sensorwatch.flagged_stretches_left_out": str(len(flagged)),
            "sensorwatch.flagged_readings_left_out": str(flagged_dropped),
            "sensorwatch.flagged_stretches_kept": str(long_kept),
            **record,
        },
        recipe=recipe,
    )
    log.info(
        "trained version %s on %d windows of %d assets",
        version.version,
        trained.windows,
        len(by_asset),
    )
    return version.version


def _flagged(
    settings: Settings,
    champion: DetectorSpec | None,
    frames: dict[str, pd.DataFrame],
    reviewed: pd.DataFrame,
) -> tuple[pd.DataFrame, int]:
    """The short stretches the service flagged and nobody called a false positive, sized in the
    champion's window lengths (``retrain_leave_out_windows``); none without a champion."""
    if champion is None or settings.retrain_leave_out_windows <= 0:
        return reviewed.iloc[:0], 0
    longest_ms = int(settings.retrain_leave_out_windows * champion.window * champion.interval_ms)
    # A reviewed stretch goes by its verdict: a confirmed one has left already, a false positive stays.
    return flagged_spans(frames, longest_ms, reviewed)


def _channels(frames: dict[str, pd.DataFrame]) -> list[str]:
    skip = {"ts_ms", "window_start_ms", "score", "threshold", "anomalous", "model_version"}
    columns = [c for c in next(iter(frames.values())).columns if c not in skip]
    return columns


def _version_for(settings: Settings, logical_date: str, preset: str | None = None) -> str | None:
    """The version a retrain for ``logical_date`` registered, with ``preset`` (None: the
    champion's recipe)."""
    from mlflow import MlflowClient

    from sensorwatch.models.mlflow_store import mlflow_for

    mlflow_for(store_of(settings), writing=True)
    found = MlflowClient().search_model_versions(
        f"name = '{settings.model_name}' and tags.`{DATE_TAG}` = '{logical_date}'"
    )
    wanted = preset or ""
    found = [v for v in found if v.tags.get(RECIPE_PRESET_TAG, "") == wanted]
    return str(max(int(v.version) for v in found)) if found else None


def _champion(settings: Settings) -> Detector:
    from sensorwatch.models.registry import load_detector

    return load_detector(store_of(settings), settings.model_alias)


def promote(
    settings: Settings,
    version: str,
    verdict: dict[str, Any] | None = None,
    by: str | None = None,
    why: str = "",
    force: bool = False,
) -> bool:
    """``managed``: move the alias when the gate says better; ``manual``: tag the version
    ``challenger`` only. With ``by`` (a person), promote whatever the mode: a promotion or a
    rollback by hand. Every promotion is recorded on the version.

    A version that reads readings otherwise than the champion (``misfit``: channels, window or
    cadence) is never promoted by the gate, and by a person only with ``force``: a running
    service cannot swap it in, and would switch to it unseen at its next restart (``Misfit``)."""
    from mlflow import MlflowClient

    from sensorwatch.models.mlflow_store import mlflow_for
    from sensorwatch.models.registry import alias_version, set_alias

    store = store_of(settings)
    mlflow_for(store, writing=True)
    client = MlflowClient()
    client.get_model_version(
        settings.model_name, version
    )  # a clear error when there is no such version
    current = alias_version(store, settings.model_alias)
    differs = (
        misfit(version_spec(settings, version), version_spec(settings, current))
        if current is not None and current != version
        else None
    )
    wanted = by is not None or (
        settings.promotion_mode == "managed" and (verdict or {}).get("better")
    )
    if differs and wanted and not force:
        said = (
            f"version {version} reads other readings than champion version {current} ({differs}): "
            "a running service cannot swap it in and would switch to it unseen at its next "
            "restart; deploy it on purpose with `sensorwatch promote "
            f"{version} --force`"
        )
        if by is not None:
            raise Misfit(said)
        log.warning("not promoted: %s", said)
        client.set_model_version_tag(
            settings.model_name, version, "sensorwatch.not_promoted", said[:5000]
        )
    if by is None and (
        settings.promotion_mode == "manual" or not (verdict or {}).get("better") or differs
    ):
        client.set_model_version_tag(settings.model_name, version, "sensorwatch.role", "challenger")
        client.set_registered_model_alias(settings.model_name, "challenger", version)
        log.info("version %s registered as challenger (%s)", version, settings.promotion_mode)
        return False
    set_alias(store, version, settings.model_alias)
    record = {
        "sensorwatch.promoted_by": by or "retraining gate",
        "sensorwatch.promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "sensorwatch.promoted_why": why or (verdict or {}).get("why", ""),
        "sensorwatch.role": "champion",
    }
    if differs:
        record["sensorwatch.promoted_forced"] = f"over champion version {current}: {differs}"
    if verdict:
        record["sensorwatch.promoted_figures"] = json.dumps(
            {k: verdict[k] for k in ("challenger", "champion") if verdict.get(k)}, default=float
        )[:5000]
    for key, value in record.items():
        client.set_model_version_tag(settings.model_name, version, key, value)
    log.info(
        "version %s is now %s: %s",
        version,
        settings.model_alias,
        record["sensorwatch.promoted_why"],
    )
    return True


def person() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in a bare container
        return "unknown"
