"""Log a training run to MLflow and register its model version (the registry itself is
``sensorwatch.models.registry``)."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sensorwatch.models.detector import onnx_digest
from sensorwatch.models.integrity import (
    DIGEST_TAG,
    ONNX_ARTIFACT,
    ONNX_DIGEST_TAG,
    IntegrityError,
    model_digest,
)
from sensorwatch.models.mlflow_store import Store, experiment_id, mlflow_for
from sensorwatch.models.registry import P99_TAG, RegisteredVersion, set_alias

if TYPE_CHECKING:  # loads Keras: imported where a model is trained
    from sensorwatch.models.training import TrainedDetector

log = logging.getLogger("sensorwatch.models")


def _requirements() -> list[str]:
    """What loading the model needs: Keras and its backend, as installed. Said outright, because
    MLflow would otherwise load the model in a subprocess to infer them (seconds per version)."""
    from importlib.metadata import PackageNotFoundError, version

    from sensorwatch.models.backend import keras

    needs = [f"keras=={keras.__version__}"]
    backend = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(
        keras.backend.backend()
    )
    if backend:
        try:
            needs.append(f"{backend}=={version(backend)}")
        except PackageNotFoundError:
            pass
    return needs


def _loss_figure(history: dict[str, list[float]]):
    """A figure outside pyplot's registry, so a long-running process that retrains keeps no figures."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for key, values in history.items():
        if "loss" in key:
            ax.plot(range(1, len(values) + 1), values, label=key)
    ax.set(xlabel="epoch", ylabel="MSE (scaled)", title="training loss", yscale="log")
    ax.legend()
    fig.tight_layout()
    return fig


# How far the exported graph's window scores may be from the Keras path's, relative to each score
# (floored at the mean score, so that a score near zero is not held to float32's last digits).
ONNX_TOLERANCE = 1e-4


def scoring_graph(trained: TrainedDetector) -> bytes | None:
    """The version's scoring graph exported to ONNX and checked: on the validation windows (or,
    without them, windows drawn around the training mean) its scores match the Keras path's within
    ``ONNX_TOLERANCE``, else ``IntegrityError``. None on a Keras backend that cannot export."""
    from sensorwatch.models.compiled import compile_forward, export_onnx
    from sensorwatch.models.detector import OnnxScorer

    spec = trained.spec
    arrays = spec.arrays()
    try:
        graph = export_onnx(trained.model, *arrays, reduce=spec.score)
    except NotImplementedError as exc:
        log.warning("no ONNX scoring graph for this version: %s", exc)
        return None
    windows = trained.validation
    if windows is None or not len(windows):
        rng = np.random.default_rng(0)
        noise = rng.standard_normal((64, spec.window, len(spec.channels)), np.float32)
        windows = arrays[0] + arrays[1] * noise
    want, _ = compile_forward(trained.model, *arrays, reduce=spec.score)(windows)
    got, _ = OnnxScorer(graph).run(windows, ["score", "errors"])
    off = np.abs(got - want) / np.maximum(np.abs(want), np.abs(want).mean())
    if not np.all(off <= ONNX_TOLERANCE):
        raise IntegrityError(
            f"the exported ONNX scoring graph's scores differ from the Keras model's by up to "
            f"{float(np.max(off)):.2g} (relative) on {len(windows)} validation windows; "
            "refusing to register it"
        )
    log.debug("onnx export checked windows=%d max_rel_diff=%.2g", len(windows), np.max(off))
    return graph


def log_training(
    trained: TrainedDetector,
    store: Store,
    params: dict[str, Any] | None = None,
    alias: str | None = None,
    tags: dict[str, str] | None = None,
    documents: dict[str, Any] | None = None,
) -> RegisteredVersion:
    """Log params, per-epoch losses, the model (Keras flavor, with signature and the detector spec
    as metadata), ``detector.json`` and a loss plot; register a version; optionally set ``alias``.
    ``tags`` go on the run and the version; ``documents`` (file name → JSON-able) beside the model."""
    mlflow = mlflow_for(store, writing=True)
    from mlflow.models import infer_signature

    sample = np.zeros((2, trained.spec.window, len(trained.spec.channels)), np.float32)
    signature = infer_signature(sample, np.asarray(trained.model(sample)))
    with mlflow.start_run(experiment_id=experiment_id(mlflow, store)) as run:
        mlflow.log_params(
            {
                **trained.recipe.model_dump(),
                **asdict(trained.options),
                "interval_ms": trained.spec.interval_ms,
                "channels": ",".join(trained.spec.channels),
                **(params or {}),
            }
        )
        for key, values in trained.history.items():
            for step, value in enumerate(values):
                mlflow.log_metric(key, value, step=step)
        mlflow.log_metric("epochs_trained", len(trained.history.get("loss", [])))
        mlflow.log_metric("threshold", float(trained.spec.threshold.get("value") or 0.0))
        if trained.spec.level_share is not None:
            mlflow.log_metric("level_share", trained.spec.level_share)
        digest = model_digest(trained.model, trained.spec)
        mlflow.set_tag(DIGEST_TAG, digest)
        graph = scoring_graph(trained)
        kept_onnx = {}
        if graph is not None:
            kept_onnx[ONNX_DIGEST_TAG] = onnx_digest(graph)
            mlflow.set_tag(ONNX_DIGEST_TAG, kept_onnx[ONNX_DIGEST_TAG])
            with tempfile.TemporaryDirectory() as folder:
                (Path(folder) / ONNX_ARTIFACT).write_bytes(graph)
                mlflow.log_artifact(str(Path(folder) / ONNX_ARTIFACT))
        mlflow.log_dict(trained.spec.to_dict(), "detector.json")
        for name, document in (documents or {}).items():
            mlflow.log_dict(document, name)
        mlflow.set_tags(tags or {})
        mlflow.log_figure(_loss_figure(trained.history), "loss.png")
        info = mlflow.keras.log_model(
            trained.model,
            name="model",
            signature=signature,
            metadata={"detector": trained.spec.to_dict()},
            pip_requirements=_requirements(),
        )
        # MLflow prints its registration notes straight to stderr; they go to our log instead.
        with contextlib.redirect_stderr(io.StringIO()) as said:
            registered = mlflow.register_model(info.model_uri, store.model_name)
        log.debug("mlflow said: %s", said.getvalue().strip())
    from mlflow import MlflowClient

    version = str(registered.version)
    client = MlflowClient()
    kept = {DIGEST_TAG: digest, **kept_onnx, **(tags or {})}
    if trained.calibration_scores is not None and len(trained.calibration_scores):
        kept[P99_TAG] = f"{float(np.quantile(trained.calibration_scores, 0.99)):.9g}"
    for key, tag in kept.items():
        client.set_model_version_tag(store.model_name, version, key, tag)
    if alias:
        set_alias(store, version, alias)
    log.info(
        "registered model=%s version=%s run=%s alias=%s",
        store.model_name,
        version,
        run.info.run_id,
        alias,
    )
    return RegisteredVersion(store.model_name, version, run.info.run_id)
