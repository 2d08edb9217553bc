"""Verdicts that teach the model: the threshold scale that keeps the champion's confirmed alarms
and drops its false positives (``tune``, from ``sensorwatch.pipeline.review.tuning``), logged to
MLflow with its evidence, and set on the version when asked: running services pick it up at their
next reload check. What the retraining and the gate take from review is ``spans``'s.

The CLI (``sensorwatch review``) and the DAG tasks (tune) call these functions.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sensorwatch.models.registry import SCALE_TAG
from sensorwatch.pipeline.review import runs
from sensorwatch.pipeline.review.tuning import Tuning, fires, tune_scale
from sensorwatch.pipeline.review.verdicts import Reviews
from sensorwatch.pipeline.settings import Settings
from sensorwatch.pipeline.stores import store_of

log = logging.getLogger("sensorwatch.pipeline")


def reviews_of(settings: Settings) -> Reviews:
    return Reviews(store_of(settings), settings.review_experiment, settings.review_ui_url)


@dataclass
class TuningRun:
    tuning: Tuning
    version: str
    run_id: str
    applied: bool
    evidence: pd.DataFrame


def tune(settings: Settings, apply: bool = False, by: str = "") -> TuningRun:
    """Tune the champion's threshold scale from its reviewed alarms; log it (an MLflow run in the
    review experiment, with the evidence table) and, with ``apply``, tag the version with it."""
    from mlflow import MlflowClient

    from sensorwatch.models.mlflow_store import mlflow_for
    from sensorwatch.models.registry import NoChampionError, alias_version

    store = store_of(settings)
    mlflow_for(store, writing=True)
    version = alias_version(store, settings.model_alias)
    if version is None:
        raise NoChampionError(
            f"no model version of {settings.model_name!r} has alias {settings.model_alias!r}"
        )
    client = MlflowClient(tracking_uri=store.tracking_uri)
    current = _current_scale(client, settings.model_name, version)
    # Cleared alarms only: an open one's margin is what it reached so far, not its own.
    reviewed = [
        a
        for a in reviews_of(settings).reviewed()
        if a.model_version == version and a.state == "cleared"
    ]
    confirmed = [a.margin for a in reviewed if a.verdict == "confirmed"]
    false = [a.margin for a in reviewed if a.verdict == "false-positive"]
    tuning = tune_scale(
        confirmed, false, current, (settings.tune_scale_min, settings.tune_scale_max)
    )
    evidence = pd.DataFrame(
        [
            {
                "event_id": a.event_id,
                "asset": a.asset,
                "start": a.start,
                "verdict": a.verdict,
                "margin": a.margin,
                "fires_before": fires(a.margin, current),
                "fires_after": fires(a.margin, tuning.scale),
            }
            for a in reviewed
        ],
        columns=["event_id", "asset", "start", "verdict", "margin", "fires_before", "fires_after"],
    )
    run_id = _log_tuning(client, settings, version, tuning, evidence, apply, by)
    applied = apply and tuning.changed
    if applied:
        for key, value in (
            (SCALE_TAG, f"{tuning.scale:.6g}"),
            ("sensorwatch.threshold_scale_why", tuning.why),
            ("sensorwatch.threshold_scale_run", run_id),
            ("sensorwatch.threshold_scale_by", by),
        ):
            client.set_model_version_tag(settings.model_name, version, key, value[:5000])
        log.info(
            "version %s threshold scale %g → %g: %s", version, current, tuning.scale, tuning.why
        )
    return TuningRun(tuning, version, run_id, applied, evidence)


def _current_scale(client, name: str, version: str) -> float:
    """The scale the version decides with now: its tag, else the one it was trained with."""
    import mlflow

    tag = client.get_model_version(name, version).tags.get(SCALE_TAG)
    if tag is not None:
        try:
            return float(tag)
        except ValueError:
            pass
    info = mlflow.models.get_model_info(f"models:/{name}/{version}")
    return float(info.metadata["detector"]["recipe"].get("threshold_scale", 1.0))


def _log_tuning(
    client,
    settings: Settings,
    version: str,
    t: Tuning,
    evidence: pd.DataFrame,
    apply: bool,
    by: str,
) -> str:
    from mlflow.entities import Metric, Param, RunTag

    from sensorwatch.models.mlflow_store import experiment_id

    exp = experiment_id(client, store_of(settings), settings.review_experiment)
    tags = {
        runs.KIND_TAG: "tuning",
        runs.VERSION_TAG: version,
        runs.MODEL_TAG: settings.model_name,
        runs.NOTE_TAG: t.why,
        runs.LOGGED_ARTIFACTS_TAG: json.dumps([{"path": "evidence.json", "type": "table"}]),
    }
    run = client.create_run(exp, tags=tags, run_name=f"threshold tuning v{version}")
    run_id = run.info.run_id
    params = {
        "current_scale": t.current,
        "scale": f"{t.scale:.6g}",
        "bounds": f"{t.bounds[0]:g}-{t.bounds[1]:g}",
        "applied": apply and t.changed,
        "by": by or "-",
    }
    metrics = {
        "confirmed": t.confirmed,
        "false_positives": t.false,
        "confirmed_kept": t.kept,
        "false_positives_dropped": t.dropped,
        "false_positives_still_firing": t.still_firing,
        "scale": t.scale,
    }
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        [Metric(k, float(v), now, 0) for k, v in metrics.items()],
        [Param(k, str(v)) for k, v in params.items()],
        [RunTag("sensorwatch.why", t.why)],
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "evidence.json"
        evidence.to_json(path, orient="split", index=False)
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, "FINISHED")
    return run_id
