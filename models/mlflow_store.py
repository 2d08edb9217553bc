"""The MLflow store: where models live, and its checks before MLflow is pointed at it (a URI that
points nowhere, a local store copied or moved from where it was made); the ``mlflow`` module
pointed at it, and the experiments made in it."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname


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


class StoreError(ValueError):
    """The tracking URI points nowhere: an unknown scheme, or a local store that does not exist."""


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
KIND_TAG = "mlflow.experimentKind"


def check_store(store: Store, writing: bool = False) -> None:
    """Refuse a tracking URI that points nowhere before MLflow quietly makes a new, empty store
    there: an unknown scheme, a local store whose folder is missing (made only when
    ``store.create``), or, to read from, a local store that does not exist yet.

    >>> check_store(Store("sqlite:////no/such/folder/mlflow.db"))
    Traceback (most recent call last):
    ...
    sensorwatch.models.mlflow_store.StoreError: the MLflow store sqlite:////no/such/folder/mlflow.db is in /no/such/folder, which does not exist: fix SENSORWATCH_TRACKING_URI (or --tracking-uri)
    >>> check_store(Store("sqlight:///mlflow.db"))
    Traceback (most recent call last):
    ...
    sensorwatch.models.mlflow_store.StoreError: unknown MLflow tracking URI scheme 'sqlight' in 'sqlight:///mlflow.db': use sqlite:///PATH, file:///PATH, http(s)://HOST:PORT or a database URI
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
