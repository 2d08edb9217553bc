"""MLflow model versions: their aliases, loading the champion (checked against what was recorded
when it was registered) and the threshold scale a version carries. The store and its checks are
``sensorwatch.models.mlflow_store``'s, the integrity checks ``sensorwatch.models.integrity``'s, and
a training run is logged and registered by ``sensorwatch.models.register``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from sensorwatch.models.integrity import (
    DIGEST_TAG,
    ONNX_ARTIFACT,
    ONNX_DIGEST_TAG,
    IntegrityError,
    check_fit,
    checked_scorer,
    model_digest,
)
from sensorwatch.models.mlflow_store import Store, mlflow_for
from sensorwatch.models.spec import DetectorSpec

if TYPE_CHECKING:  # loads Keras: imported where a model is loaded
    from sensorwatch.models.detector import Detector

log = logging.getLogger("sensorwatch.models")


class NoChampionError(LookupError):
    """No model version carries the alias asked for (nothing has been promoted yet)."""


P99_TAG = "sensorwatch.calibration_p99"  # the 99th percentile of the training window scores (drift checks)
# The threshold scale reviewed anomalies chose for a version (``sensorwatch review tune --apply``):
# applied when the version is loaded, and picked up by a running service at its next reload check.
SCALE_TAG = "sensorwatch.threshold_scale"


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str


def set_alias(store: Store, version: str, alias: str = "champion") -> None:
    """Point ``alias`` at a version (promotion by hand or by the evaluation gate)."""
    from mlflow import MlflowClient

    mlflow_for(store, writing=True)
    MlflowClient().set_registered_model_alias(store.model_name, alias, version)


def alias_version(store: Store, alias: str = "champion") -> str | None:
    """The version ``alias`` points at, or None when the model or the alias does not exist yet.

    Any other failure (an unreachable server, a broken store) is raised: it is not "no alias".
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mlflow_for(store)
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
    return code == "RESOURCE_DOES_NOT_EXIST" or (
        code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc)
    )


def load_detector(store: Store, alias: str = "champion") -> Detector:
    """Load ``models:/NAME@alias`` with its spec; a clear error when no version has that alias.

    Keras loads it in safe mode (no code from the files runs), and a version whose weights and spec
    do not match the digest recorded at registration, or whose model does not fit its spec, is
    refused with ``IntegrityError``.
    """
    version = alias_version(store, alias)
    if version is None:
        raise NoChampionError(
            f"no model version of {store.model_name!r} has alias {alias!r} in {store.tracking_uri}: "
            "train one with `sensorwatch train --promote`"
        )
    return load_version(store, version)


def load_version(store: Store, version: str) -> Detector:
    """Load one model version by number, with the same checks as ``load_detector``; in the
    store's runtime (its exported scoring graph in ONNX Runtime, or the Keras model)."""
    mlflow = mlflow_for(store)
    from mlflow import MlflowClient

    from sensorwatch.models.detector import Detector

    uri = f"models:/{store.model_name}/{version}"
    what = f"model version {version} of {store.model_name!r}"
    spec = DetectorSpec.from_dict(mlflow.models.get_model_info(uri).metadata["detector"])
    if store.runtime == "onnx":
        found = MlflowClient().get_model_version(store.model_name, version)
        scorer = _onnx_scorer(str(found.run_id), found.tags, spec, what, store.threads)
        return Detector(scorer, with_scale(spec, found.tags.get(SCALE_TAG), what), version=version)
    model = mlflow.keras.load_model(uri, load_model_kwargs={"safe_mode": True, "compile": False})
    check_fit(model, spec, what)
    tags = MlflowClient().get_model_version(store.model_name, version).tags
    recorded = tags.get(DIGEST_TAG)
    if recorded is None:
        log.warning(
            "%s has no recorded digest (registered before digests were kept): it is not checked",
            what,
        )
    elif recorded != model_digest(model, spec):
        raise IntegrityError(
            f"{what} does not match the digest recorded when it was registered: "
            "its files were changed after registration; refusing it"
        )
    return Detector(model, with_scale(spec, tags.get(SCALE_TAG), what), version=version)


def _onnx_scorer(run_id: str, tags: dict[str, str], spec: DetectorSpec, what: str, threads: int):
    """The version's exported scoring graph, checked against its recorded digest and its spec."""
    import tempfile

    from mlflow import MlflowClient

    from sensorwatch.models.detector import OnnxScorer, onnx_digest

    recorded = tags.get(ONNX_DIGEST_TAG)
    if recorded is None:
        raise IntegrityError(
            f"{what} has no ONNX scoring graph (registered before graphs were exported): "
            "serve it with SENSORWATCH_RUNTIME=keras, or train and register a new version"
        )
    with tempfile.TemporaryDirectory() as folder:
        path = MlflowClient().download_artifacts(run_id, ONNX_ARTIFACT, folder)
        graph = Path(path).read_bytes()
    if onnx_digest(graph) != recorded:
        raise IntegrityError(
            f"{what}: its ONNX scoring graph does not match the digest recorded when it was "
            "registered; refusing it"
        )
    return checked_scorer(OnnxScorer(graph, threads), spec, what)


def with_scale(spec: DetectorSpec, scale: str | None, what: str = "the model") -> DetectorSpec:
    """``spec`` deciding with the threshold scale of a version's tag (unchanged without one)."""
    if scale is None:
        return spec
    try:
        recipe = spec.recipe.updated(threshold_scale=float(scale))
    except ValueError:
        log.warning("%s: ignoring tag %s=%r, not a positive number", what, SCALE_TAG, scale)
        return spec
    return replace(spec, recipe=recipe)


def version_scale(store: Store, version: str) -> str | None:
    """The threshold-scale tag of a version, if it has one."""
    from mlflow import MlflowClient

    mlflow_for(store)
    return MlflowClient().get_model_version(store.model_name, version).tags.get(SCALE_TAG)
