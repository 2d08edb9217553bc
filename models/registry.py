"""MLflow: the store and its checks, model versions and their aliases, loading the champion (a training
run is logged and registered by ``sensorwatch.models.register``)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np

from sensorwatch.models.spec import DetectorSpec

if TYPE_CHECKING:  # loads Keras: imported where a model is loaded
    from sensorwatch.models.detector import Detector

log = logging.getLogger("sensorwatch.models")


@dataclass(frozen=True)
class Store:
    """Where models live: tracking URI, experiment, registered name, artifact folder for local stores.

    ``create`` lets a local store's folder be made when missing (the default store under
    ``.sensorwatch``); a URI chosen on purpose must point at a folder that exists. A tracking
    server gets ``timeout_s`` per request and ``retries`` more tries, not MLflow's minutes.
    ``runtime`` and ``threads`` say how a version loaded from it scores.
    """

    tracking_uri: str
    model_name: str = "sensorwatch-lstm-ae"
    experiment: str = "sensorwatch"
    artifact_root: str | None = None
    create: bool = False
    timeout_s: float = 10.0
    retries: int = 2
    # How versions loaded from it score: their exported graph in ONNX Runtime with ``threads``
    # intra-op threads (no TensorFlow), or the Keras model ("keras").
    runtime: str = "keras"
    threads: int = 1


class NoChampionError(LookupError):
    """No model version carries the alias asked for (nothing has been promoted yet)."""


class StoreError(ValueError):
    """The tracking URI points nowhere: an unknown scheme, or a local store that does not exist."""


class IntegrityError(ValueError):
    """A model version's files do not match what was recorded when it was registered, or its
    model does not fit its own spec: it is refused."""


# Schemes MLflow can track to; ``postgresql+psycopg2`` and the like count by their first part.
SCHEMES = {
    "sqlite",
    "file",
    "http",
    "https",
    "postgresql",
    "mysql",
    "mssql",
    "databricks",
    "databricks-uc",
    "uc",
}
DIGEST_TAG = "sensorwatch.digest"
# The exported scoring graph of a version (an artifact of its run) and its sha256.
ONNX_ARTIFACT = "scoring.onnx"
ONNX_DIGEST_TAG = "sensorwatch.onnx_digest"
P99_TAG = "sensorwatch.calibration_p99"  # the 99th percentile of the training window scores (drift checks)
# The threshold scale reviewed anomalies chose for a version (``sensorwatch review tune --apply``):
# applied when the version is loaded, and picked up by a running service at its next reload check.
SCALE_TAG = "sensorwatch.threshold_scale"
KIND_TAG = "mlflow.experimentKind"


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str


def check_store(store: Store, writing: bool = False) -> None:
    """Refuse a tracking URI that points nowhere before MLflow quietly makes a new, empty store
    there: an unknown scheme, a local store whose folder is missing (made only when
    ``store.create``), or, to read from, a local store that does not exist yet.

    >>> check_store(Store("sqlite:////no/such/folder/mlflow.db"))
    Traceback (most recent call last):
    ...
    sensorwatch.models.registry.StoreError: the MLflow store sqlite:////no/such/folder/mlflow.db is in /no/such/folder, which does not exist: fix SENSORWATCH_TRACKING_URI (or --tracking-uri)
    >>> check_store(Store("sqlight:///mlflow.db"))
    Traceback (most recent call last):
    ...
    sensorwatch.models.registry.StoreError: unknown MLflow tracking URI scheme 'sqlight' in 'sqlight:///mlflow.db': use sqlite:///PATH, file:///PATH, http(s)://HOST:PORT or a database URI
    """
    uri = store.tracking_uri
    scheme = urlparse(uri).scheme.split("+")[0].lower()
    if len(scheme) == 1:  # a Windows drive letter: a plain path
        scheme = ""
    if scheme and scheme not in SCHEMES:
        raise StoreError(
            f"unknown MLflow tracking URI scheme {scheme!r} in {uri!r}: "
            "use sqlite:///PATH, file:///PATH, http(s)://HOST:PORT or a database URI"
        )
    if scheme == "sqlite":
        path = Path(uri.split("://", 1)[1].removeprefix("/") or ":memory:")
        if str(path) == ":memory:":
            return
        folder = path.parent
    elif scheme in ("file", ""):
        path = Path(urlparse(uri).path if scheme else uri)
        folder = path.parent
    else:
        return  # a server or a database: whether it answers is found out when it is used
    if not folder.is_dir():
        if store.create:
            folder.mkdir(parents=True, exist_ok=True)
        else:
            raise StoreError(
                f"the MLflow store {uri} is in {folder}, which does not exist: "
                "fix SENSORWATCH_TRACKING_URI (or --tracking-uri)"
            )
    if not writing and not path.exists():
        raise StoreError(
            f"no MLflow store at {path}: train a model first (`sensorwatch train --promote`) "
            "or fix SENSORWATCH_TRACKING_URI (or --tracking-uri)"
        )


def mlflow_for(store: Store, writing: bool = False):
    """The ``mlflow`` module pointed at ``store``, once ``check_store`` has passed it."""
    import mlflow
    from mlflow.environment_variables import (
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
        MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT,
    )

    check_store(store, writing)
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.set(False)  # one model's files: no bars in a service's log
    MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT.set(
        True
    )  # a run's link is ours to print, not on stdout per run
    # A tracking server out of reach is reported after about timeout_s × (retries + 1), not minutes.
    MLFLOW_HTTP_REQUEST_MAX_RETRIES.set(store.retries)
    MLFLOW_HTTP_REQUEST_TIMEOUT.set(max(1, math.ceil(store.timeout_s)))
    mlflow.set_tracking_uri(store.tracking_uri)
    check_artifact_home(store)
    return mlflow


_homes_checked: set[tuple[str, str]] = set()  # (store, artifact root), absolute: checked once


def check_artifact_home(store: Store) -> None:
    """The embedded default store (``store.create``: made under ``.sensorwatch`` where sensorwatch
    runs) must keep its artifacts where the settings say. MLflow records absolute artifact paths
    (a relative one is made absolute when an experiment is created), so a store copied or moved
    elsewhere still names the original folder for every experiment, run and model, and would
    write there: such a store is refused, naming both folders. A store named on purpose keeps
    its artifacts where it recorded them."""
    if not store.create or not store.artifact_root or not store.tracking_uri.startswith("sqlite:"):
        return
    db = Path(store.tracking_uri.split("://", 1)[1].removeprefix("/")).absolute()
    root = Path(store.artifact_root).absolute()
    if (str(db), str(root)) in _homes_checked or not db.is_file():
        return
    # Read from the SQLite file itself (MLflow's ``experiments`` table, deleted ones too): the
    # check costs milliseconds and no MLflow import, so ``serve`` makes it before starting from
    # its local copy of the champion. A file that is no MLflow store yet has nothing to check.
    rows = sqlite_rows(db, "SELECT experiment_id, artifact_location FROM experiments")
    for experiment, location in rows or []:
        parsed = urlparse(location or "")
        if str(experiment) == "0" or parsed.scheme not in ("", "file"):
            continue  # MLflow's own Default experiment, where sensorwatch logs nothing
        if parsed.scheme == "file" and parsed.hostname not in (None, "", "localhost", "127.0.0.1"):
            continue
        recorded = Path(url2pathname(parsed.path if parsed.scheme else location))
        if recorded != root and root not in recorded.parents:
            raise StoreError(
                f"the MLflow store {db} records its artifacts in {recorded}, "
                f"not in {root}: it was copied or moved from where it was made, and MLflow would "
                "write into the original's folder; run sensorwatch where the store was made, or "
                f"move {db} and {root} aside and train again (`sensorwatch train --promote`)"
            )
    if rows is not None:
        _homes_checked.add((str(db), str(root)))


def sqlite_rows(db: Path, query: str, params: tuple = ()) -> list[tuple] | None:
    """The rows of ``query`` on the SQLite file ``db``, read-only; None when it cannot be read
    (locked, not an MLflow store, a schema without those tables)."""
    import sqlite3

    try:
        with contextlib.closing(
            sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True, timeout=2)
        ) as c:
            return c.execute(query, params).fetchall()
    except sqlite3.Error:
        return None


def model_digest(model: Any, spec: DetectorSpec) -> str:
    """sha256 of the weights (shape, dtype and bytes of each) and the spec: what makes a version score
    as it does. Recorded as a version tag at registration and checked on every load."""
    digest = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True, default=str).encode())
    for array in model.get_weights():
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def check_fit(model: Any, spec: DetectorSpec, what: str) -> None:
    """A model that does not take and give back windows of its spec's shape is refused."""
    expected = (spec.window, len(spec.channels))
    shapes = [tuple(model.input_shape[1:]), tuple(model.output_shape[1:])]
    if any(shape != expected for shape in shapes):
        raise IntegrityError(
            f"{what} does not fit its spec: the model maps {shapes[0]} to {shapes[1]}, "
            f"the spec says windows of {expected}; refusing it"
        )


def experiment_id(client: Any, store: Store, name: str | None = None) -> str:
    """The id of experiment ``name`` (default: the store's), made when missing: with its artifacts
    under ``artifact_root`` for a local store, where a tracking server puts them otherwise.
    ``client`` is the ``mlflow`` module or an ``MlflowClient``."""
    name = name or store.experiment
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    served = urlparse(store.tracking_uri).scheme in ("http", "https")
    location = (
        Path(store.artifact_root).absolute().as_uri()
        if store.artifact_root and not served
        else None
    )
    try:
        # An experiment of model runs, so MLflow's UI opens it on its runs, not on GenAI traces.
        return client.create_experiment(
            name, artifact_location=location, tags={KIND_TAG: "custom_model_development"}
        )
    except Exception:  # made meanwhile by another replica
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


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


def checked_scorer(scorer: Any, spec: DetectorSpec, what: str) -> Any:
    """An ONNX scorer whose graph does not take windows of its spec's shape is refused."""
    expected = (spec.window, len(spec.channels))
    if (scorer.window, scorer.channels) != expected:
        raise IntegrityError(
            f"{what} does not fit its spec: its scoring graph takes windows of "
            f"{(scorer.window, scorer.channels)}, the spec says {expected}; refusing it"
        )
    return scorer


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
