"""The training data checked before a retrain: the Great Expectations suite's bounds taken from the
champion, what fails it (``ValidationFailed``), and each result as its own MLflow run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sensorwatch.pipeline.errors import UserError
from sensorwatch.pipeline.jobs.span import DATE_TAG
from sensorwatch.pipeline.settings import Settings
from sensorwatch.pipeline.stores import store_of
from sensorwatch.schemas.training_data import TrainingDataRules, ValidationReport

if TYPE_CHECKING:
    from sensorwatch.models.detector import Detector


class ValidationFailed(UserError):
    """The archived data is not fit to train on: each failing expectation is named."""


def rules_from(detector: Detector, settings: Settings) -> TrainingDataRules:
    """The suite's bounds from the champion: its channels and cadence, and each channel's training
    mean ± ``validation_sigmas`` standard deviations."""
    spec = detector.spec
    k = settings.validation_sigmas
    ranges = {c: (m - k * s, m + k * s) for c, m, s in zip(spec.channels, spec.mean, spec.std)}
    cadence = spec.recipe.cadence(spec.interval_ms)
    gap = (cadence.max_gap_ms or spec.interval_ms * 10) / spec.interval_ms
    return TrainingDataRules(
        spec.channels,
        ranges,
        spec.interval_ms,
        max_gap_intervals=gap,
        max_missing_rate=settings.validation_max_missing,
        min_rows=max(settings.validation_min_rows, spec.window * 2),
    )


def log_validation(settings: Settings, logical_date: str, report: ValidationReport) -> None:
    """The validation result as its own MLflow run (FAILED when the data failed), under the experiment."""
    from sensorwatch.models.mlflow_store import mlflow_for

    mlflow = mlflow_for(store_of(settings), writing=True)
    experiment = mlflow.set_experiment(settings.experiment)
    with mlflow.start_run(
        experiment_id=experiment.experiment_id, run_name=f"validate {logical_date}"
    ) as run:
        mlflow.set_tags({DATE_TAG: logical_date, "sensorwatch.step": "validate"})
        mlflow.log_metric("rows", report.rows)
        mlflow.log_metric("failed_expectations", len(report.failures))
        mlflow.log_dict(report.result, "validation.json")
        mlflow.log_text("\n".join(report.failures) or "all expectations met", "validation.txt")
        if report.docs is not None and report.docs.is_dir():
            mlflow.log_artifacts(
                str(report.docs), "data_docs"
            )  # GX's HTML report: data_docs/index.html
    if not report.success:
        from mlflow import MlflowClient

        MlflowClient().set_terminated(run.info.run_id, status="FAILED")
