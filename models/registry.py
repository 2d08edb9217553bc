"""MLflow: log a training run, register the model version, move the alias, load the champion."""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sensorwatch.models.spec import DetectorSpec

if TYPE_CHECKING:  # both load Keras: imported where a model is logged or loaded
    from sensorwatch.models.detector import Detector
    from sensorwatch.models.training import TrainedDetector

log = logging.getLogger("sensorwatch.models")


@dataclass(frozen=True)
class Store:
    """Where models live: tracking URI, experiment, registered name, artifact folder for local stores."""

    tracking_uri: str
    model_name: str = "sensorwatch-lstm-ae"
    experiment: str = "sensorwatch"
    artifact_root: str | None = None


class NoChampionError(LookupError):
    """No model version carries the alias asked for (nothing has been promoted yet)."""


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str


def _mlflow(store: Store):
    import mlflow

    if store.tracking_uri.startswith("sqlite:///"):
        Path(store.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(store.tracking_uri)
    return mlflow


def _experiment(mlflow, store: Store) -> str:
    exp = mlflow.get_experiment_by_name(store.experiment)
    if exp is not None:
        return exp.experiment_id
    location = Path(store.artifact_root).absolute().as_uri() if store.artifact_root else None
    return mlflow.create_experiment(store.experiment, artifact_location=location)


def _loss_figure(history: dict[str, list[float]]):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, values in history.items():
        if "loss" in key:
            ax.plot(range(1, len(values) + 1), values, label=key)
    ax.set(xlabel="epoch", ylabel="MSE (scaled)", title="training loss", yscale="log")
    ax.legend()
    fig.tight_layout()
    return fig


def log_training(
    trained: TrainedDetector, store: Store, params: dict[str, Any] | None = None, alias: str | None = None
) -> RegisteredVersion:
    """Log params, per-epoch losses, the model (Keras flavor, with signature and the detector spec
    as metadata), ``detector.json`` and a loss plot; register a version; optionally set ``alias``."""
    mlflow = _mlflow(store)
    from mlflow.models import infer_signature

    sample = np.zeros((2, trained.spec.window, len(trained.spec.channels)), np.float32)
    signature = infer_signature(sample, np.asarray(trained.model(sample)))
    with mlflow.start_run(experiment_id=_experiment(mlflow, store)) as run:
        mlflow.log_params({**trained.recipe.model_dump(), **asdict(trained.options), "interval_ms": trained.spec.interval_ms,
                           "channels": ",".join(trained.spec.channels), **(params or {})})
        for key, values in trained.history.items():
            for step, value in enumerate(values):
                mlflow.log_metric(key, value, step=step)
        mlflow.log_metric("epochs_trained", len(trained.history.get("loss", [])))
        mlflow.log_metric("threshold", float(trained.spec.threshold.get("value") or 0.0))
        mlflow.log_dict(trained.spec.to_dict(), "detector.json")
        mlflow.log_figure(_loss_figure(trained.history), "loss.png")
        info = mlflow.keras.log_model(
            trained.model,
            name="model",
            signature=signature,
            metadata={"detector": trained.spec.to_dict()},
        )
        # MLflow prints its registration notes straight to stderr; they go to our log instead.
        with contextlib.redirect_stderr(io.StringIO()) as said:
            registered = mlflow.register_model(info.model_uri, store.model_name)
        log.debug("mlflow said: %s", said.getvalue().strip())
    version = str(registered.version)
    if alias:
        set_alias(store, version, alias)
    log.info("registered model=%s version=%s run=%s alias=%s", store.model_name, version, run.info.run_id, alias)
    return RegisteredVersion(store.model_name, version, run.info.run_id)


def set_alias(store: Store, version: str, alias: str = "champion") -> None:
    """Point ``alias`` at a version (promotion by hand or by the evaluation gate)."""
    from mlflow import MlflowClient

    _mlflow(store)
    MlflowClient().set_registered_model_alias(store.model_name, alias, version)


def alias_version(store: Store, alias: str = "champion") -> str | None:
    """The version ``alias`` points at, or None when the model or the alias does not exist yet.

    Any other failure (an unreachable server, a broken store) is raised: it is not "no alias".
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    _mlflow(store)
    try:
        return str(MlflowClient().get_model_version_by_alias(store.model_name, alias).version)
    except MlflowException as exc:
        if _does_not_exist(exc):
            return None
        raise


def _does_not_exist(exc: Exception) -> bool:
    """Whether MLflow said the registered model or its alias does not exist (and nothing else)."""
    code = getattr(exc, "error_code", "")
    # MLflow reports a missing alias as an invalid parameter whose message says "not found".
    return code == "RESOURCE_DOES_NOT_EXIST" or (code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc))


def load_detector(store: Store, alias: str = "champion") -> Detector:
    """Load ``models:/NAME@alias`` with its spec; a clear error when no version has that alias."""
    mlflow = _mlflow(store)
    version = alias_version(store, alias)
    if version is None:
        raise NoChampionError(
            f"no model version of {store.model_name!r} has alias {alias!r} in {store.tracking_uri}: "
            "train one with `sensorwatch train --promote`"
        )
    from sensorwatch.models.detector import Detector

    uri = f"models:/{store.model_name}/{version}"
    spec = DetectorSpec.from_dict(mlflow.models.get_model_info(uri).metadata["detector"])
    model = mlflow.keras.load_model(uri)
    return Detector(model, spec, version=version)
